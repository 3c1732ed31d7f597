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
                        PodMapEntry *slot;
                        (void)lookup(&n, &m->entries[i].addr, &slot);
                        *slot = m->entries[i];
                        n.n++;
                        n.used++;
                }
        free(m->entries);
        *m = n;
        return 0;
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
