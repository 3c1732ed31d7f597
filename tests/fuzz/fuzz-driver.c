/* SPDX-License-Identifier: Apache-2.0 */
/* Runs a libFuzzer target without libFuzzer (gcc builds, CI): every file
 * given on the command line, then N pseudo-random mutations of them, so the
 * sanitizer build exercises each parser of untrusted bytes on every run.
 * With clang and -Dfuzz=true the same targets link against libFuzzer instead. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
        /* xorshift64*: reproducible across runs, which a regression test wants. */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

static int run_file(const char *path, uint8_t **seeds, size_t *seed_sizes, size_t *n_seeds)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf;
        long len;

        if (!f)
                return -1;
        fseek(f, 0, SEEK_END);
        len = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)len + 1);
        if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
                fclose(f);
                free(buf);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)len);
        if (*n_seeds < 4096) {
                seeds[*n_seeds] = buf;
                seed_sizes[(*n_seeds)++] = (size_t)len;
        } else
                free(buf);
        return 0;
}

int main(int argc, char *argv[])
{
        static uint8_t *seeds[4096];
        static size_t seed_sizes[4096];
        size_t n_seeds = 0;
        unsigned long iterations = 20000;
        const char *e = getenv("FUZZ_ITERATIONS");

        if (e)
                iterations = strtoul(e, NULL, 10);
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        perror(argv[i]);
                        return EXIT_FAILURE;
                }
                if (S_ISDIR(st.st_mode)) {
                        DIR *d = opendir(argv[i]);
                        struct dirent *de;
                        while (d && (de = readdir(d))) {
                                char p[4096];
                                if (de->d_name[0] == '.')
                                        continue;
                                snprintf(p, sizeof(p), "%s/%s", argv[i], de->d_name);
                                (void)run_file(p, seeds, seed_sizes, &n_seeds);
                        }
                        if (d)
                                closedir(d);
                } else
                        (void)run_file(argv[i], seeds, seed_sizes, &n_seeds);
        }

        /* Mutations: flip, insert, delete, splice bytes of the seeds. */
        for (unsigned long it = 0; it < iterations && n_seeds > 0; it++) {
                size_t s = rng() % n_seeds, len = seed_sizes[s];
                size_t cap = len + 64;
                uint8_t *buf = malloc(cap);
                unsigned n_mut = 1 + rng() % 8;

                memcpy(buf, seeds[s], len);
                for (unsigned m = 0; m < n_mut; m++) {
                        switch (rng() % 4) {
                        case 0:
                                if (len)
                                        buf[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
                                break;
                        case 1:
                                if (len < cap) {
                                        size_t at = len ? rng() % len : 0;
                                        memmove(buf + at + 1, buf + at, len - at);
                                        buf[at] = (uint8_t)rng();
                                        len++;
                                }
                                break;
                        case 2:
                                if (len) {
                                        size_t at = rng() % len;
                                        memmove(buf + at, buf + at + 1, len - at - 1);
                                        len--;
                                }
                                break;
                        default:
                                if (len) {
                                        size_t o = rng() % n_seeds, at = rng() % len;
                                        size_t take = seed_sizes[o] < cap - at ? seed_sizes[o] : cap - at;
                                        memcpy(buf + at, seeds[o], take);
                                        if (at + take > len)
                                                len = at + take;
                                }
                        }
                }
                /* Hand the target an exact-size heap copy so ASan sees
                 * any read past the end. */
                uint8_t *exact = malloc(len ? len : 1);
                memcpy(exact, buf, len);
                LLVMFuzzerTestOneInput(exact, len);
                free(exact);
                free(buf);
        }
        for (size_t i = 0; i < n_seeds; i++)
                free(seeds[i]);
        printf("fuzz-driver: %zu seeds, %lu mutations, no crash\n", n_seeds, iterations);
        return EXIT_SUCCESS;
}
