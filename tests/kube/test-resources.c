/* SPDX-License-Identifier: Apache-2.0 */
/* URL paths and queries (kube-resources.c), base64, backoff (kube-util.c). */
#include <check.h>
#include <stdlib.h>

#include "kube-client.h"
#include "kube-internal.h"

static const struct {
        const KubeResource *res;
        const char *ns, *name, *sub;
        const char *want; /* NULL = must fail */
} path_cases[] = {
        {&kube_resource_services, NULL, NULL, NULL, "/api/v1/services"},
        {&kube_resource_services, "default", NULL, NULL, "/api/v1/namespaces/default/services"},
        {&kube_resource_services, "default", "web", "status",
         "/api/v1/namespaces/default/services/web/status"},
        {&kube_resource_leases, "kube-system", "plndr-svcs-lock", NULL,
         "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-svcs-lock"},
        {&kube_resource_endpointslices, "ns", NULL, NULL,
         "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices"},
        {&kube_resource_nodes, NULL, "n1", NULL, "/api/v1/nodes/n1"},
        {&kube_resource_servicecidrs, NULL, NULL, NULL, "/apis/networking.k8s.io/v1/servicecidrs"},
        {&kube_resource_events, "default", NULL, NULL, "/api/v1/namespaces/default/events"},
        {&kube_resource_configmaps, "a b", "x/y", NULL, "/api/v1/namespaces/a%20b/configmaps/x%2Fy"},
        {&kube_resource_nodes, "default", "n1", NULL, NULL}, /* cluster-scoped with a namespace */
        {&kube_resource_services, "default", NULL, "status", NULL},
        {&kube_resource_services, "default", "..", NULL, NULL},
        {&kube_resource_services, "", "x", NULL, NULL},
};

START_TEST(test_path)
{
        char *p = NULL;
        int r = kube_resource_path(path_cases[_i].res, path_cases[_i].ns, path_cases[_i].name,
                                   path_cases[_i].sub, &p);

        if (path_cases[_i].want) {
                ck_assert_int_eq(r, 0);
                ck_assert_str_eq(p, path_cases[_i].want);
        } else
                ck_assert_int_lt(r, 0);
        free(p);
}
END_TEST

START_TEST(test_query)
{
        KubeBuf b = {};

        ck_assert_int_eq(kube_buf_printf(&b, "/api/v1/services"), 0);
        ck_assert_int_eq(kube_query_append(&b, "labelSelector", "kubernetes.io/service-name=egress-demo"),
                         0);
        ck_assert_int_eq(kube_query_append(&b, "fieldSelector", "spec.nodeName=n1,status.phase!=Running"),
                         0);
        ck_assert_int_eq(kube_query_append(&b, "labelSelector", "env in (a,b)"), 0);
        ck_assert_str_eq(b.data, "/api/v1/services?labelSelector=kubernetes.io%2Fservice-name%3Degress-demo"
                                 "&fieldSelector=spec.nodeName%3Dn1%2Cstatus.phase%21%3DRunning"
                                 "&labelSelector=env%20in%20%28a%2Cb%29");
        kube_buf_done(&b);
}
END_TEST

START_TEST(test_base64)
{
        char *out = NULL;
        size_t n;

        ck_assert_int_eq(kube_base64_decode("aGVsbG8=", &out, &n), 0);
        ck_assert_str_eq(out, "hello");
        ck_assert_uint_eq(n, 5);
        free(out);
        ck_assert_int_eq(kube_base64_decode("aGVs\nbG8h", &out, &n), 0);
        ck_assert_str_eq(out, "hello!");
        free(out);
        ck_assert_int_eq(kube_base64_decode("", &out, &n), 0);
        ck_assert_uint_eq(n, 0);
        free(out);
        ck_assert_int_lt(kube_base64_decode("aGVsbG8", &out, &n), 0);
        ck_assert_int_lt(kube_base64_decode("a*==", &out, &n), 0);
}
END_TEST

START_TEST(test_backoff)
{
        KubeBackoff b = {.initial_usec = 1000, .max_usec = 10000};
        uint64_t d;

        for (int round = 0; round < 100; round++) {
                kube_backoff_reset(&b);
                d = kube_backoff_next(&b);
                ck_assert(d >= 1000 && d < 2000);
                d = kube_backoff_next(&b);
                ck_assert(d >= 2000 && d < 4000);
                for (int i = 0; i < 10; i++)
                        d = kube_backoff_next(&b);
                ck_assert(d <= 10000);
        }
}
END_TEST

START_TEST(test_env_range)
{
        uint64_t a, b;

        setenv("KUBE_TEST_RANGE", "3,7", 1);
        ck_assert(kube_env_range("KUBE_TEST_RANGE", &a, &b));
        ck_assert_uint_eq(a, 3);
        ck_assert_uint_eq(b, 7);
        setenv("KUBE_TEST_RANGE", "5", 1);
        ck_assert(kube_env_range("KUBE_TEST_RANGE", &a, &b));
        ck_assert_uint_eq(a, 5);
        ck_assert_uint_eq(b, 5);
        setenv("KUBE_TEST_RANGE", "7,3", 1);
        ck_assert(!kube_env_range("KUBE_TEST_RANGE", &a, &b));
        setenv("KUBE_TEST_RANGE", "x", 1);
        ck_assert(!kube_env_range("KUBE_TEST_RANGE", &a, &b));
        unsetenv("KUBE_TEST_RANGE");
        ck_assert(!kube_env_range("KUBE_TEST_RANGE", &a, &b));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kube-resources");
        TCase *tc = tcase_create("resources");
        SRunner *sr;
        int failed;

        tcase_add_loop_test(tc, test_path, 0, (int)ELEMENTSOF(path_cases));
        tcase_add_test(tc, test_query);
        tcase_add_test(tc, test_base64);
        tcase_add_test(tc, test_backoff);
        tcase_add_test(tc, test_env_range);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
