/* SPDX-License-Identifier: Apache-2.0 */
#include "podmap.h"

#include <sys/socket.h>

static uint64_t addr_hash(const IpAddr *a)
{
        /* FNV-1a: the keys come from clients, but a collision only costs a
         * longer probe, and the table size is bounded by the pod limits. */
        uint64_t h = 0xcbf29ce484222325ULL;
        size_t n = a->family == AF_INET6 ? 16 : 4;

        for (size_t i = 0; i < n; i++) {
                h ^= a->addr.bytes[i];
                h *= 0x100000001b3ULL;
        }
        return h ^ (uint64_t)a->family;
}

static PodMapEntry *lookup(const PodMap *m, const IpAddr *a, PodMapEntry **ret_free)
{
        PodMapEntry *first_free = NULL;

        if (m->size == 0) {
                if (ret_free)
                        *ret_free = NULL;
                return NULL;
        }
        for (size_t i = addr_hash(a) & (m->size - 1), k = 0; k < m->size; i = (i + 1) & (m->size - 1), k++) {
                PodMapEntry *e = &m->entries[i];

                if (e->addr.family == 0) {
                        if (!e->tombstone) {
                                if (!first_free)
                                        first_free = e;
                                break;
                        }
                        if (!first_free)
                                first_free = e;
                        continue;
                }
                if (ip_addr_equal(&e->addr, a))
                        return e;
        }
        if (ret_free)
                *ret_free = first_free;
        return NULL;
}

void *podmap_get(const PodMap *m, const IpAddr *a)
{
        PodMapEntry *e = lookup(m, a, NULL);
        return e ? e->value : NULL;
}

static int resize(PodMap *m, size_t size)
{
        PodMap n = {.size = size};

        n.entries = calloc(size, sizeof(PodMapEntry));
        if (!n.entries)
                return -ENOMEM;
        for (size_t i = 0; i < m->size; i++)
                if (m->entries[i].addr.family != 0) {
                        PodMapEntry *slot = NULL;
                        (void)lookup(&n, &m->entries[i].addr, &slot);
                        *slot = m->entries[i];
                        n.n++;
                        n.used++;
                }
        free(m->entries);
        *m = n;
        return 0;
}

int podmap_reserve(PodMap *m, size_t n)
{
        size_t size = MAX(m->size, (size_t)64);

        if ((m->used + n) * 2 <= m->size)
                return 0;
        /* Tombstones go with a resize: size for the live entries. */
        while ((m->n + n) * 4 > size)
                size *= 2;
        return resize(m, size);
}

int podmap_put(PodMap *m, const IpAddr *a, void *value)
{
        PodMapEntry *e, *slot;
        int r;

        if ((m->used + 1) * 2 > m->size) {
                r = resize(m, MAX(m->size * (m->n * 4 > m->size ? 2 : 1), (size_t)64));
                if (r < 0)
                        return r;
        }
        e = lookup(m, a, &slot);
        if (e) {
                e->value = value;
                return 0;
        }
        if (!slot->tombstone)
                m->used++;
        *slot = (PodMapEntry){.addr = *a, .value = value};
        m->n++;
        return 0;
}

void podmap_remove(PodMap *m, const IpAddr *a)
{
        PodMapEntry *e = lookup(m, a, NULL);

        if (!e)
                return;
        *e = (PodMapEntry){.tombstone = true};
        m->n--;
}

void podmap_done(PodMap *m)
{
        free(m->entries);
        *m = (PodMap){};
}

static uint64_t str_hash(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 0x100000001b3ULL;
        }
        return h;
}

static StrMapEntry *str_lookup(const StrMap *m, const char *key, StrMapEntry **ret_free)
{
        StrMapEntry *first_free = NULL;

        if (m->size == 0) {
                if (ret_free)
                        *ret_free = NULL;
                return NULL;
        }
        for (size_t i = str_hash(key) & (m->size - 1), k = 0; k < m->size;
             i = (i + 1) & (m->size - 1), k++) {
                StrMapEntry *e = &m->entries[i];

                if (!e->key) {
                        if (!first_free)
                                first_free = e;
                        if (!e->tombstone)
                                break;
                        continue;
                }
                if (streq(e->key, key))
                        return e;
        }
        if (ret_free)
                *ret_free = first_free;
        return NULL;
}

void *strmap_get(const StrMap *m, const char *key)
{
        StrMapEntry *e = str_lookup(m, key, NULL);
        return e ? e->value : NULL;
}

static int str_resize(StrMap *m, size_t size)
{
        StrMap n = {.size = size};

        n.entries = calloc(size, sizeof(StrMapEntry));
        if (!n.entries)
                return -ENOMEM;
        for (size_t i = 0; i < m->size; i++)
                if (m->entries[i].key) {
                        StrMapEntry *slot = NULL;
                        (void)str_lookup(&n, m->entries[i].key, &slot);
                        *slot = m->entries[i];
                        n.n++;
                        n.used++;
                }
        free(m->entries);
        *m = n;
        return 0;
}

int strmap_put(StrMap *m, const char *key, void *value)
{
        StrMapEntry *e, *slot;
        char *copy;
        int r;

        if ((m->used + 1) * 2 > m->size) {
                r = str_resize(m, MAX(m->size * (m->n * 4 > m->size ? 2 : 1), (size_t)64));
                if (r < 0)
                        return r;
        }
        e = str_lookup(m, key, &slot);
        if (e) {
                e->value = value;
                return 0;
        }
        copy = strdup(key);
        if (!copy)
                return -ENOMEM;
        if (!slot->tombstone)
                m->used++;
        *slot = (StrMapEntry){.key = copy, .value = value};
        m->n++;
        return 0;
}

void strmap_remove(StrMap *m, const char *key)
{
        StrMapEntry *e = str_lookup(m, key, NULL);

        if (!e)
                return;
        free(e->key);
        *e = (StrMapEntry){.tombstone = true};
        m->n--;
}

void strmap_done(StrMap *m)
{
        for (size_t i = 0; i < m->size; i++)
                free(m->entries[i].key);
        free(m->entries);
        *m = (StrMap){};
}
