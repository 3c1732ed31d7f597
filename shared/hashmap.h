/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A string-keyed hash table: open addressing with linear probing and
 * backward-shift deletion (no tombstones), grown at 3/4 load. Keys are
 * borrowed: the caller keeps each key alive (typically inside its value)
 * until the entry is removed. Lookups, inserts and removals cost O(1) on
 * average whatever the size, which is what kvpd needs at 10,000 Services
 * (a linear table was O(n) per lookup, hsearch() cannot remove).
 *
 * The hash is FNV-1a with a per-table random seed, so an API server cannot
 * line keys up into one probe chain without knowing the seed. */

#include <stdbool.h>
#include <stddef.h>

#include "macros.h"

typedef struct HashmapSlot {
        const char *key; /* NULL: empty */
        void *value;
        size_t hash;
} HashmapSlot;

typedef struct Hashmap {
        HashmapSlot *slots;
        size_t n_slots; /* 0 or a power of two */
        size_t n;
        size_t seed;
} Hashmap;

/* A zeroed Hashmap is an empty one; no constructor is needed. */
void hashmap_done(Hashmap *h);
void *hashmap_get(const Hashmap *h, const char *key);
/* Adds or replaces. Returns 0, or -ENOMEM with the table unchanged. */
int hashmap_put(Hashmap *h, const char *key, void *value);
/* Returns the value removed, or NULL. */
void *hashmap_remove(Hashmap *h, const char *key);
static inline size_t hashmap_size(const Hashmap *h)
{
        return h ? h->n : 0;
}

/* Iteration: size_t i = 0; while (hashmap_next(h, &i, &key, &value)) ...
 * The table must not change during an iteration (collect first, then
 * remove). */
bool hashmap_next(const Hashmap *h, size_t *i, const char **ret_key, void **ret_value);

#define HASHMAP_FOREACH(h, i, k, v) for (size_t i = 0; hashmap_next((h), &i, &(k), (void **)&(v));)
