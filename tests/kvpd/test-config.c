/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvpd/config.c: environment with kube-vip's names. Each test
 * runs in its own process (Check forks), so setenv() stays local to it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"

static void clear_env(void)
{
        static const char *const names[] = {
                "vip_nodename",           "KVEGRESS_NODE_NAME",
                "vip_servicesinterface",  "vip_interface",
                "svc_namespace",          "egress_podcidr",
                "egress_servicecidr",     "KUBERNETES_SERVICE_HOST",
                "KVEGRESS_KUBECONFIG",    "CREDENTIALS_DIRECTORY",
                "KVEGRESS_GRANT_MARGIN",  "vip_leaseduration",
                "egress_clean",           "vip_arpRate",
                "KVEGRESS_KVNETD_SOCKET", "lb_class_name",
                "lb_class_only",          "lb_class_legacy_handling",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                unsetenv(names[i]);
}

START_TEST(test_defaults)
{
        Config c = {};

        clear_env();
        ck_assert_int_eq(config_load(&c), 0);
        ck_assert_ptr_nonnull(c.node_name);
        ck_assert_str_eq(c.service_interface, "auto");
        ck_assert_ptr_null(c.namespace);
        ck_assert_uint_eq(c.n_pod_cidrs, 0);
        ck_assert_str_eq(c.kvnetd_socket, "/run/kvnetd/kvnetd.sock");
        ck_assert_uint_eq(c.grant_margin_usec, CONFIG_GRANT_MARGIN_DEFAULT_USEC);
        ck_assert_str_eq(c.lb_class.name, LB_CLASS_NAME_DEFAULT);
        ck_assert(c.lb_class.legacy);
        ck_assert(!c.lb_class.only);
        config_done(&c);
}
END_TEST

START_TEST(test_kube_vip_names)
{
        Config c = {};

        clear_env();
        setenv("vip_nodename", "Worker-2", 1);
        setenv("vip_interface", "eth0", 1);
        setenv("vip_servicesinterface", "eth1", 1);
        setenv("svc_namespace", "apps", 1);
        setenv("egress_podcidr", "10.244.0.0/16, fd00:10:244::/56", 1);
        setenv("egress_servicecidr", "10.96.0.0/12", 1);
        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        setenv("vip_leaseduration", "5", 1);
        setenv("vip_arpRate", "3000", 1);
        setenv("egress_clean", "true", 1);
        setenv("KVEGRESS_GRANT_MARGIN", "250ms", 1);
        setenv("lb_class_name", "corp/egress", 1);
        setenv("lb_class_only", "true", 1);
        setenv("lb_class_legacy_handling", "false", 1);
        ck_assert_int_eq(config_load(&c), 0);
        ck_assert_str_eq(c.lb_class.name, "corp/egress");
        ck_assert(c.lb_class.only);
        ck_assert(!c.lb_class.legacy);
        ck_assert_str_eq(c.node_name, "worker-2"); /* lowercased, as kube-vip */
        ck_assert_str_eq(c.service_interface, "eth1");
        ck_assert_str_eq(c.namespace, "apps");
        ck_assert_uint_eq(c.n_pod_cidrs, 2);
        ck_assert_uint_eq(c.n_service_cidrs, 1);
        ck_assert_uint_eq(c.n_api_servers, 1);
        ck_assert(c.egress_clean);
        ck_assert_uint_eq(c.grant_margin_usec, 250 * 1000);
        config_done(&c);
}
END_TEST

static const struct {
        const char *name, *value;
} bad_cases[] = {
        {"egress_podcidr", "10.244.0.0/16,10.245.0.0"},
        {"egress_servicecidr", "nope"},
        {"vip_servicesinterface", "a/b"},
        {"svc_namespace", "Not_A_Namespace"},
        {"vip_nodename", "under_score"},
        {"vip_leaseduration", "soon"},
        {"egress_clean", "perhaps"},
        {"KVEGRESS_GRANT_MARGIN", "5 parsecs"},
        {"vip_arpRate", "-1"},
        {"lb_class_only", "maybe"},
        {"lb_class_legacy_handling", "2"},
};

/* A configuration error fails, and (checked by eye in the test log) its
 * message starts with the variable's name. */
START_TEST(test_bad)
{
        Config c = {};

        clear_env();
        setenv(bad_cases[_i].name, bad_cases[_i].value, 1);
        ck_assert_int_lt(config_load(&c), 0);
        config_done(&c);
}
END_TEST

START_TEST(test_help_lists_variables)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        config_help(f);
        fclose(f);
        ck_assert_ptr_nonnull(strstr(buf, "vip_nodename"));
        ck_assert_ptr_nonnull(strstr(buf, "egress_podcidr"));
        ck_assert_ptr_nonnull(strstr(buf, "KVEGRESS_KVNETD_SOCKET"));
        ck_assert_ptr_nonnull(strstr(buf, "vip_arpRate"));
        free(buf);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_kube_vip_names);
        tcase_add_loop_test(tc, test_bad, 0, sizeof(bad_cases) / sizeof(bad_cases[0]));
        tcase_add_test(tc, test_help_lists_variables);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
