/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvnetd/validate.c: every field check of every request, valid,
 * malformed and at the limits, with the message that names the field. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "kvnetd-bus.h"
#include "validate.h"

static Config *test_config(void)
{
        static IpPrefix ranges[2];
        static char *ifs[] = {"lo", "nosuchif0", NULL};
        static Config c;

        ck_assert_int_eq(ip_prefix_parse("192.168.0.224/27", AF_UNSPEC, false, &ranges[0], NULL), 0);
        ck_assert_int_eq(ip_prefix_parse("fd00:192::200/120", AF_UNSPEC, false, &ranges[1], NULL), 0);
        c = (Config){.vip_ranges = ranges, .n_vip_ranges = 2, .interfaces = ifs};
        return &c;
}

static const struct {
        const char *in;
        int family;
        const char *want;  /* NULL: refused */
        const char *error; /* substring of the message */
} vip_cases[] = {
        {"192.168.0.245", AF_UNSPEC, "192.168.0.245", NULL},
        {"192.168.0.245/32", AF_UNSPEC, "192.168.0.245", NULL},
        {"fd00:192::245", AF_UNSPEC, "fd00:192::245", NULL},
        {"fd00:192::245/128", AF_INET6, "fd00:192::245", NULL},
        {"192.168.0.224", AF_INET, "192.168.0.224", NULL},
        {"192.168.0.255", AF_INET, "192.168.0.255", NULL},
        {"192.168.0.223", AF_UNSPEC, NULL, "address: 192.168.0.223 is not inside any configured VIP range"},
        {"192.168.1.0", AF_UNSPEC, NULL, "not inside"},
        {"fd00:192::1ff", AF_UNSPEC, NULL, "not inside"},
        {"192.168.0.245/33", AF_UNSPEC, NULL, "address: \"192.168.0.245/33\" is not a valid CIDR"},
        {"192.168.0.245/31", AF_UNSPEC, NULL, "address: a VIP is a single address (/32), not /31"},
        {"fd00:192::245/127", AF_UNSPEC, NULL, "not /127"},
        {"10.0.0.300", AF_UNSPEC, NULL, "address: \"10.0.0.300\" is not a valid IP address"},
        {"fd00:192::245", AF_INET, NULL, "not a valid IPv4 address"},
        {"192.168.0.245", AF_INET6, NULL, "not a valid IPv6 address"},
        {"", AF_UNSPEC, NULL, "address: must not be empty"},
        {" 192.168.0.245", AF_UNSPEC, NULL, "not a valid"},
        {"192.168.0.245 ", AF_UNSPEC, NULL, "not a valid"},
};

START_TEST(test_vip)
{
        Config *c = test_config();
        ParseError e = {};
        IpAddr a;
        char buf[INET6_ADDRSTRLEN];
        int r = validate_vip(c, "address", vip_cases[_i].in, vip_cases[_i].family, &a, &e);

        if (vip_cases[_i].want) {
                ck_assert_msg(r == 0, "%s: %s", vip_cases[_i].in, e.message);
                ck_assert_str_eq(ip_addr_to_string(&a, buf), vip_cases[_i].want);
        } else {
                ck_assert_msg(r == -EINVAL, "%s should be refused", vip_cases[_i].in);
                ck_assert_msg(strstr(e.message, vip_cases[_i].error), "%s: got \"%s\"", vip_cases[_i].in,
                              e.message);
        }
}
END_TEST

START_TEST(test_ifname)
{
        Config *c = test_config();
        ParseError e = {};

        ck_assert_int_eq(validate_ifname(c, "ifname", "lo", &e), 0);
        ck_assert_int_eq(validate_ifname(c, "ifname", "eth0", &e), -EINVAL);
        ck_assert_str_eq(e.message, "ifname: interface \"eth0\" is not in the allowed interfaces");
        ck_assert_int_eq(validate_ifname(c, "ifname", "nosuchif0", &e), -EINVAL);
        ck_assert_str_eq(e.message, "ifname: interface \"nosuchif0\" does not exist");
        ck_assert_int_eq(validate_ifname(c, "ifname", "a/b", &e), -EINVAL);
        ck_assert_str_eq(e.message, "ifname: not a valid interface name");
        ck_assert_int_eq(validate_ifname(c, "ifname", "0123456789abcdef", &e), -EINVAL);
        ck_assert_int_eq(validate_ifname(c, "ifname", "", &e), -EINVAL);
        ck_assert_str_eq(e.message, "ifname: must not be empty");
}
END_TEST

START_TEST(test_deadline)
{
        ParseError e = {};
        usec_t now = 1000 * USEC_PER_SEC;

        ck_assert_int_eq(validate_deadline(now, now + 1, "deadline_usec", &e), 0);
        ck_assert_int_eq(validate_deadline(now, now + KVNETD_MAX_GRANT_USEC, "deadline_usec", &e), 0);
        ck_assert_int_eq(validate_deadline(now, now + KVNETD_MAX_GRANT_USEC + 1, "deadline_usec", &e),
                         -EINVAL);
        ck_assert_str_eq(e.message, "deadline_usec: more than 300s from now");
        ck_assert_int_eq(validate_deadline(now, now, "deadline_usec", &e), -EINVAL);
        ck_assert_int_eq(validate_deadline(now, 0, "deadline_usec", &e), -EINVAL);
        ck_assert_int_eq(validate_deadline(now, UINT64_MAX, "deadline_usec", &e), -EINVAL);
}
END_TEST

START_TEST(test_service_key)
{
        char key[KVNETD_MAX_SERVICE_KEY + 2];
        ParseError e = {};

        ck_assert_int_eq(validate_service_key("service", "default/web", &e), 0);
        ck_assert_int_eq(validate_service_key("service", "", &e), -EINVAL);
        ck_assert_str_eq(e.message, "service: must not be empty");
        ck_assert_int_eq(validate_service_key("service", "web", &e), -EINVAL);
        ck_assert_int_eq(validate_service_key("service", "Default/web", &e), -EINVAL);
        ck_assert_int_eq(validate_service_key("service", "default/web\"; flush ruleset", &e), -EINVAL);
        /* 63 + 1 + 63 = 127: the limit; one more is refused. */
        memset(key, 'a', 63);
        key[63] = '/';
        memset(key + 64, 'b', 63);
        key[127] = '\0';
        ck_assert_int_eq(validate_service_key("service", key, &e), 0);
        key[127] = 'b';
        key[128] = '\0';
        ck_assert_int_eq(validate_service_key("service", key, &e), -EINVAL);
        ck_assert_str_eq(e.message, "service: longer than 127 bytes");
}
END_TEST

START_TEST(test_string_limit)
{
        char s[KVNETD_MAX_STRING + 2];
        ParseError e = {};

        memset(s, '1', KVNETD_MAX_STRING);
        s[KVNETD_MAX_STRING] = '\0';
        ck_assert_int_eq(validate_string("pods", 3, s, &e), 0);
        s[KVNETD_MAX_STRING] = '1';
        s[KVNETD_MAX_STRING + 1] = '\0';
        ck_assert_int_eq(validate_string("pods", 3, s, &e), -E2BIG);
        ck_assert_str_eq(e.message, "pods[3]: longer than 512 bytes");
}
END_TEST

static int validate_egress(const char *vip4, const char *vip6, const char **pods, size_t n_pods,
                           const char **protos, const uint16_t *ports, size_t n_ports, const char **nets,
                           size_t n_nets, EgressPolicy **ret, ParseError *e)
{
        EgressRequest req = {
                .vip4 = vip4,
                .vip6 = vip6,
                .pods = pods,
                .n_pods = n_pods,
                .port_protos = protos,
                .port_numbers = ports,
                .n_ports = n_ports,
                .denied = nets,
                .n_denied = n_nets,
        };
        return egress_request_validate(test_config(), &req, ret, e);
}

START_TEST(test_egress_valid_and_normalised)
{
        const char *pods[] = {"10.244.1.6", "fd00::5", "10.244.1.5"};
        const char *protos[] = {"udp", "tcp", "tcp"};
        const uint16_t ports[] = {5060, 8080, 8080};
        const char *nets[] = {"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "fd00::/8"};
        EgressPolicy *p = NULL;
        ParseError e = {};
        char buf[IP_PREFIX_STRING_MAX];

        ck_assert_int_eq(validate_egress("192.168.0.245", "fd00:192::245", pods, 3, protos, ports, 3, nets,
                                         4, &p, &e),
                         0);
        ck_assert_uint_eq(p->n_pods, 3);
        ck_assert_str_eq(ip_addr_to_string(&p->pods[0], buf), "10.244.1.5"); /* sorted */
        ck_assert_uint_eq(p->n_ports, 2);                                    /* de-duplicated */
        ck_assert_int_eq(p->ports[0].proto, L4_PROTO_TCP);
        ck_assert_uint_eq(p->n_denied, 2); /* contained prefixes dropped */
        ck_assert_str_eq(ip_prefix_to_string(&p->denied[0], buf), "10.0.0.0/8");
        ck_assert_str_eq(ip_prefix_to_string(&p->denied[1], buf), "fd00::/8");
        egress_policy_free(p);
}
END_TEST

static const struct {
        const char *vip4, *vip6, *pod, *proto;
        uint16_t port;
        const char *net;
        int r;
        const char *error;
} egress_bad[] = {
        {"fd00:192::245", "", "10.244.1.5", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "vip4: \"fd00:192::245\" is not a valid IPv4"},
        {"", "192.168.0.245", "fd00::1", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "vip6: \"192.168.0.245\" is not a valid IPv6"},
        {"192.168.0.1", "", "10.244.1.5", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "vip4: 192.168.0.1 is not inside"},
        {"192.168.0.245", "", "10.244.1.300", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "pods[1]: \"10.244.1.300\" is not a valid IP address"},
        {"192.168.0.245", "", "fd00::1", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "pods[1]: IPv6 pod but vip6 is empty"},
        {"", "fd00:192::245", "10.244.1.5", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "pods[0]: IPv4 pod but vip4 is empty"},
        {"192.168.0.245", "", "", "tcp", 80, "10.0.0.0/8", -EINVAL, "pods[1]: must not be empty"},
        {"192.168.0.245", "", "10.244.1.5", "icmp", 80, "10.0.0.0/8", -EINVAL,
         "ports[0]: protocol must be tcp, udp or sctp"},
        {"192.168.0.245", "", "10.244.1.5", "TCP", 80, "10.0.0.0/8", -EINVAL, "ports[0]: protocol must be"},
        {"192.168.0.245", "", "10.244.1.5", "", 80, "10.0.0.0/8", -EINVAL, "ports[0]: must not be empty"},
        {"192.168.0.245", "", "10.244.1.5", "tcp", 0, "10.0.0.0/8", -EINVAL,
         "ports[0]: port must be 1..65535"},
        {"192.168.0.245", "", "10.244.1.5", "tcp", 80, "10.0.0.0/33", -EINVAL,
         "denied[0]: \"10.0.0.0/33\" is not a valid CIDR"},
        {"192.168.0.245", "", "10.244.1.5", "tcp", 80, "", -EINVAL, "denied[0]: must not be empty"},
        {"192.168.0.245", "", "10.244.1.4", "tcp", 80, "10.0.0.0/8", -EINVAL,
         "pods: 10.244.1.4 is listed twice"},
};

START_TEST(test_egress_refused)
{
        const char *pods[] = {"10.244.1.4", egress_bad[_i].pod};
        const char *protos[] = {egress_bad[_i].proto};
        const uint16_t ports[] = {egress_bad[_i].port};
        const char *nets[] = {egress_bad[_i].net};
        size_t first = streq(egress_bad[_i].error, "pods[0]: IPv4 pod but vip4 is empty") ? 1 : 0;
        EgressPolicy *p = NULL;
        ParseError e = {};
        int r;

        r = validate_egress(egress_bad[_i].vip4, egress_bad[_i].vip6, pods + first, 2 - first, protos, ports,
                            1, nets, 1, &p, &e);
        ck_assert_int_eq(r, egress_bad[_i].r);
        ck_assert_ptr_null(p);
        ck_assert_msg(strstr(e.message, egress_bad[_i].error), "case %d: got \"%s\"", _i, e.message);
}
END_TEST

START_TEST(test_egress_limits)
{
        size_t n = KVNETD_MAX_PODS_PER_SERVICE + 1;
        const char **pods = calloc(n, sizeof(char *));
        char(*bufs)[16] = calloc(n, 16);
        const char *nets[KVNETD_MAX_NETWORKS + 1];
        char netbufs[KVNETD_MAX_NETWORKS + 1][20];
        const char *protos[KVNETD_MAX_PORTS + 1];
        uint16_t ports[KVNETD_MAX_PORTS + 1];
        EgressPolicy *p = NULL;
        ParseError e = {};

        for (size_t i = 0; i < n; i++) {
                snprintf(bufs[i], 16, "10.%zu.%zu.%zu", i >> 16, (i >> 8) & 255, i & 255);
                pods[i] = bufs[i];
        }
        ck_assert_int_eq(validate_egress("192.168.0.245", "", pods, n - 1, NULL, NULL, 0, NULL, 0, &p, &e),
                         0);
        egress_policy_free(p);
        p = NULL;
        ck_assert_int_eq(validate_egress("192.168.0.245", "", pods, n, NULL, NULL, 0, NULL, 0, &p, &e),
                         -E2BIG);
        ck_assert_str_eq(e.message, "pods: 16385 entries, the limit is 16384");

        for (size_t i = 0; i <= KVNETD_MAX_NETWORKS; i++) {
                snprintf(netbufs[i], 20, "10.%zu.0.0/16", i);
                nets[i] = netbufs[i];
        }
        ck_assert_int_eq(validate_egress("192.168.0.245", "", pods, 1, NULL, NULL, 0, nets,
                                         KVNETD_MAX_NETWORKS, &p, &e),
                         0);
        egress_policy_free(p);
        p = NULL;
        ck_assert_int_eq(validate_egress("192.168.0.245", "", pods, 1, NULL, NULL, 0, nets,
                                         KVNETD_MAX_NETWORKS + 1, &p, &e),
                         -E2BIG);
        ck_assert_str_eq(e.message, "denied: 257 entries, the limit is 256");

        for (size_t i = 0; i <= KVNETD_MAX_PORTS; i++) {
                protos[i] = "udp";
                ports[i] = (uint16_t)(1000 + i);
        }
        ck_assert_int_eq(validate_egress("192.168.0.245", "", pods, 1, protos, ports, KVNETD_MAX_PORTS, NULL,
                                         0, &p, &e),
                         0);
        egress_policy_free(p);
        p = NULL;
        ck_assert_int_eq(validate_egress("192.168.0.245", "", pods, 1, protos, ports, KVNETD_MAX_PORTS + 1,
                                         NULL, 0, &p, &e),
                         -E2BIG);
        free(pods);
        free(bufs);
}
END_TEST

static Suite *validate_suite(void)
{
        Suite *s = suite_create("kvnetd-validate");
        TCase *tc = tcase_create("fields");

        tcase_add_loop_test(tc, test_vip, 0, ELEMENTSOF(vip_cases));
        tcase_add_test(tc, test_ifname);
        tcase_add_test(tc, test_deadline);
        tcase_add_test(tc, test_service_key);
        tcase_add_test(tc, test_string_limit);
        suite_add_tcase(s, tc);
        tc = tcase_create("egress");
        tcase_add_test(tc, test_egress_valid_and_normalised);
        tcase_add_loop_test(tc, test_egress_refused, 0, ELEMENTSOF(egress_bad));
        tcase_add_test(tc, test_egress_limits);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(validate_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
