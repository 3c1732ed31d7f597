/* SPDX-License-Identifier: Apache-2.0 */
/* The desired-state computation over the real API objects in
 * tests/fixtures/k8s-api/realistic (parsed by libkvkube as kvpd does). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "egress-policy.h"

#ifndef KVPD_FIXTURES
#error "KVPD_FIXTURES must name tests/fixtures/k8s-api"
#endif

static json_t *load(const char *name)
{
        char path[1024];
        json_error_t e;
        json_t *j;

        snprintf(path, sizeof(path), "%s/realistic/%s", KVPD_FIXTURES, name);
        j = json_load_file(path, 0, &e);
        ck_assert_msg(j, "%s: %s", path, e.text);
        return j;
}

static KubeService *service(void)
{
        json_t *j = load("service-loadbalancer-egress.json");
        KubeService *s = NULL;
        KubeParseError e = {};

        ck_assert_msg(kube_service_parse(j, &s, &e) == 0, "%s", e.message);
        json_decref(j);
        return s;
}

static KubeEndpointSlice *slice(const char *name)
{
        json_t *j = load(name);
        KubeEndpointSlice *s = NULL;
        KubeParseError e = {};

        ck_assert_msg(kube_endpointslice_parse(j, &s, &e) == 0, "%s", e.message);
        json_decref(j);
        return s;
}

static ClusterCidrs cidrs_from_fixtures(void)
{
        json_t *jn = load("node-worker.json"), *jc = load("configmap-kubeadm-config.json");
        KubeNode *node = NULL;
        KubeConfigMap *cm = NULL;
        ClusterCidrs c = {};

        ck_assert_int_eq(kube_node_parse(jn, &node, NULL), 0);
        ck_assert_int_eq(kube_configmap_parse(jc, &cm, NULL), 0);
        const KubeNode *nodes[] = {node};
        ClusterCidrSources src = {.nodes = nodes, .n_nodes = 1, .kubeadm_config = cm};
        ck_assert_int_eq(cluster_cidrs_compute(&src, &c), 0);
        kube_node_free(node);
        kube_configmap_free(cm);
        json_decref(jn);
        json_decref(jc);
        return c;
}

static EgressPolicy *compute(const KubeService *svc, const KubeEndpointSlice *const *slices, size_t n,
                             const ClusterCidrs *c, const char *node)
{
        EgressPolicy *p = NULL;
        EgressInput in = {
                .service = svc,
                .slices = slices,
                .n_slices = n,
                .cidrs = c,
                .node_name = node,
                .default_ifname = "eth1",
        };

        ck_assert_int_eq(egress_policy_compute(&in, &p), 0);
        return p;
}

static char *prefixes(const IpPrefix *v, size_t n)
{
        char *buf = NULL, p[IP_PREFIX_STRING_MAX];
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s%s", i ? "," : "", ip_prefix_to_string(&v[i], p));
        fclose(f);
        return buf;
}

/* kubeadm-config and the worker Node give the real networks, both
 * families, aggregated. */
START_TEST(test_cidrs)
{
        ClusterCidrs c = cidrs_from_fixtures();
        char *pods = prefixes(c.pod, c.n_pod), *svcs = prefixes(c.service, c.n_service);

        ck_assert_str_eq(pods, "10.244.0.0/16,fd00:10:244::/56");
        ck_assert_str_eq(svcs, "10.96.0.0/12,fd00:10:96::/112");
        ck_assert_uint_eq(c.defaulted, 0);
        free(pods);
        free(svcs);
        cluster_cidrs_done(&c);
}
END_TEST

/* On worker-2: the ready pod is SNATed to the annotated VIP; worker-1,
 * with only a terminating pod, yields to it. */
START_TEST(test_worker2)
{
        KubeService *svc = service();
        KubeEndpointSlice *sl = slice("endpointslice-ipv4.json");
        const KubeEndpointSlice *slices[] = {sl};
        ClusterCidrs c = cidrs_from_fixtures();
        EgressPolicy *p = compute(svc, slices, 1, &c, "worker-2");
        char buf[INET6_ADDRSTRLEN], *ex;

        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_str_eq(p->service_key, "default/egress-demo");
        ck_assert_int_eq(p->vip_source, VIP_SOURCE_ANNOTATION);
        ck_assert(p->has_vip4 && !p->has_vip6);
        ck_assert_str_eq(ip_addr_to_string(&p->vip4, buf), "192.168.10.220");
        ck_assert_uint_eq(p->n_pods, 1);
        ck_assert_str_eq(ip_addr_to_string(&p->pods[0], buf), "10.244.2.17");
        ck_assert_str_eq(ip_addr_to_string(&p->active4, buf), "10.244.2.17");
        ck_assert_str_eq(p->lease_name, "kubevip-egress-demo");
        ex = prefixes(p->excluded, p->n_excluded);
        ck_assert_str_eq(ex, "10.244.0.0/16,10.96.0.0/12"); /* IPv4 only: no IPv6 VIP */
        free(ex);
        egress_policy_free(p);

        /* worker-1 has only a terminating pod and worker-2 a ready one:
         * worker-1 yields (its pod keeps SNAT only while it still leads). */
        p = compute(svc, slices, 1, &c, "worker-1");
        ck_assert_int_eq(p->state, EGRESS_YIELDING);
        ck_assert_uint_eq(p->n_pods, 1);
        egress_policy_free(p);

        cluster_cidrs_done(&c);
        kube_endpointslice_free(sl);
        kube_service_free(svc);
}
END_TEST

/* The same, with the slice as kvpd's informer keeps it: trimmed to the
 * node's own endpoints (kube_endpointslice_keep_node). worker-1 still
 * knows that a ready pod is elsewhere, and yields; worker-2 campaigns. A
 * trimmed slice that lost that fact kept a node with only a terminating pod
 * leading for as long as the pod drained. */
START_TEST(test_trimmed_slices)
{
        KubeService *svc = service();
        ClusterCidrs c = cidrs_from_fixtures();
        const struct {
                const char *node;
                EgressState state;
        } rows[] = {{"worker-1", EGRESS_YIELDING}, {"worker-2", EGRESS_READY}, {"worker-3", EGRESS_IDLE}};

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                KubeEndpointSlice *sl = slice("endpointslice-ipv4.json");
                const KubeEndpointSlice *slices[] = {sl};
                EgressPolicy *p;

                kube_endpointslice_keep_node(sl, rows[i].node);
                ck_assert_uint_le(sl->n_endpoints, 1);
                p = compute(svc, slices, 1, &c, rows[i].node);
                ck_assert_msg(p->state == rows[i].state, "%s: %s", rows[i].node,
                              egress_state_to_string(p->state));
                egress_policy_free(p);
                kube_endpointslice_free(sl);
        }
        cluster_cidrs_done(&c);
        kube_service_free(svc);
}
END_TEST

/* A slice with "endpoints": null is no endpoint, not an error. */
START_TEST(test_empty_slice)
{
        KubeService *svc = service();
        KubeEndpointSlice *sl = slice("endpointslice-empty.json");
        const KubeEndpointSlice *slices[] = {sl};
        ClusterCidrs c = cidrs_from_fixtures();
        EgressPolicy *p;

        free(sl->service_name);
        sl->service_name = strdup("egress-demo"); /* pretend it is this service's */
        p = compute(svc, slices, 1, &c, "worker-2");
        ck_assert_int_eq(p->state, EGRESS_IDLE);
        ck_assert(!p->has_local_endpoint);
        egress_policy_free(p);
        cluster_cidrs_done(&c);
        kube_endpointslice_free(sl);
        kube_service_free(svc);
}
END_TEST

/* The upstream round-trip fixtures hold placeholder values everywhere: the
 * parsers accept them, and the computation refuses without crashing. */
START_TEST(test_upstream_placeholders)
{
        char path[1024];
        json_t *j;
        KubeService *svc = NULL;
        EgressPolicy *p;

        snprintf(path, sizeof(path), "%s/core.v1.Service.json", KVPD_FIXTURES);
        j = json_load_file(path, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(kube_service_parse(j, &svc, NULL), 0);
        p = compute(svc, NULL, 0, NULL, "worker-2");
        ck_assert_int_eq(p->state, EGRESS_NONE); /* type "typeValue" */
        egress_policy_free(p);
        kube_service_free(svc);
        json_decref(j);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("fixtures");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_cidrs);
        tcase_add_test(tc, test_worker2);
        tcase_add_test(tc, test_trimmed_slices);
        tcase_add_test(tc, test_empty_slice);
        tcase_add_test(tc, test_upstream_placeholders);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
