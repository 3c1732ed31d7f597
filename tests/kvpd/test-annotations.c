/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvpd/annotations.c: kube-vip's annotations, parsed strictly. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "annotations.h"

#define MAX_PAIRS 8

typedef struct Case {
        const char *name;
        const char *kv[MAX_PAIRS * 2 + 1]; /* key, value, ..., NULL */
        bool ok;
        const char *bad_key;     /* for failures: the annotation named */
        const char *message_has; /* for failures: a substring of the message */
} Case;

static KubeStringMap map_from(const char *const *kv, char **keys, char **values)
{
        KubeStringMap m = {.keys = keys, .values = values};

        for (size_t i = 0; kv[2 * i]; i++) {
                keys[i] = (char *)kv[2 * i];
                values[i] = (char *)kv[2 * i + 1];
                m.n++;
        }
        return m;
}

static const Case cases[] = {
        {"nothing", {NULL}, true, NULL, NULL},
        {"egress on", {KV_ANN_EGRESS, "true", NULL}, true, NULL, NULL},
        {"ports", {KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:8080,udp:5060", NULL}, true, NULL, NULL},
        {"ports with spaces",
         {KV_ANN_EGRESS_DESTINATION_PORTS, " tcp:8080 , udp:5060 ", NULL},
         true,
         NULL,
         NULL},
        {"sctp port", {KV_ANN_EGRESS_DESTINATION_PORTS, "sctp:3868", NULL}, true, NULL, NULL},
        {"bare port",
         {KV_ANN_EGRESS_DESTINATION_PORTS, "8080", NULL},
         false,
         KV_ANN_EGRESS_DESTINATION_PORTS,
         "\"8080\""},
        {"unknown protocol",
         {KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:80,icmp:1", NULL},
         false,
         KV_ANN_EGRESS_DESTINATION_PORTS,
         "entry 2"},
        {"port zero",
         {KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:0", NULL},
         false,
         KV_ANN_EGRESS_DESTINATION_PORTS,
         "\"0\""},
        {"port too big",
         {KV_ANN_EGRESS_DESTINATION_PORTS, "udp:65536", NULL},
         false,
         KV_ANN_EGRESS_DESTINATION_PORTS,
         "65536"},
        {"empty port entry",
         {KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:80,,udp:53", NULL},
         false,
         KV_ANN_EGRESS_DESTINATION_PORTS,
         "entry 2"},
        {"empty ports",
         {KV_ANN_EGRESS_DESTINATION_PORTS, "", NULL},
         false,
         KV_ANN_EGRESS_DESTINATION_PORTS,
         "empty"},
        {"denied", {KV_ANN_EGRESS_DENIED_NETWORKS, "172.18.0.0/24, 10.1.0.0/16", NULL}, true, NULL, NULL},
        {"denied v6", {KV_ANN_EGRESS_DENIED_NETWORKS, "fd00:1::/64", NULL}, true, NULL, NULL},
        {"denied empty is none", {KV_ANN_EGRESS_DENIED_NETWORKS, "", NULL}, true, NULL, NULL},
        {"denied bad",
         {KV_ANN_EGRESS_DENIED_NETWORKS, "172.18.0.0/24,172.19.0.0/33", NULL},
         false,
         KV_ANN_EGRESS_DENIED_NETWORKS,
         "172.19.0.0/33"},
        {"denied bare address",
         {KV_ANN_EGRESS_DENIED_NETWORKS, "172.18.0.1", NULL},
         false,
         KV_ANN_EGRESS_DENIED_NETWORKS,
         "172.18.0.1"},
        {"allowed", {KV_ANN_EGRESS_ALLOWED_NETWORKS, "172.18.0.0/24", NULL}, true, NULL, NULL},
        {"allowed empty",
         {KV_ANN_EGRESS_ALLOWED_NETWORKS, " ", NULL},
         false,
         KV_ANN_EGRESS_ALLOWED_NETWORKS,
         "empty"},
        {"allowed garbage",
         {KV_ANN_EGRESS_ALLOWED_NETWORKS, "172.18.0.0/24,nope", NULL},
         false,
         KV_ANN_EGRESS_ALLOWED_NETWORKS,
         "nope"},
        {"lb ips", {KV_ANN_LOADBALANCER_IPS, "192.168.10.220, fd00::220", NULL}, true, NULL, NULL},
        {"lb dns",
         {KV_ANN_LOADBALANCER_IPS, "192.168.10.220,vip.example.com", NULL},
         false,
         KV_ANN_LOADBALANCER_IPS,
         "DNS name"},
        {"lb cidr",
         {KV_ANN_LOADBALANCER_IPS, "192.168.10.0/24", NULL},
         false,
         KV_ANN_LOADBALANCER_IPS,
         "192.168.10.0/24"},
        {"lb repeated",
         {KV_ANN_LOADBALANCER_IPS, "192.168.10.1,192.168.10.1", NULL},
         false,
         KV_ANN_LOADBALANCER_IPS,
         "repeated"},
        {"lb too many",
         {KV_ANN_LOADBALANCER_IPS,
          "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7,"
          "10.0.0.8,10.0.0.9",
          NULL},
         false,
         KV_ANN_LOADBALANCER_IPS,
         "more than 8"},
        {"lease name", {KV_ANN_LEASE_NAME, "shared-lease", NULL}, true, NULL, NULL},
        {"lease ns/name", {KV_ANN_LEASE_NAME, "infra/shared-lease", NULL}, true, NULL, NULL},
        {"lease bad", {KV_ANN_LEASE_NAME, "Shared_Lease", NULL}, false, KV_ANN_LEASE_NAME, "Shared_Lease"},
        {"lease bad ns", {KV_ANN_LEASE_NAME, "a/b/c", NULL}, false, KV_ANN_LEASE_NAME, NULL},
        {"interface", {KV_ANN_SERVICE_INTERFACE, "eth1", NULL}, true, NULL, NULL},
        {"interface auto", {KV_ANN_SERVICE_INTERFACE, "auto", NULL}, true, NULL, NULL},
        {"interface bad",
         {KV_ANN_SERVICE_INTERFACE, "eth1/../x", NULL},
         false,
         KV_ANN_SERVICE_INTERFACE,
         "eth1"},
        {"interface too long",
         {KV_ANN_SERVICE_INTERFACE, "averyveryverylongname", NULL},
         false,
         KV_ANN_SERVICE_INTERFACE,
         NULL},
        {"vlan refused",
         {KV_ANN_SERVICE_VLAN, "eth0.200", NULL},
         false,
         KV_ANN_SERVICE_VLAN,
         "not supported"},
        {"detect api true", {KV_ANN_EGRESS_DETECT_API_SERVER, "true", NULL}, true, NULL, NULL},
        {"detect api false", {KV_ANN_EGRESS_DETECT_API_SERVER, "false", NULL}, true, NULL, NULL},
        {"detect api yes",
         {KV_ANN_EGRESS_DETECT_API_SERVER, "yes", NULL},
         false,
         KV_ANN_EGRESS_DETECT_API_SERVER,
         "\"yes\""},
        {"no internal true", {KV_ANN_EGRESS_NO_INTERNAL_TRAFFIC, "true", NULL}, true, NULL, NULL},
        {"no internal junk",
         {KV_ANN_EGRESS_NO_INTERNAL_TRAFFIC, "maybe", NULL},
         false,
         KV_ANN_EGRESS_NO_INTERNAL_TRAFFIC,
         "maybe"},
        {"internal any", {KV_ANN_EGRESS_INTERNAL, "whatever", NULL}, true, NULL, NULL},
        {"source ports ignored", {KV_ANN_EGRESS_SOURCE_PORTS, "not:parsed:at:all", NULL}, true, NULL, NULL},
};

START_TEST(test_table)
{
        const Case *c = &cases[_i];
        char *keys[MAX_PAIRS], *values[MAX_PAIRS];
        KubeStringMap m = map_from(c->kv, keys, values);
        EgressAnnotations a = {};
        AnnotationError e = {};
        int r;

        r = egress_annotations_parse(&m, "default", &a, &e);
        if (c->ok) {
                ck_assert_msg(r == 0, "%s: unexpected failure: %s", c->name, e.message);
        } else {
                ck_assert_msg(r < 0, "%s: should fail", c->name);
                ck_assert_msg(streq_ptr(e.key, c->bad_key), "%s: key %s, want %s", c->name, e.key,
                              c->bad_key);
                /* The message starts with the annotation so a reader knows
                 * where to look. */
                ck_assert_msg(strncmp(e.message, c->bad_key, strlen(c->bad_key)) == 0, "%s: message \"%s\"",
                              c->name, e.message);
                if (c->message_has)
                        ck_assert_msg(strstr(e.message, c->message_has), "%s: \"%s\" lacks \"%s\"", c->name,
                                      e.message, c->message_has);
        }
        egress_annotations_done(&a);
}
END_TEST

START_TEST(test_values)
{
        const char *kv[] = {KV_ANN_EGRESS,
                            "true",
                            KV_ANN_EGRESS_IPV6,
                            "true",
                            KV_ANN_EGRESS_DESTINATION_PORTS,
                            "tcp:8080, udp:5060",
                            KV_ANN_EGRESS_DENIED_NETWORKS,
                            "172.18.0.0/24",
                            KV_ANN_LOADBALANCER_IPS,
                            "192.168.10.220,fd00::220",
                            KV_ANN_LEASE_NAME,
                            "shared",
                            KV_ANN_EGRESS_DETECT_API_SERVER,
                            "true",
                            NULL};
        char *keys[MAX_PAIRS], *values[MAX_PAIRS], buf[INET6_ADDRSTRLEN];
        KubeStringMap m = map_from(kv, keys, values);
        EgressAnnotations a = {};

        ck_assert_int_eq(egress_annotations_parse(&m, "web", &a, NULL), 0);
        ck_assert(a.egress && a.ipv6 && a.detect_api_server && !a.ignore);
        ck_assert_uint_eq(a.n_ports, 2);
        ck_assert_int_eq(a.ports[0].proto, L4_PROTO_TCP);
        ck_assert_uint_eq(a.ports[0].port, 8080);
        ck_assert_int_eq(a.ports[1].proto, L4_PROTO_UDP);
        ck_assert_uint_eq(a.ports[1].port, 5060);
        ck_assert_uint_eq(a.n_denied, 1);
        ck_assert(a.has_lb_ips);
        ck_assert_uint_eq(a.n_lb_ips, 2);
        ck_assert_str_eq(ip_addr_to_string(&a.lb_ips[1], buf), "fd00::220");
        ck_assert_str_eq(a.lease_namespace, "web");
        ck_assert_str_eq(a.lease_name, "shared");
        ck_assert_ptr_null(a.service_interface);
        egress_annotations_done(&a);
}
END_TEST

/* kube-vip: "egress" must be exactly "true"; other values are "off", not errors. */
START_TEST(test_egress_exact)
{
        static const char *const values[] = {"True", "TRUE", "1", "yes", "", " true"};
        char *keys[MAX_PAIRS], *vals[MAX_PAIRS];

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                const char *kv[] = {KV_ANN_EGRESS, values[i], NULL};
                KubeStringMap m = map_from(kv, keys, vals);
                EgressAnnotations a = {};

                ck_assert_int_eq(egress_annotations_parse(&m, "default", &a, NULL), 0);
                ck_assert_msg(!a.egress, "\"%s\" must not turn egress on", values[i]);
                egress_annotations_done(&a);
        }
}
END_TEST

START_TEST(test_annotation_get)
{
        const char *kv[] = {"a", "1", "b", "2", NULL};
        char *keys[MAX_PAIRS], *vals[MAX_PAIRS];
        KubeStringMap m = map_from(kv, keys, vals);

        ck_assert_str_eq(annotation_get(&m, "b"), "2");
        ck_assert_ptr_null(annotation_get(&m, "c"));
        ck_assert_ptr_null(annotation_get(NULL, "a"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("annotations");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_loop_test(tc, test_table, 0, sizeof(cases) / sizeof(cases[0]));
        tcase_add_test(tc, test_values);
        tcase_add_test(tc, test_egress_exact);
        tcase_add_test(tc, test_annotation_get);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
