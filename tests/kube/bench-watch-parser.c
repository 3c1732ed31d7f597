/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark (not a test): throughput of the watch stream splitter on the
 * realistic service events, in 16 KiB chunks and byte by byte, against a
 * reference of json_loadb() on each line as the lower bound of parse cost.
 *   bench-kube-watch-parser [ROUNDS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube-internal.h"

static double now(void)
{
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count(json_t *v, void *userdata)
{
        (*(size_t *)userdata)++;
        return 0;
}

int main(int argc, char **argv)
{
        unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 2000;
        char *text = NULL;
        size_t size, events = 0, lines = 0;
        KubeBuf all = {};
        double t;

        if (kube_read_file(KUBE_FIXTURES_DIR "/realistic/watch-services.ndjson", 1 << 20, &text, &size) < 0)
                return 1;
        for (unsigned i = 0; i < rounds; i++)
                (void)kube_buf_append(&all, text, size);

        printf("%-34s %12s %12s\n", "case", "events/s", "MiB/s");
        for (size_t chunk = 16384; chunk >= 1; chunk = chunk == 16384 ? 1 : 0) {
                KubeJsonSplitter s;
                size_t n = 0, len = chunk == 1 ? all.len / 20 : all.len;

                kube_json_splitter_init(&s, 1 << 24);
                t = now();
                for (size_t at = 0; at < len; at += chunk)
                        (void)kube_json_splitter_feed(&s, all.data + at, MIN(chunk, len - at), count, &n);
                t = now() - t;
                printf("splitter, %5zu-byte chunks %16.0f %12.1f\n", chunk, (double)n / t,
                       (double)len / t / 1048576.0);
                kube_json_splitter_done(&s);
                events = n;
                if (chunk == 1)
                        break;
        }
        t = now();
        for (char *p = all.data, *nl; (nl = memchr(p, '\n', all.len - (size_t)(p - all.data))); p = nl + 1) {
                json_t *v = json_loadb(p, (size_t)(nl - p), 0, NULL);
                json_decref(v);
                lines++;
        }
        t = now() - t;
        printf("%-34s %12.0f %12.1f\n", "reference: json_loadb per line", (double)lines / t,
               (double)all.len / t / 1048576.0);
        (void)events;
        free(text);
        kube_buf_done(&all);
        return 0;
}
