/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvpd/cluster-cidrs.c: which networks are never SNATed. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster-cidrs.h"

static char *prefixes_to_string(const IpPrefix *v, size_t n, char *buf, size_t size)
{
        char p[IP_PREFIX_STRING_MAX];
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && o < size; i++)
                o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "," : "",
                                      ip_prefix_to_string(&v[i], p));
        return buf;
}

static const struct {
        const char *in;
        const char *want;
} aggregate_cases[] = {
        {"10.244.0.0/24,10.244.1.0/24", "10.244.0.0/23"},
        {"10.244.1.0/24,10.244.0.0/24,10.244.2.0/24,10.244.3.0/24", "10.244.0.0/22"},
        {"10.244.0.0/16,10.244.7.0/24", "10.244.0.0/16"},
        {"10.244.7.0/24,10.244.0.0/16", "10.244.0.0/16"},
        {"10.244.0.0/24,10.244.0.0/24", "10.244.0.0/24"},
        {"10.244.1.0/24,10.244.2.0/24", "10.244.1.0/24,10.244.2.0/24"}, /* not siblings */
        {"fd00:10:244:1::/64,fd00:10:244::/64,10.0.0.0/8", "10.0.0.0/8,fd00:10:244::/63"},
        {"0.0.0.0/1,128.0.0.0/1", "0.0.0.0/0"},
        {"10.96.0.0/12", "10.96.0.0/12"},
};

START_TEST(test_aggregate)
{
        IpPrefix *v = NULL;
        size_t n = 0;
        char buf[512];

        ck_assert_int_eq(ip_prefix_list_parse(aggregate_cases[_i].in, AF_UNSPEC, 64, &v, &n, NULL), 0);
        n = ip_prefix_aggregate(v, n);
        ck_assert_str_eq(prefixes_to_string(v, n, buf, sizeof(buf)), aggregate_cases[_i].want);
        free(v);
}
END_TEST

/* 5000 nodes' /24s inside a /16 must not become 5000 exclusions. */
START_TEST(test_aggregate_many_nodes)
{
        IpPrefix *v = calloc(256, sizeof(IpPrefix));
        size_t n;
        char buf[64];

        for (unsigned i = 0; i < 256; i++) {
                char s[32];
                snprintf(s, sizeof(s), "10.244.%u.0/24", (i * 37) % 256); /* every /24, shuffled */
                ck_assert_int_eq(ip_prefix_parse(s, AF_INET, false, &v[i], NULL), 0);
        }
        n = ip_prefix_aggregate(v, 256);
        ck_assert_str_eq(prefixes_to_string(v, n, buf, sizeof(buf)), "10.244.0.0/16");
        free(v);
}
END_TEST

static const char kubeadm_yaml[] =
        "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\nclusterName: kubernetes\n"
        "controlPlaneEndpoint: 192.168.10.40:6443\nnetworking:\n"
        "  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n"
        "  serviceSubnet: \"10.96.0.0/12,fd00:10:96::/112\"\nproxy: {}\n"
        "scheduler:\n  podSubnet: 1.2.3.0/24\n";

START_TEST(test_kubeadm_parse)
{
        char *pod = NULL, *svc = NULL;

        ck_assert_int_eq(kubeadm_networking_parse(kubeadm_yaml, &pod, &svc), 0);
        ck_assert_str_eq(pod, "10.244.0.0/16,fd00:10:244::/56");
        ck_assert_str_eq(svc, "10.96.0.0/12,fd00:10:96::/112");
        free(pod);
        free(svc);

        ck_assert_int_eq(kubeadm_networking_parse("kind: ClusterConfiguration\n", &pod, &svc), 0);
        ck_assert_ptr_null(pod);
        ck_assert_ptr_null(svc);
        ck_assert_int_eq(kubeadm_networking_parse(NULL, &pod, &svc), 0);
        ck_assert_ptr_null(pod);
}
END_TEST

static void check(const ClusterCidrs *c, const char *want_pod, const char *want_svc, unsigned want_defaulted)
{
        char buf[1024];

        ck_assert_str_eq(prefixes_to_string(c->pod, c->n_pod, buf, sizeof(buf)), want_pod);
        ck_assert_str_eq(prefixes_to_string(c->service, c->n_service, buf, sizeof(buf)), want_svc);
        ck_assert_uint_eq(c->defaulted, want_defaulted);
}

START_TEST(test_defaults)
{
        ClusterCidrSources src = {};
        ClusterCidrs c = {};

        ck_assert_int_eq(cluster_cidrs_compute(&src, &c), 0);
        check(&c, "10.0.0.0/16,fd00:10:244::/56", "10.96.0.0/12,fd00:10:96::/112",
              CLUSTER_DEFAULTED_POD4 | CLUSTER_DEFAULTED_POD6 | CLUSTER_DEFAULTED_SVC4 |
                      CLUSTER_DEFAULTED_SVC6);
        cluster_cidrs_done(&c);
}
END_TEST

START_TEST(test_all_sources)
{
        /* Nodes: two workers, dual-stack; one has only the legacy field's value. */
        char *n1_cidrs[] = {"10.244.1.0/24", "fd00:10:244:1::/64", NULL};
        char *n2_cidrs[] = {"10.244.2.0/24", NULL};
        KubeNode n1 = {.pod_cidrs = n1_cidrs}, n2 = {.pod_cidrs = n2_cidrs};
        const KubeNode *nodes[] = {&n1, &n2};
        char *sc_cidrs[] = {"10.96.0.0/12", "fd00:10:96::/112", NULL};
        KubeServiceCIDR sc = {.cidrs = sc_cidrs};
        const KubeServiceCIDR *scs[] = {&sc};
        char *cmd[] = {"kube-controller-manager", "--cluster-cidr=10.245.0.0/16",
                       "--service-cluster-ip-range", "10.112.0.0/16", NULL};
        KubeContainer ctr = {.command = cmd};
        KubePod kcm = {.containers = &ctr, .n_containers = 1};
        const KubePod *kcms[] = {&kcm};
        ClusterCidrSources src = {
                .service_cidrs = scs,
                .n_service_cidrs = 1,
                .nodes = nodes,
                .n_nodes = 2,
                .controller_managers = kcms,
                .n_controller_managers = 1,
        };
        ClusterCidrs c = {};

        ck_assert_int_eq(cluster_cidrs_compute(&src, &c), 0);
        /* Both nodes' pod CIDRs, not only this node's (kube-vip's bug). */
        check(&c, "10.244.1.0/24,10.244.2.0/24,10.245.0.0/16,fd00:10:244:1::/64",
              "10.96.0.0/12,10.112.0.0/16,fd00:10:96::/112", 0);
        cluster_cidrs_done(&c);
}
END_TEST

START_TEST(test_kubeadm_source)
{
        char *keys[] = {"ClusterConfiguration"}, *values[] = {(char *)kubeadm_yaml};
        KubeConfigMap cm = {.data = {.n = 1, .keys = keys, .values = values}};
        ClusterCidrSources src = {.kubeadm_config = &cm};
        ClusterCidrs c = {};

        ck_assert_int_eq(cluster_cidrs_compute(&src, &c), 0);
        check(&c, "10.244.0.0/16,fd00:10:244::/56", "10.96.0.0/12,fd00:10:96::/112", 0);
        cluster_cidrs_done(&c);
}
END_TEST

START_TEST(test_env_override_per_family)
{
        char *n1_cidrs[] = {"10.244.1.0/24", "fd00:10:244:1::/64", NULL};
        KubeNode n1 = {.pod_cidrs = n1_cidrs};
        const KubeNode *nodes[] = {&n1};
        IpPrefix *env = NULL;
        size_t n_env = 0;
        ClusterCidrs c = {};
        ClusterCidrSources src = {.nodes = nodes, .n_nodes = 1};

        /* The IPv4 override replaces detection for IPv4 only. */
        ck_assert_int_eq(ip_prefix_list_parse("10.200.0.0/16", AF_UNSPEC, 8, &env, &n_env, NULL), 0);
        src.env_pod = env;
        src.n_env_pod = n_env;
        ck_assert_int_eq(cluster_cidrs_compute(&src, &c), 0);
        check(&c, "10.200.0.0/16,fd00:10:244:1::/64", "10.96.0.0/12,fd00:10:96::/112",
              CLUSTER_DEFAULTED_SVC4 | CLUSTER_DEFAULTED_SVC6);
        cluster_cidrs_done(&c);
        free(env);
}
END_TEST

START_TEST(test_bad_entries_skipped)
{
        char *n1_cidrs[] = {"10.244.1.0/24", "garbage", NULL};
        KubeNode n1 = {.pod_cidrs = n1_cidrs};
        const KubeNode *nodes[] = {&n1};
        ClusterCidrSources src = {.nodes = nodes, .n_nodes = 1};
        ClusterCidrs c = {}, d = {};

        ck_assert_int_eq(cluster_cidrs_compute(&src, &c), 0);
        check(&c, "10.244.1.0/24,fd00:10:244::/56", "10.96.0.0/12,fd00:10:96::/112",
              CLUSTER_DEFAULTED_POD6 | CLUSTER_DEFAULTED_SVC4 | CLUSTER_DEFAULTED_SVC6);
        ck_assert_int_eq(cluster_cidrs_compute(&src, &d), 0);
        ck_assert(cluster_cidrs_equal(&c, &d));
        cluster_cidrs_done(&c);
        cluster_cidrs_done(&d);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("cluster-cidrs");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_loop_test(tc, test_aggregate, 0, sizeof(aggregate_cases) / sizeof(aggregate_cases[0]));
        tcase_add_test(tc, test_aggregate_many_nodes);
        tcase_add_test(tc, test_kubeadm_parse);
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_all_sources);
        tcase_add_test(tc, test_kubeadm_source);
        tcase_add_test(tc, test_env_override_per_family);
        tcase_add_test(tc, test_bad_entries_skipped);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
