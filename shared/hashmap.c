/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hashmap.h"

#define HASHMAP_MIN_SLOTS 16U

static size_t hash_string(size_t seed, const char *s)
{
        uint64_t h = 14695981039346656037ULL ^ seed;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        /* FNV-1a's low bits mix poorly; the table indexes with them. */
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 32;
        return (size_t)h;
}

void hashmap_done(Hashmap *h)
{
        if (!h)
                return;
        free(h->slots);
        *h = (Hashmap){};
}

static size_t find(const Hashmap *h, const char *key, size_t hash)
{
        size_t mask = h->n_slots - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const HashmapSlot *s = &h->slots[i];
                if (!s->key || (s->hash == hash && strcmp(s->key, key) == 0))
                        return i;
        }
}

void *hashmap_get(const Hashmap *h, const char *key)
{
        size_t i;

        if (!h || h->n == 0 || !key)
                return NULL;
        i = find(h, key, hash_string(h->seed, key));
        return h->slots[i].key ? h->slots[i].value : NULL;
}

static int resize(Hashmap *h, size_t n_slots)
{
        HashmapSlot *old = h->slots, *slots;
        size_t n_old = h->n_slots;

        slots = calloc(n_slots, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        h->slots = slots;
        h->n_slots = n_slots;
        for (size_t i = 0; i < n_old; i++)
                if (old[i].key)
                        h->slots[find(h, old[i].key, old[i].hash)] = old[i];
        free(old);
        return 0;
}

int hashmap_put(Hashmap *h, const char *key, void *value)
{
        size_t hash, i;
        int r;

        if (!h || !key)
                return -EINVAL;
        if (h->n_slots == 0) {
                if (getrandom(&h->seed, sizeof(h->seed), GRND_NONBLOCK) != sizeof(h->seed))
                        h->seed = (size_t)(uintptr_t)h ^ 0x9e3779b97f4a7c15ULL;
                r = resize(h, HASHMAP_MIN_SLOTS);
                if (r < 0)
                        return r;
        }
        hash = hash_string(h->seed, key);
        i = find(h, key, hash);
        if (h->slots[i].key) {
                h->slots[i].key = key;
                h->slots[i].value = value;
                return 0;
        }
        if ((h->n + 1) * 4 > h->n_slots * 3) {
                if (h->n_slots > SIZE_MAX / 2 / sizeof(HashmapSlot))
                        return -ENOMEM;
                r = resize(h, h->n_slots * 2);
                if (r < 0)
                        return r;
                i = find(h, key, hash);
        }
        h->slots[i] = (HashmapSlot){.key = key, .value = value, .hash = hash};
        h->n++;
        return 0;
}

void *hashmap_remove(Hashmap *h, const char *key)
{
        size_t mask, i, j;
        void *value;

        if (!h || h->n == 0 || !key)
                return NULL;
        mask = h->n_slots - 1;
        i = find(h, key, hash_string(h->seed, key));
        if (!h->slots[i].key)
                return NULL;
        value = h->slots[i].value;
        /* Backward shift: move up every later entry of the run that may
         * sit in the hole's place, so probing never stops early. */
        for (j = (i + 1) & mask; h->slots[j].key; j = (j + 1) & mask) {
                size_t home = h->slots[j].hash & mask;
                /* j's entry may move to i if its home is not in (i, j]. */
                if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
                        h->slots[i] = h->slots[j];
                        i = j;
                }
        }
        h->slots[i] = (HashmapSlot){};
        h->n--;
        return value;
}

bool hashmap_next(const Hashmap *h, size_t *i, const char **ret_key, void **ret_value)
{
        if (!h)
                return false;
        for (; *i < h->n_slots; (*i)++)
                if (h->slots[*i].key) {
                        *ret_key = h->slots[*i].key;
                        *ret_value = h->slots[*i].value;
                        (*i)++;
                        return true;
                }
        return false;
}
