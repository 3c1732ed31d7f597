/* SPDX-License-Identifier: Apache-2.0 */
/* MicroTime and Time formatting and parsing (shared/kube/kube-time.c). */
#include <check.h>
#include <stdlib.h>

#include "kube-internal.h"
#include "kube-objects.h"

static const struct {
        const char *in;
        uint64_t want; /* UINT64_MAX = must fail */
} micro_cases[] = {
        {"2004-01-01T01:01:01.000004Z", 1072918861000004ULL},
        {"1970-01-01T00:00:00.000000Z", 0},
        {"2024-02-29T23:59:59.999999Z", 1709251199999999ULL},
        {"2024-02-29T23:59:59.999999+01:00", 1709247599999999ULL},
        {"2024-02-29T23:59:59.99999Z", UINT64_MAX},   /* 5 digits */
        {"2024-02-29T23:59:59.9999999Z", UINT64_MAX}, /* 7 digits */
        {"2024-02-29T23:59:59Z", UINT64_MAX},
        {"2024-02-30T00:00:00.000000Z", UINT64_MAX},
        {"2024-13-01T00:00:00.000000Z", UINT64_MAX},
        {"2024-01-01T24:00:00.000000Z", UINT64_MAX},
        {"2024-01-01T00:00:00.000000", UINT64_MAX},
        {"2024-01-01T00:00:00.000000Zx", UINT64_MAX},
        {"2024-01-01 00:00:00.000000Z", UINT64_MAX},
        {"", UINT64_MAX},
        {"garbage", UINT64_MAX},
};

START_TEST(test_microtime_parse)
{
        uint64_t t = 0;
        int r = kube_microtime_parse(micro_cases[_i].in, &t);

        if (micro_cases[_i].want == UINT64_MAX)
                ck_assert_msg(r < 0, "%s should fail", micro_cases[_i].in);
        else {
                ck_assert_msg(r == 0, "%s: %d", micro_cases[_i].in, r);
                ck_assert_uint_eq(t, micro_cases[_i].want);
        }
}
END_TEST

START_TEST(test_microtime_roundtrip)
{
        static const uint64_t values[] = {
                0, 1, 999999, 1000000, 1072918861000004ULL, 1709251199999999ULL, 253402300799999999ULL};
        char buf[32];

        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                uint64_t back;

                ck_assert_int_eq(kube_microtime_format(values[i], buf), 0);
                ck_assert_uint_eq(strlen(buf), 27);
                ck_assert_int_eq(kube_microtime_parse(buf, &back), 0);
                ck_assert_uint_eq(back, values[i]);
        }
        ck_assert_int_eq(kube_microtime_format(1072918861000004ULL, buf), 0);
        ck_assert_str_eq(buf, "2004-01-01T01:01:01.000004Z");
        ck_assert_int_eq(kube_microtime_format(0, buf), 0);
        ck_assert_str_eq(buf, "1970-01-01T00:00:00.000000Z");
        /* Past year 9999 RFC 3339 has no room. */
        ck_assert_int_lt(kube_microtime_format(253402300800000000ULL, buf), 0);
}
END_TEST

START_TEST(test_time)
{
        char buf[32];
        uint64_t t;

        ck_assert_int_eq(kube_time_format(1072918861999999ULL, buf), 0);
        ck_assert_str_eq(buf, "2004-01-01T01:01:01Z");
        ck_assert_int_eq(kube_time_parse("2004-01-01T01:01:01Z", &t), 0);
        ck_assert_uint_eq(t, 1072918861000000ULL);
        /* Time accepts fractions of any length, as Go's RFC3339 parser. */
        ck_assert_int_eq(kube_time_parse("2004-01-01T01:01:01.5Z", &t), 0);
        ck_assert_uint_eq(t, 1072918861500000ULL);
        ck_assert_int_lt(kube_time_parse("2004-01-01T01:01:01.Z", &t), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kube-time");
        TCase *tc = tcase_create("time");
        SRunner *sr;
        int failed;

        tcase_add_loop_test(tc, test_microtime_parse, 0, (int)ELEMENTSOF(micro_cases));
        tcase_add_test(tc, test_microtime_roundtrip);
        tcase_add_test(tc, test_time);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
