/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of shared/netaddr.c: addresses, CIDRs, port lists, names. */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "netaddr.h"

/* The one normal form of a set of networks: sorted (IPv4 first, then by
 * address, the bigger network first), every covered prefix and duplicate
 * dropped; kvnetd's SetEgress and kvpd's CIDR aggregation both use it. */
START_TEST(test_prefixes_normalize)
{
        const char *in[] = {"fd00::/64",   "10.0.0.0/8",     "10.1.0.0/16", "192.168.0.0/24", "10.0.0.0/8",
                            "fd00::1/128", "192.168.1.0/24", "0.0.0.0/0",   "::/0",           "fd00::/64"};
        IpPrefix v[ELEMENTSOF(in)];
        char buf[IP_PREFIX_STRING_MAX];
        size_t n = ELEMENTSOF(in);

        for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(ip_prefix_parse(in[i], AF_UNSPEC, false, &v[i], NULL), 0);
        prefixes_normalize(v, &n);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(ip_prefix_to_string(&v[0], buf), "0.0.0.0/0");
        ck_assert_str_eq(ip_prefix_to_string(&v[1], buf), "::/0");

        n = 7; /* without the default routes */
        for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(ip_prefix_parse(in[i], AF_UNSPEC, false, &v[i], NULL), 0);
        prefixes_normalize(v, &n);
        ck_assert_uint_eq(n, 4);
        ck_assert_str_eq(ip_prefix_to_string(&v[0], buf), "10.0.0.0/8");
        ck_assert_str_eq(ip_prefix_to_string(&v[1], buf), "192.168.0.0/24");
        ck_assert_str_eq(ip_prefix_to_string(&v[2], buf), "192.168.1.0/24");
        ck_assert_str_eq(ip_prefix_to_string(&v[3], buf), "fd00::/64");
        ck_assert_int_lt(ip_prefix_compare(&v[0], &v[1]), 0);
        ck_assert(ip_prefix_covers(&v[0], &v[0]));
        ck_assert(!ip_prefix_covers(&v[1], &v[2]));

        n = 0;
        prefixes_normalize(v, &n);
        ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_addrs_sort)
{
        const char *in[] = {"fd00::2", "10.0.0.2", "fd00::1", "10.0.0.10", "10.0.0.1"};
        const char *want[] = {"10.0.0.1", "10.0.0.2", "10.0.0.10", "fd00::1", "fd00::2"};
        IpAddr v[ELEMENTSOF(in)];
        char buf[INET6_ADDRSTRLEN];

        for (size_t i = 0; i < ELEMENTSOF(in); i++)
                ck_assert_int_eq(ip_addr_parse(in[i], AF_UNSPEC, &v[i], NULL), 0);
        ip_addrs_sort(v, ELEMENTSOF(v));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                ck_assert_str_eq(ip_addr_to_string(&v[i], buf), want[i]);
        ck_assert_int_eq(ip_addr_compare(&v[0], &v[0]), 0);
        ck_assert_int_lt(ip_addr_compare(&v[2], &v[3]), 0);
}
END_TEST

static const struct {
        const char *in;
        int family;
        const char *want; /* NULL = must fail */
} prefix_cases[] = {
        {"10.0.0.0/16", AF_UNSPEC, "10.0.0.0/16"},
        {"10.1.2.3/16", AF_UNSPEC, "10.1.0.0/16"}, /* host bits masked, as Go's ParseCIDR */
        {"0.0.0.0/0", AF_UNSPEC, "0.0.0.0/0"},
        {"192.168.0.1/32", AF_INET, "192.168.0.1/32"},
        {"fd00:10:244::/56", AF_UNSPEC, "fd00:10:244::/56"},
        {"fd00::1/128", AF_INET6, "fd00::1/128"},
        {"10.0.0.0/33", AF_UNSPEC, NULL},
        {"fd00::/129", AF_UNSPEC, NULL},
        {"10.0.0.0/", AF_UNSPEC, NULL},
        {"10.0.0.0/-1", AF_UNSPEC, NULL},
        {"10.0.0.0/08", AF_UNSPEC, NULL},
        {"10.0.0.0/8x", AF_UNSPEC, NULL},
        {"10.0.0/8", AF_UNSPEC, NULL},
        {"10.0.0.0", AF_UNSPEC, NULL}, /* bare address is not a CIDR */
        {"", AF_UNSPEC, NULL},
        {"10.0.0.0/8", AF_INET6, NULL},
        {"fd00::/8", AF_INET, NULL},
        {" 10.0.0.0/8", AF_UNSPEC, NULL},
        {"10.0.0.0/8 ", AF_UNSPEC, NULL},
};

START_TEST(test_prefix_parse)
{
        IpPrefix p;
        ParseError e = {};
        char buf[IP_PREFIX_STRING_MAX];
        int r = ip_prefix_parse(prefix_cases[_i].in, prefix_cases[_i].family, false, &p, &e);

        if (prefix_cases[_i].want) {
                ck_assert_msg(r == 0, "%s: %s", prefix_cases[_i].in, e.message);
                ck_assert_str_eq(ip_prefix_to_string(&p, buf), prefix_cases[_i].want);
        } else {
                ck_assert_msg(r < 0, "%s should fail", prefix_cases[_i].in);
                ck_assert_msg(e.message[0] != '\0' || prefix_cases[_i].in[0] == '\0', "no message for %s",
                              prefix_cases[_i].in);
        }
}
END_TEST

START_TEST(test_prefix_contains)
{
        IpPrefix p;
        IpAddr a;

        ck_assert_int_eq(ip_prefix_parse("10.244.0.0/16", AF_UNSPEC, false, &p, NULL), 0);
        ck_assert_int_eq(ip_addr_parse("10.244.3.7", AF_UNSPEC, &a, NULL), 0);
        ck_assert(ip_prefix_contains(&p, &a));
        ck_assert_int_eq(ip_addr_parse("10.245.0.1", AF_UNSPEC, &a, NULL), 0);
        ck_assert(!ip_prefix_contains(&p, &a));
        ck_assert_int_eq(ip_addr_parse("fd00::1", AF_UNSPEC, &a, NULL), 0);
        ck_assert(!ip_prefix_contains(&p, &a));
        ck_assert_int_eq(ip_prefix_parse("fd00:10::/33", AF_UNSPEC, false, &p, NULL), 0);
        ck_assert_int_eq(ip_addr_parse("fd00:10:7fff::1", AF_UNSPEC, &a, NULL), 0);
        ck_assert(ip_prefix_contains(&p, &a));
        ck_assert_int_eq(ip_addr_parse("fd00:10:8000::1", AF_UNSPEC, &a, NULL), 0);
        ck_assert(!ip_prefix_contains(&p, &a));
}
END_TEST

static const struct {
        const char *in;
        size_t n; /* 0 = must fail */
        const char *error_has;
} port_cases[] = {
        {"tcp:8080,udp:5060", 2, NULL},
        {"tcp:8080 , udp:5060", 2, NULL},
        {"TCP:1", 1, NULL},
        {"sctp:65535", 1, NULL},
        {"tcp:0", 0, "1..65535"},
        {"tcp:65536", 0, "1..65535"},
        {"8080", 0, "protocol:port"},
        {"icmp:1", 0, "unknown protocol"},
        {"tcp:80,,udp:53", 0, "entry 2 is empty"},
        {"tcp:", 0, "1..65535"},
        {"tcp:+80", 0, "1..65535"},
        {"tcp:80x", 0, "1..65535"},
        {"", 0, "empty"},
};

START_TEST(test_port_list)
{
        _cleanup_free_ PortSpec *v = NULL;
        size_t n = 0;
        ParseError e = {};
        int r = port_list_parse(port_cases[_i].in, 64, &v, &n, &e);

        if (port_cases[_i].n) {
                ck_assert_msg(r == 0, "%s: %s", port_cases[_i].in, e.message);
                ck_assert_uint_eq(n, port_cases[_i].n);
        } else {
                ck_assert_msg(r < 0, "%s should fail", port_cases[_i].in);
                ck_assert_msg(strstr(e.message, port_cases[_i].error_has), "%s: message \"%s\" lacks \"%s\"",
                              port_cases[_i].in, e.message, port_cases[_i].error_has);
        }
}
END_TEST

START_TEST(test_port_list_values)
{
        _cleanup_free_ PortSpec *v = NULL;
        size_t n = 0;

        ck_assert_int_eq(port_list_parse("tcp:8080, udp:5060", 64, &v, &n, NULL), 0);
        ck_assert_int_eq(v[0].proto, L4_PROTO_TCP);
        ck_assert_uint_eq(v[0].port, 8080);
        ck_assert_int_eq(v[1].proto, L4_PROTO_UDP);
        ck_assert_uint_eq(v[1].port, 5060);
}
END_TEST

START_TEST(test_list_limits)
{
        char buf[4096] = "";
        _cleanup_free_ IpPrefix *v = NULL;
        size_t n = 0;
        ParseError e = {};

        for (int i = 0; i < 64; i++)
                snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s10.%d.0.0/16", i ? "," : "", i);
        ck_assert_int_eq(ip_prefix_list_parse(buf, AF_UNSPEC, 64, &v, &n, &e), 0);
        ck_assert_uint_eq(n, 64);
        free(v);
        v = NULL;
        strcat(buf, ",10.200.0.0/16");
        ck_assert_int_eq(ip_prefix_list_parse(buf, AF_UNSPEC, 64, &v, &n, &e), -E2BIG);
        ck_assert(strstr(e.message, "more than 64"));
}
END_TEST

START_TEST(test_prefix_list_error_names_entry)
{
        _cleanup_free_ IpPrefix *v = NULL;
        size_t n = 0;
        ParseError e = {};

        ck_assert_int_lt(ip_prefix_list_parse("10.0.0.0/8, 172.16.0.0/33", AF_UNSPEC, 16, &v, &n, &e), 0);
        ck_assert_msg(strstr(e.message, "entry 2") && strstr(e.message, "172.16.0.0/33"), "%s", e.message);
}
END_TEST

START_TEST(test_names)
{
        char *ns = NULL, *name = NULL;

        ck_assert(k8s_dns_label_valid("default"));
        ck_assert(!k8s_dns_label_valid("Default"));
        ck_assert(!k8s_dns_label_valid("-a"));
        ck_assert(k8s_dns_subdomain_valid("egress.demo-1"));
        ck_assert(!k8s_dns_subdomain_valid("a..b"));
        ck_assert(!k8s_dns_subdomain_valid("a\"b"));
        ck_assert_int_eq(service_key_parse("default/web", &ns, &name, NULL), 0);
        ck_assert_str_eq(ns, "default");
        ck_assert_str_eq(name, "web");
        free(ns);
        free(name);
        ck_assert_int_lt(service_key_parse("web", NULL, NULL, NULL), 0);
        ck_assert_int_lt(service_key_parse("a/b/c", NULL, NULL, NULL), 0);
        ck_assert_int_lt(service_key_parse("/b", NULL, NULL, NULL), 0);
        ck_assert(ifname_valid("eth0"));
        ck_assert(ifname_valid("veth-node1.200"));
        ck_assert(!ifname_valid("0123456789abcdef"));
        ck_assert(!ifname_valid("a/b"));
        ck_assert(!ifname_valid(""));
        ck_assert(!ifname_valid("a b"));
}
END_TEST

static Suite *netaddr_suite(void)
{
        Suite *s = suite_create("netaddr");
        TCase *tc = tcase_create("parse");

        tcase_add_loop_test(tc, test_prefix_parse, 0, (int)ELEMENTSOF(prefix_cases));
        tcase_add_test(tc, test_prefix_contains);
        tcase_add_test(tc, test_prefixes_normalize);
        tcase_add_test(tc, test_addrs_sort);
        tcase_add_loop_test(tc, test_port_list, 0, (int)ELEMENTSOF(port_cases));
        tcase_add_test(tc, test_port_list_values);
        tcase_add_test(tc, test_list_limits);
        tcase_add_test(tc, test_prefix_list_error_names_entry);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(netaddr_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
