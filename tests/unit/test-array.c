/* SPDX-License-Identifier: Apache-2.0 */
/* shared/array.h: geometric growth, and what a failure leaves. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "array.h"
#include "macros.h"

START_TEST(test_grows_geometrically)
{
        _cleanup_free_ int *v = NULL;
        size_t n = 0, cap = 0, reallocs = 0, last_cap = 0, short_of_room = 0, wrong = 0;

        /* plain checks in the loop: a ck_assert per append is slow enough
         * under ASan on a loaded machine to hit Check's 4 s timeout */
        for (int i = 0; i < 100000; i++) {
                if (ARRAY_RESERVE(v, cap, n + 1) < 0 || cap < n + 1) {
                        short_of_room++;
                        break;
                }
                if (cap != last_cap)
                        reallocs++;
                last_cap = cap;
                v[n++] = i;
        }
        ck_assert_uint_eq(short_of_room, 0);
        /* 8, 16, ... 131072: 15 reallocations for 100,000 appends, not 100,000 */
        ck_assert_uint_le(reallocs, 15);
        for (int i = 0; i < 100000; i++)
                wrong += v[i] != i;
        ck_assert_uint_eq(wrong, 0);
}
END_TEST

START_TEST(test_no_shrink_and_jumps)
{
        _cleanup_free_ char *v = NULL;
        size_t cap = 0;

        ck_assert_int_eq(ARRAY_RESERVE(v, cap, 0), 0);
        ck_assert_ptr_null(v);
        ck_assert_int_eq(ARRAY_RESERVE(v, cap, 1000), 0);
        ck_assert_uint_ge(cap, 1000);
        size_t was = cap;
        ck_assert_int_eq(ARRAY_RESERVE(v, cap, 3), 0);
        ck_assert_uint_eq(cap, was);
}
END_TEST

START_TEST(test_overflow_leaves_array_alone)
{
        _cleanup_free_ uint64_t *v = NULL;
        size_t cap = 0;

        ck_assert_int_eq(ARRAY_RESERVE(v, cap, 4), 0);
        v[0] = 42;
        uint64_t *before = v;
        size_t cap_before = cap;
        ck_assert_int_eq(ARRAY_RESERVE(v, cap, SIZE_MAX / 4), -ENOMEM);
        ck_assert_int_eq(ARRAY_RESERVE(v, cap, SIZE_MAX), -ENOMEM);
        ck_assert_ptr_eq(v, before);
        ck_assert_uint_eq(cap, cap_before);
        ck_assert_uint_eq(v[0], 42);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("array");
        TCase *tc = tcase_create("reserve");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_grows_geometrically);
        tcase_add_test(tc, test_no_shrink_and_jumps);
        tcase_add_test(tc, test_overflow_leaves_array_alone);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
