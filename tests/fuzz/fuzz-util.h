/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Helpers shared by the fuzz targets in this folder. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated heap copy of the input. Not strndup(): the input is not
 * NUL-terminated, and ASan's strict_string_checks reads strndup's source as a
 * C string. NULL only on allocation failure. */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);

        if (!s)
                return NULL;
        if (size)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* A broken invariant: say which, then abort so libFuzzer (or the driver's
 * sanitizer build) records the input. */
#define fuzz_assert(expr)                                                                                   \
        do {                                                                                                \
                if (!(expr)) {                                                                              \
                        fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #expr);        \
                        abort();                                                                            \
                }                                                                                           \
        } while (0)

/* Keeps a value alive so the optimiser cannot drop the code computing it. */
static inline void fuzz_escape(const void *p)
{
        __asm__ volatile("" : : "g"(p) : "memory");
}
