/* SPDX-License-Identifier: Apache-2.0 */
/* The watch stream splitter (kube-watch-parser.c): the realistic watch
 * streams split at every byte boundary, byte by byte, and in random chunks
 * must give exactly the events of the file; broken streams are errors. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube-internal.h"

static const char *const streams[] = {
        "watch-services.ndjson",
        "watch-endpointslices.ndjson",
        "watch-error-410.ndjson",
};

typedef struct Collected {
        json_t *values; /* array */
} Collected;

static int collect(json_t *v, void *userdata)
{
        Collected *c = userdata;
        ck_assert_int_eq(json_array_append(c->values, v), 0);
        return 0;
}

static char *read_fixture(const char *name, size_t *ret_size)
{
        char path[1024], *text = NULL;

        (void)snprintf(path, sizeof(path), "%s/realistic/%s", KUBE_FIXTURES_DIR, name);
        ck_assert_int_eq(kube_read_file(path, 1 << 20, &text, ret_size), 0);
        return text;
}

/* The reference: one event per line. */
static json_t *expected_events(const char *text)
{
        json_t *a = json_array();
        char *copy = strdup(text), *save = NULL;

        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_t *v = json_loads(line, 0, NULL);
                ck_assert_ptr_nonnull(v);
                ck_assert_int_eq(json_array_append_new(a, v), 0);
        }
        free(copy);
        return a;
}

static void feed_in_pieces(const char *text, size_t size, const size_t *cuts, size_t n_cuts, json_t *want)
{
        KubeJsonSplitter s;
        Collected c = {.values = json_array()};
        size_t at = 0;

        kube_json_splitter_init(&s, 1 << 20);
        for (size_t i = 0; i <= n_cuts; i++) {
                size_t end = i < n_cuts ? cuts[i] : size;
                ck_assert_int_eq(kube_json_splitter_feed(&s, text + at, end - at, collect, &c), 0);
                at = end;
        }
        ck_assert(!kube_json_splitter_partial(&s));
        ck_assert_msg(json_equal(c.values, want), "events differ");
        json_decref(c.values);
        kube_json_splitter_done(&s);
}

START_TEST(test_every_boundary)
{
        size_t size;
        char *text = read_fixture(streams[_i], &size);
        json_t *want = expected_events(text);

        ck_assert_uint_gt(json_array_size(want), 0);
        /* One cut at every position. */
        for (size_t cut = 0; cut <= size; cut++)
                feed_in_pieces(text, size, &cut, 1, want);
        /* Two cuts at every pair of positions would be quadratic in a 6 KiB
         * file times the parse: sample pairs instead. */
        for (size_t a = 0; a <= size; a += 7)
                for (size_t b = a; b <= size; b += 131) {
                        size_t cuts[2] = {a, b};
                        feed_in_pieces(text, size, cuts, 2, want);
                }
        json_decref(want);
        free(text);
}
END_TEST

START_TEST(test_byte_by_byte_and_random)
{
        size_t size;
        char *text = read_fixture(streams[_i], &size);
        json_t *want = expected_events(text);
        size_t *cuts = calloc(size + 1, sizeof(size_t));

        for (size_t i = 0; i < size; i++)
                cuts[i] = i + 1;
        feed_in_pieces(text, size, cuts, size > 0 ? size - 1 : 0, want);

        srand(1234);
        for (int round = 0; round < 200; round++) {
                size_t n = 0, at = 0;
                while (at < size) {
                        at += 1 + (size_t)rand() % 300;
                        if (at < size)
                                cuts[n++] = at;
                }
                feed_in_pieces(text, size, cuts, n, want);
        }
        free(cuts);
        json_decref(want);
        free(text);
}
END_TEST

/* All streams back to back, and with the whitespace Go never sends. */
START_TEST(test_concatenated)
{
        KubeJsonSplitter s;
        Collected c = {.values = json_array()};
        json_t *want = json_array();

        kube_json_splitter_init(&s, 1 << 20);
        for (size_t i = 0; i < ELEMENTSOF(streams); i++) {
                size_t size;
                char *text = read_fixture(streams[i], &size);
                json_t *w = expected_events(text);

                ck_assert_int_eq(json_array_extend(want, w), 0);
                ck_assert_int_eq(kube_json_splitter_feed(&s, text, size, collect, &c), 0);
                ck_assert_int_eq(kube_json_splitter_feed(&s, " \r\n\t", 4, collect, &c), 0);
                json_decref(w);
                free(text);
        }
        ck_assert(json_equal(c.values, want));
        json_decref(want);
        json_decref(c.values);
        kube_json_splitter_done(&s);
}
END_TEST

START_TEST(test_tricky_strings)
{
        static const char text[] = "{\"a\":\"}{\\\"\\\\\",\"b\":[\"]\",{\"c\":\"\\u007d\"}]}{\"x\":1}\n"
                                   "{\n  \"pretty\": [1,\n 2]\n}\n[1,[2]]{\"u\":\"\xc3\xa9\xe2\x82\xac\"}";
        KubeJsonSplitter s;
        Collected c = {.values = json_array()};

        kube_json_splitter_init(&s, 1 << 20);
        for (size_t i = 0; i < sizeof(text) - 1; i++)
                ck_assert_int_eq(kube_json_splitter_feed(&s, text + i, 1, collect, &c), 0);
        ck_assert_uint_eq(json_array_size(c.values), 5);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c.values, 0), "a")), "}{\"\\");
        ck_assert(json_is_array(json_array_get(c.values, 3)));
        ck_assert(!kube_json_splitter_partial(&s));
        json_decref(c.values);
        kube_json_splitter_done(&s);
}
END_TEST

START_TEST(test_broken)
{
        KubeJsonSplitter s;
        Collected c = {.values = json_array()};
        char big[5000];

        /* A truncated event stays pending, never half-delivered. */
        kube_json_splitter_init(&s, 1 << 20);
        ck_assert_int_eq(kube_json_splitter_feed(&s, "{\"type\":\"ADDED\",\"object\":{", 26, collect, &c),
                         0);
        ck_assert(kube_json_splitter_partial(&s));
        ck_assert_uint_eq(json_array_size(c.values), 0);
        kube_json_splitter_done(&s);

        static const char *const bad[] = {"x", "7\n", "\"s\"", "}", "{\"a\":}", "{\"a\" 1}", "{\"a\":tru}"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                kube_json_splitter_init(&s, 1 << 20);
                ck_assert_msg(kube_json_splitter_feed(&s, bad[i], strlen(bad[i]), collect, &c) == -EBADMSG,
                              "%s", bad[i]);
                kube_json_splitter_done(&s);
        }

        /* Over the maximum event size. */
        kube_json_splitter_init(&s, 4096);
        memset(big, ' ', sizeof(big));
        big[0] = '{';
        big[1] = '"';
        ck_assert_int_eq(kube_json_splitter_feed(&s, big, sizeof(big), collect, &c), -E2BIG);
        kube_json_splitter_done(&s);

        /* Whitespace between events does not count against it. */
        kube_json_splitter_init(&s, 16);
        memset(big, '\n', sizeof(big));
        ck_assert_int_eq(kube_json_splitter_feed(&s, big, sizeof(big), collect, &c), 0);
        ck_assert_int_eq(kube_json_splitter_feed(&s, "{\"a\":1}", 7, collect, &c), 0);
        kube_json_splitter_done(&s);

        /* Nesting beyond the limit. */
        kube_json_splitter_init(&s, 1 << 20);
        {
                char *deep = malloc(KUBE_JSON_DEPTH_MAX + 10);
                memset(deep, '[', KUBE_JSON_DEPTH_MAX + 10);
                ck_assert_int_eq(kube_json_splitter_feed(&s, deep, KUBE_JSON_DEPTH_MAX + 10, collect, &c),
                                 -EBADMSG);
                free(deep);
        }
        kube_json_splitter_done(&s);
        json_decref(c.values);
}
END_TEST

static int stop_after_one(json_t *v, void *userdata)
{
        (*(unsigned *)userdata)++;
        return -ECANCELED;
}

START_TEST(test_callback_stops)
{
        KubeJsonSplitter s;
        unsigned n = 0;

        kube_json_splitter_init(&s, 1 << 20);
        ck_assert_int_eq(kube_json_splitter_feed(&s, "{}{}{}", 6, stop_after_one, &n), -ECANCELED);
        ck_assert_uint_eq(n, 1);
        kube_json_splitter_done(&s);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kube-watch-parser");
        TCase *tc = tcase_create("splitter");
        SRunner *sr;
        int failed;

        tcase_set_timeout(tc, 300);
        tcase_add_loop_test(tc, test_every_boundary, 0, (int)ELEMENTSOF(streams));
        tcase_add_loop_test(tc, test_byte_by_byte_and_random, 0, (int)ELEMENTSOF(streams));
        tcase_add_test(tc, test_concatenated);
        tcase_add_test(tc, test_tricky_strings);
        tcase_add_test(tc, test_broken);
        tcase_add_test(tc, test_callback_stops);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
