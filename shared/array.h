/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Arrays that grow geometrically. Growing by one element per append copies
 * the whole array wherever the allocator cannot extend it in place, so n
 * appends cost O(n^2): 21 s for 16,384 pods in kvnetd under ASan. Doubling
 * makes n appends O(n) copies in all. */

#include <stddef.h>

/* Makes room for at least `need` elements of `element_size` bytes in
 * *array, whose room is *capacity elements. Returns 0, or -ENOMEM (also on
 * size overflow) with *array and *capacity unchanged. */
int array_reserve(void **array, size_t *capacity, size_t need, size_t element_size);

/* ARRAY_RESERVE(v, cap, n + 1) before v[n++] = x. */
#define ARRAY_RESERVE(array, capacity, need)                                                                \
        array_reserve((void **)&(array), &(capacity), (need), sizeof(*(array)))
