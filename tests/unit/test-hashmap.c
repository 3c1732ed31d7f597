/* SPDX-License-Identifier: Apache-2.0 */
/* shared/hashmap.h against a plain array as the model: every key put is
 * found, every key removed is gone, whatever the order of removals (the
 * backward shift must keep every probe run intact). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "macros.h"

#define N 20000

static char keys[N][16];

static void make_keys(void)
{
        for (int i = 0; i < N; i++)
                (void)snprintf(keys[i], sizeof(keys[i]), "ns/svc-%d", i);
}

START_TEST(test_put_get_remove)
{
        Hashmap h = {};
        static bool present[N];
        unsigned state = 12345;

        make_keys();
        ck_assert_ptr_null(hashmap_get(&h, "absent"));
        ck_assert_ptr_null(hashmap_remove(&h, "absent"));
        for (int i = 0; i < N; i++) {
                if (hashmap_put(&h, keys[i], &keys[i]) < 0)
                        ck_abort_msg("hashmap_put(%s) failed", keys[i]);
                present[i] = true;
        }
        ck_assert_uint_eq(hashmap_size(&h), N);
        /* Replacing keeps the count. */
        ck_assert_int_eq(hashmap_put(&h, keys[7], &keys[8]), 0);
        ck_assert_ptr_eq(hashmap_get(&h, keys[7]), &keys[8]);
        ck_assert_int_eq(hashmap_put(&h, keys[7], &keys[7]), 0);
        ck_assert_uint_eq(hashmap_size(&h), N);

        /* Random removals and re-inserts, checked against the model (one
         * ck_assert at the end: one per operation is slow under ASan). */
        {
                unsigned wrong = 0;

                for (int round = 0; round < 3 * N; round++) {
                        int i;
                        state = state * 1103515245U + 12345U;
                        i = (int)((state >> 8) % N);
                        if (present[i]) {
                                wrong += hashmap_remove(&h, keys[i]) != &keys[i];
                                present[i] = false;
                        } else {
                                wrong += hashmap_put(&h, keys[i], &keys[i]) != 0;
                                present[i] = true;
                        }
                }
                ck_assert_uint_eq(wrong, 0);
        }
        {
                size_t n = 0, seen = 0;
                const char *k;
                void *v;

                unsigned wrong = 0;

                for (int i = 0; i < N; i++) {
                        if (present[i]) {
                                wrong += hashmap_get(&h, keys[i]) != &keys[i];
                                n++;
                        } else
                                wrong += hashmap_get(&h, keys[i]) != NULL;
                }
                ck_assert_uint_eq(wrong, 0);
                ck_assert_uint_eq(hashmap_size(&h), n);
                HASHMAP_FOREACH(&h, i, k, v)
                {
                        wrong += v != (void *)k;
                        seen++;
                }
                ck_assert_uint_eq(wrong, 0);
                ck_assert_uint_eq(seen, n);
        }
        hashmap_done(&h);
        ck_assert_uint_eq(hashmap_size(&h), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("hashmap");
        TCase *tc = tcase_create("hashmap");
        SRunner *sr;
        int failed;

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_put_get_remove);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
