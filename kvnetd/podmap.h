/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Pod address -> owning service, over all services: one pod address is
 * mapped by at most one service (the kernel's pod maps say the same). An
 * open-addressing hash table, so checking 10,000 pods stays cheap. */

#include "netaddr.h"

typedef struct PodMapEntry {
        IpAddr addr; /* family 0: empty slot */
        void *value;
        bool tombstone;
} PodMapEntry;

typedef struct PodMap {
        PodMapEntry *entries;
        size_t size; /* slots, a power of two */
        size_t n;    /* live entries */
        size_t used; /* live + tombstones */
} PodMap;

void *podmap_get(const PodMap *m, const IpAddr *a);
int podmap_put(PodMap *m, const IpAddr *a, void *value);
void podmap_remove(PodMap *m, const IpAddr *a);
void podmap_done(PodMap *m);

/* Reserves room so that the next n podmap_put() calls of new addresses
 * cannot fail (no resize). */
int podmap_reserve(PodMap *m, size_t n);

/* String -> pointer, the same scheme; the map keeps its own copy of each
 * key. */
typedef struct StrMapEntry {
        char *key; /* NULL: empty slot */
        void *value;
        bool tombstone;
} StrMapEntry;

typedef struct StrMap {
        StrMapEntry *entries;
        size_t size, n, used;
} StrMap;

void *strmap_get(const StrMap *m, const char *key);
int strmap_put(StrMap *m, const char *key, void *value);
void strmap_remove(StrMap *m, const char *key);
void strmap_done(StrMap *m);
