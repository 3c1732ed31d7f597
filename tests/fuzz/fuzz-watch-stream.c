/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the watch stream splitter (shared/kube/kube-watch-parser.c),
 * which cuts the apiserver's byte stream into JSON values.
 *
 * Input: byte 0 picks the value size limit, byte 1 seeds the chunk sizes;
 * the rest is the stream. The stream is fed twice, whole and in chunks, and
 * both feeds must yield the same values, the same error and the same
 * "partial" state: where the network cuts the stream must not matter. */
#include <errno.h>

#include "fuzz-util.h"
#include "kube-internal.h"

typedef struct Seen {
        size_t n;
        uint64_t hash; /* FNV-1a over the compact dumps of the values */
        bool stop_early;
} Seen;

static uint64_t fnv1a(uint64_t h, const char *s)
{
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
        return h;
}

static int on_value(json_t *v, void *userdata)
{
        Seen *seen = userdata;
        char *dump;

        fuzz_assert(json_is_object(v) || json_is_array(v));
        /* What the informer reads of each event. */
        fuzz_escape(json_string_value(json_object_get(v, "type")));
        fuzz_escape(json_object_get(v, "object"));
        dump = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (dump)
                seen->hash = fnv1a(seen->hash, dump);
        free(dump);
        seen->n++;
        /* A callback's error stops the feed and comes back from it. */
        if (seen->stop_early && seen->n == 3)
                return -ECANCELED;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const size_t limits[] = {64, 4096, 1 << 20};
        KubeJsonSplitter whole, chunked;
        Seen a = {.hash = 0xcbf29ce484222325ULL}, b = {.hash = 0xcbf29ce484222325ULL};
        uint32_t rnd;
        size_t max_value, off;
        int ra, rb = 0;

        if (size < 2 || size > 256 * 1024)
                return 0;
        max_value = limits[data[0] % 3];
        a.stop_early = b.stop_early = data[0] & 0x80;
        rnd = data[1] | 1u;
        data += 2;
        size -= 2;

        kube_json_splitter_init(&whole, max_value);
        ra = kube_json_splitter_feed(&whole, data, size, on_value, &a);

        kube_json_splitter_init(&chunked, max_value);
        for (off = 0; off < size && rb >= 0;) {
                size_t n;

                /* xorshift32: chunks of 1..64 bytes, often 1. */
                rnd ^= rnd << 13;
                rnd ^= rnd >> 17;
                rnd ^= rnd << 5;
                n = (rnd & 3) == 0 ? 1 : 1 + (rnd >> 8) % 64;
                n = MIN(n, size - off);
                rb = kube_json_splitter_feed(&chunked, data + off, n, on_value, &b);
                off += n;
        }

        fuzz_assert(ra == 0 || ra == -EBADMSG || ra == -E2BIG || ra == -ECANCELED || ra == -ENOMEM);
        fuzz_assert(ra == rb);
        fuzz_assert(a.n == b.n);
        fuzz_assert(a.hash == b.hash);
        if (ra == 0)
                fuzz_assert(kube_json_splitter_partial(&whole) == kube_json_splitter_partial(&chunked));

        kube_json_splitter_done(&whole);
        kube_json_splitter_done(&chunked);
        return 0;
}
