/* SPDX-License-Identifier: Apache-2.0 */
#include "array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int array_reserve(void **array, size_t *capacity, size_t need, size_t element_size)
{
        size_t cap;
        void *p;

        if (need <= *capacity)
                return 0;
        cap = *capacity < 8 ? 8 : *capacity;
        while (cap < need) {
                if (cap > SIZE_MAX / 2)
                        return -ENOMEM;
                cap *= 2;
        }
        if (element_size && cap > SIZE_MAX / element_size)
                return -ENOMEM;
        p = realloc(*array, cap * element_size);
        if (!p)
                return -ENOMEM;
        *array = p;
        *capacity = cap;
        return 0;
}
