/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvpd/egress-policy.c: the desired state of one Service on
 * this node. Objects are built by hand here; test-fixtures.c runs the same
 * computation over the real API objects. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "egress-policy.h"

#define NODE "worker-2"
#define MAX_KV 16

/* A Service under construction: annotations as key/value pairs. */
typedef struct Svc {
        KubeService s;
        char *keys[MAX_KV], *values[MAX_KV];
        KubeLoadBalancerIngress ingress[4];
} Svc;

static void svc_init(Svc *v, const char *name)
{
        *v = (Svc){};
        v->s.meta.name = (char *)name;
        v->s.meta.namespace = "default";
        v->s.meta.uid = "uid-1";
        v->s.type = "LoadBalancer";
        v->s.external_traffic_policy = "Local";
        v->s.meta.annotations.keys = v->keys;
        v->s.meta.annotations.values = v->values;
}

static void svc_set(Svc *v, const char *key, const char *value)
{
        KubeStringMap *m = &v->s.meta.annotations;

        for (size_t i = 0; i < m->n; i++)
                if (streq(m->keys[i], key)) {
                        m->values[i] = (char *)value;
                        return;
                }
        ck_assert_uint_lt(m->n, MAX_KV);
        m->keys[m->n] = (char *)key;
        m->values[m->n++] = (char *)value;
}

static void svc_egress(Svc *v, const char *name, const char *vips)
{
        svc_init(v, name);
        svc_set(v, KV_ANN_EGRESS, "true");
        if (vips)
                svc_set(v, KV_ANN_LOADBALANCER_IPS, vips);
}

/* An endpoint: address, node, and conditions. */
typedef struct Ep {
        const char *address;
        const char *node;
        bool ready, serving, terminating;
} Ep;

#define READY(a, n)                                                                                         \
        {                                                                                                   \
                a, n, true, true, false                                                                     \
        }

typedef struct Slice {
        KubeEndpointSlice sl;
        KubeEndpoint eps[8];
        char *addrs[8][2];
} Slice;

static void slice_init(Slice *s, const char *name, const char *service, const char *type, const Ep *eps,
                       size_t n)
{
        *s = (Slice){};
        s->sl.meta.name = (char *)name;
        s->sl.meta.namespace = "default";
        s->sl.service_name = (char *)service;
        s->sl.address_type = (char *)type;
        s->sl.endpoints = s->eps;
        s->sl.n_endpoints = n;
        for (size_t i = 0; i < n; i++) {
                s->addrs[i][0] = (char *)eps[i].address;
                s->eps[i] = (KubeEndpoint){
                        .addresses = s->addrs[i],
                        .node_name = (char *)eps[i].node,
                        .ready = eps[i].ready,
                        .serving = eps[i].serving,
                        .terminating = eps[i].terminating,
                };
        }
}

static ClusterCidrs cidrs(void)
{
        static IpPrefix pod[2], svc[2];

        ck_assert_int_eq(ip_prefix_parse("10.244.0.0/16", AF_INET, false, &pod[0], NULL), 0);
        ck_assert_int_eq(ip_prefix_parse("fd00:10:244::/56", AF_INET6, false, &pod[1], NULL), 0);
        ck_assert_int_eq(ip_prefix_parse("10.96.0.0/12", AF_INET, false, &svc[0], NULL), 0);
        ck_assert_int_eq(ip_prefix_parse("fd00:10:96::/112", AF_INET6, false, &svc[1], NULL), 0);
        return (ClusterCidrs){.pod = pod, .n_pod = 2, .service = svc, .n_service = 2};
}

static EgressPolicy *compute(const Svc *v, Slice *slices, size_t n_slices, const IpAddr *prev4)
{
        const KubeEndpointSlice *sl[8];
        ClusterCidrs c = cidrs();
        IpAddr api;
        EgressPolicy *p = NULL;

        ck_assert_int_eq(ip_addr_parse("10.96.0.1", AF_INET, &api, NULL), 0);
        for (size_t i = 0; i < n_slices; i++)
                sl[i] = &slices[i].sl;
        EgressInput in = {
                .service = &v->s,
                .slices = sl,
                .n_slices = n_slices,
                .cidrs = &c,
                .node_name = NODE,
                .default_ifname = "eth1",
                .api_servers = &api,
                .n_api_servers = 1,
                .prev_active4 = prev4,
        };
        ck_assert_int_eq(egress_policy_compute(&in, &p), 0);
        ck_assert_ptr_nonnull(p);
        return p;
}

static const char *addrs_str(const IpAddr *v, size_t n, char *buf, size_t size)
{
        char a[INET6_ADDRSTRLEN];
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && o < size; i++)
                o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "," : "", ip_addr_to_string(&v[i], a));
        return buf;
}

static const char *prefixes_str(const IpPrefix *v, size_t n, char *buf, size_t size)
{
        char a[IP_PREFIX_STRING_MAX];
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && o < size; i++)
                o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "," : "",
                                      ip_prefix_to_string(&v[i], a));
        return buf;
}

/* Which endpoints are this node's, and what state they put the Service in:
 * one table row per endpoint, alone in its slice. A local endpoint is SNATed
 * whatever its conditions (kube-vip #865: a starting pod's first connections,
 * a terminating pod's draining ones); with no ready endpoint elsewhere the node
 * still campaigns. */
static const struct {
        Ep ep;
        EgressState state;
        bool local;
} endpoint_cases[] = {
        {READY("10.244.2.10", NODE), EGRESS_READY, true},
        {{"10.244.2.11", NODE, false, true, false}, EGRESS_READY, true},  /* not ready */
        {{"10.244.2.12", NODE, true, false, false}, EGRESS_READY, true},  /* not serving */
        {{"10.244.2.13", NODE, false, true, true}, EGRESS_READY, true},   /* terminating, still serving */
        {{"10.244.2.14", NODE, true, true, true}, EGRESS_READY, true},    /* terminating */
        {{"10.244.2.15", NODE, false, false, false}, EGRESS_READY, true}, /* starting up */
        {READY("10.244.1.15", "worker-1"), EGRESS_IDLE, false},           /* other node */
        {READY("10.244.1.16", NULL), EGRESS_IDLE, false},                 /* no nodeName */
        {READY("10.244.2.17", "WORKER-2"), EGRESS_IDLE, false},           /* names are exact */
};

START_TEST(test_endpoint_conditions)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Svc v;
        Slice s;

        svc_egress(&v, "web", "192.168.10.220");
        slice_init(&s, "web-abc", "web", "IPv4", &endpoint_cases[_i].ep, 1);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, endpoint_cases[_i].state);
        ck_assert_uint_eq(p->n_pods, endpoint_cases[_i].local ? 1 : 0);
        ck_assert(p->has_active4 == endpoint_cases[_i].local);
        ck_assert(p->has_local_endpoint == endpoint_cases[_i].local);
}
END_TEST

/* Leadership prefers a node with a ready pod: this node's pods all starting
 * or terminating and a ready one elsewhere make it yield; a ready local pod
 * makes it a candidate again, and then every local pod is SNATed, the
 * draining and the starting ones too. */
START_TEST(test_prefers_ready_nodes)
{
        Ep yield[] = {{"10.244.2.20", NODE, false, true, true},
                      {"10.244.2.21", NODE, false, false, false},
                      READY("10.244.1.5", "worker-1")};
        Ep mixed[] = {{"10.244.2.20", NODE, false, true, true},
                      READY("10.244.2.22", NODE),
                      READY("10.244.1.5", "worker-1")};
        Ep remote_terminating[] = {{"10.244.2.20", NODE, false, true, true},
                                   {"10.244.1.5", "worker-1", false, true, true}};
        char buf[128];
        EgressPolicy *p;
        Slice s;
        Svc v;

        svc_egress(&v, "web", "192.168.10.220");
        slice_init(&s, "web-a", "web", "IPv4", yield, 3);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, EGRESS_YIELDING);
        ck_assert_str_eq(egress_state_to_string(p->state), "yielding");
        ck_assert(p->has_local_endpoint && !p->has_local_ready && p->has_remote_ready);
        egress_policy_free(p);

        slice_init(&s, "web-a", "web", "IPv4", mixed, 3);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_str_eq(addrs_str(p->pods, p->n_pods, buf, sizeof(buf)), "10.244.2.20,10.244.2.22");
        /* The ready pod is the active endpoint, though listed second. */
        ck_assert_str_eq(addrs_str(&p->active4, 1, buf, sizeof(buf)), "10.244.2.22");
        egress_policy_free(p);

        /* Nobody ready anywhere: the node with the pods keeps campaigning. */
        slice_init(&s, "web-a", "web", "IPv4", remote_terminating, 2);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_uint_eq(p->n_pods, 1);
        egress_policy_free(p);
}
END_TEST

/* Services that are not egress services here: NONE, silently. */
static const struct {
        LbClassFilter filter;
        const char *service_class;
        bool accepted;
} lb_class_cases[] = {
        /* Legacy mode (kube-vip's default). */
        {{.name = LB_CLASS_NAME_DEFAULT, .legacy = true}, NULL, true},
        {{.name = LB_CLASS_NAME_DEFAULT, .legacy = true}, LB_CLASS_NAME_DEFAULT, true},
        {{.name = LB_CLASS_NAME_DEFAULT, .legacy = true}, "metallb.io/metallb", false},
        {{.name = LB_CLASS_NAME_DEFAULT, .legacy = true, .only = true}, NULL, false},
        {{.name = LB_CLASS_NAME_DEFAULT, .legacy = true, .only = true}, LB_CLASS_NAME_DEFAULT, true},
        {{.name = "corp/egress", .legacy = true}, LB_CLASS_NAME_DEFAULT, false},
        /* Strict mode. */
        {{.name = LB_CLASS_NAME_DEFAULT}, NULL, false},
        {{.name = LB_CLASS_NAME_DEFAULT}, LB_CLASS_NAME_DEFAULT, true},
        {{.name = ""}, NULL, true},
        {{.name = ""}, LB_CLASS_NAME_DEFAULT, false},
};

START_TEST(test_lb_class)
{
        ck_assert_msg(lb_class_accepts(&lb_class_cases[_i].filter, lb_class_cases[_i].service_class) ==
                              lb_class_cases[_i].accepted,
                      "case %d: class %s", _i, lb_class_cases[_i].service_class ?: "(none)");
        /* NULL filter = kube-vip's defaults = the legacy default filter. */
        ck_assert(lb_class_accepts(NULL, NULL));
        ck_assert(!lb_class_accepts(NULL, "other"));
}
END_TEST

START_TEST(test_not_egress)
{
        Svc v;
        EgressPolicy *p;

        svc_init(&v, "plain");
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);

        svc_egress(&v, "web", "192.168.10.220");
        v.s.type = "ClusterIP";
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);

        svc_egress(&v, "web", "192.168.10.220");
        v.s.meta.deleting = true;
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);

        svc_egress(&v, "web", "192.168.10.220");
        svc_set(&v, KV_ANN_EGRESS, "false");
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);

        svc_egress(&v, "web", "192.168.10.220");
        svc_set(&v, KV_ANN_IGNORE, "true");
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);

        /* Another load balancer's class: not ours (kube-vip's default,
         * legacy filter). Our own class is. */
        svc_egress(&v, "web", "192.168.10.220");
        v.s.load_balancer_class = (char *)"metallb.io/metallb";
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);
        v.s.load_balancer_class = (char *)LB_CLASS_NAME_DEFAULT;
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_ne(p->state, EGRESS_NONE);
        egress_policy_free(p);
        v.s.load_balancer_class = NULL;

        /* A malformed annotation on a service without egress is no error. */
        svc_init(&v, "web");
        svc_set(&v, KV_ANN_EGRESS_DESTINATION_PORTS, "nonsense");
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_NONE);
        egress_policy_free(p);
}
END_TEST

static const struct {
        const char *policy;
        const char *key, *value;
        const char *annotation; /* expected error_annotation */
        const char *has;        /* expected in the message */
} invalid_cases[] = {
        {"Cluster", NULL, NULL, NULL, "externalTrafficPolicy is \"Cluster\""},
        {NULL, NULL, NULL, NULL, "externalTrafficPolicy"},
        {"Local", KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:8080,udp:650000", KV_ANN_EGRESS_DESTINATION_PORTS,
         "650000"},
        {"Local", KV_ANN_EGRESS_DESTINATION_PORTS, "8080", KV_ANN_EGRESS_DESTINATION_PORTS, "8080"},
        {"Local", KV_ANN_EGRESS_DENIED_NETWORKS, "10.0.0.0/8,bad", KV_ANN_EGRESS_DENIED_NETWORKS, "bad"},
        {"Local", KV_ANN_EGRESS_ALLOWED_NETWORKS, "300.0.0.0/8", KV_ANN_EGRESS_ALLOWED_NETWORKS,
         "300.0.0.0/8"},
        {"Local", KV_ANN_LOADBALANCER_IPS, "vip.example.com", KV_ANN_LOADBALANCER_IPS, "DNS name"},
        {"Local", KV_ANN_EGRESS_DETECT_API_SERVER, "yes", KV_ANN_EGRESS_DETECT_API_SERVER, "yes"},
};

START_TEST(test_invalid)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Ep ep = READY("10.244.2.10", NODE);
        Svc v;
        Slice s;

        svc_egress(&v, "web", "192.168.10.220");
        v.s.external_traffic_policy = (char *)invalid_cases[_i].policy;
        if (invalid_cases[_i].key)
                svc_set(&v, invalid_cases[_i].key, invalid_cases[_i].value);
        slice_init(&s, "web-abc", "web", "IPv4", &ep, 1);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, EGRESS_INVALID);
        ck_assert(streq_ptr(p->error_annotation, invalid_cases[_i].annotation));
        /* Service first, then the annotation, then the entry. */
        ck_assert_msg(strncmp(p->error, "default/web: ", 13) == 0, "%s", p->error);
        if (invalid_cases[_i].annotation)
                ck_assert_msg(strstr(p->error, invalid_cases[_i].annotation), "%s", p->error);
        ck_assert_msg(strstr(p->error, invalid_cases[_i].has), "\"%s\" lacks \"%s\"", p->error,
                      invalid_cases[_i].has);
        /* Nothing to program. */
        ck_assert_uint_eq(p->n_pods, 0);
        ck_assert_uint_eq(p->n_vips, 0);
}
END_TEST

START_TEST(test_vip_sources)
{
        char buf[256];
        Svc v;
        EgressPolicy *p;

        /* Annotation first. */
        svc_egress(&v, "web", "192.168.10.221");
        v.s.load_balancer_ip = "192.168.10.223";
        v.ingress[0].ip = "192.168.10.222";
        v.s.ingress = v.ingress;
        v.s.n_ingress = 1;
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->vip_source, VIP_SOURCE_ANNOTATION);
        ck_assert_str_eq(addrs_str(p->vips, p->n_vips, buf, sizeof(buf)), "192.168.10.221");
        ck_assert(p->owns_ingress_status);
        egress_policy_free(p);

        /* Then status.loadBalancer.ingress (hostname-only entries skipped). */
        svc_egress(&v, "web", NULL);
        v.s.load_balancer_ip = "192.168.10.223";
        v.ingress[0] = (KubeLoadBalancerIngress){.hostname = "lb.example.com"};
        v.ingress[1] = (KubeLoadBalancerIngress){.ip = "192.168.10.222"};
        v.ingress[2] = (KubeLoadBalancerIngress){.ip = "fd00::222"};
        v.s.ingress = v.ingress;
        v.s.n_ingress = 3;
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->vip_source, VIP_SOURCE_INGRESS);
        ck_assert_str_eq(addrs_str(p->vips, p->n_vips, buf, sizeof(buf)), "192.168.10.222,fd00::222");
        ck_assert(!p->owns_ingress_status);
        egress_policy_free(p);

        /* Then spec.loadBalancerIP. */
        svc_egress(&v, "web", NULL);
        v.s.load_balancer_ip = "192.168.10.223";
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->vip_source, VIP_SOURCE_SPEC);
        ck_assert_str_eq(addrs_str(p->vips, p->n_vips, buf, sizeof(buf)), "192.168.10.223");
        egress_policy_free(p);

        /* None yet: idle, no campaign, no error. */
        svc_egress(&v, "web", NULL);
        p = compute(&v, NULL, 0, NULL);
        ck_assert_int_eq(p->state, EGRESS_IDLE);
        ck_assert_int_eq(p->vip_source, VIP_SOURCE_NONE);
        ck_assert_ptr_null(p->error);
        egress_policy_free(p);
}
END_TEST

/* Every slice of the service counts (kube-vip kept the last one per
 * family), other services' slices do not, and ALL local ready pods are
 * SNATed. */
START_TEST(test_all_slices_all_pods)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Ep a[] = {READY("10.244.2.30", NODE), READY("10.244.1.5", "worker-1")};
        Ep b[] = {READY("10.244.2.20", NODE), READY("10.244.2.30", NODE)}; /* duplicate across slices */
        Ep other[] = {READY("10.244.2.99", NODE)};
        Slice s[3];
        char buf[256];
        Svc v;

        svc_egress(&v, "web", "192.168.10.220");
        slice_init(&s[0], "web-b", "web", "IPv4", a, 2);
        slice_init(&s[1], "web-a", "web", "IPv4", b, 2);
        slice_init(&s[2], "api-a", "api", "IPv4", other, 1);
        p = compute(&v, s, 3, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_str_eq(addrs_str(p->pods, p->n_pods, buf, sizeof(buf)), "10.244.2.20,10.244.2.30");
        /* First in slice-name order: web-a's first endpoint. */
        ck_assert_str_eq(addrs_str(&p->active4, 1, buf, sizeof(buf)), "10.244.2.20");
        ck_assert(!p->has_active6);
        ck_assert_str_eq(p->ifname, "eth1");
        ck_assert_str_eq(p->lease_namespace, "default");
        ck_assert_str_eq(p->lease_name, "kubevip-web");
        ck_assert_str_eq(prefixes_str(p->excluded, p->n_excluded, buf, sizeof(buf)),
                         "10.244.0.0/16,10.96.0.0/12");
        ck_assert_uint_eq(p->n_denied, 0);
}
END_TEST

START_TEST(test_sticky_active)
{
        Ep eps[] = {READY("10.244.2.20", NODE), READY("10.244.2.30", NODE)};
        Ep gone[] = {READY("10.244.2.20", NODE), {"10.244.2.30", NODE, false, true, true}};
        IpAddr prev;
        char buf[64];
        Slice s;
        Svc v;
        EgressPolicy *p;

        svc_egress(&v, "web", "192.168.10.220");
        ck_assert_int_eq(ip_addr_parse("10.244.2.30", AF_INET, &prev, NULL), 0);
        slice_init(&s, "web-a", "web", "IPv4", eps, 2);
        p = compute(&v, &s, 1, &prev);
        ck_assert_str_eq(addrs_str(&p->active4, 1, buf, sizeof(buf)), "10.244.2.30"); /* kept */
        egress_policy_free(p);

        slice_init(&s, "web-a", "web", "IPv4", gone, 2);
        p = compute(&v, &s, 1, &prev);
        ck_assert_str_eq(addrs_str(&p->active4, 1, buf, sizeof(buf)), "10.244.2.20"); /* moved on */
        ck_assert_uint_eq(p->n_pods, 2); /* the terminating one drains with its SNAT */
        egress_policy_free(p);
}
END_TEST

START_TEST(test_dual_stack)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Ep e4[] = {READY("10.244.2.20", NODE)};
        Ep e6[] = {READY("fd00:10:244:2::20", NODE)};
        Slice s[2];
        char buf[256];
        Svc v;

        svc_egress(&v, "web", "192.168.10.220,fd00:1::220");
        slice_init(&s[0], "web-4", "web", "IPv4", e4, 1);
        slice_init(&s[1], "web-6", "web", "IPv6", e6, 1);
        p = compute(&v, s, 2, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert(p->has_vip4 && p->has_vip6);
        ck_assert_str_eq(addrs_str(p->pods, p->n_pods, buf, sizeof(buf)), "10.244.2.20,fd00:10:244:2::20");
        ck_assert_str_eq(addrs_str(&p->active6, 1, buf, sizeof(buf)), "fd00:10:244:2::20");
        ck_assert_str_eq(prefixes_str(p->excluded, p->n_excluded, buf, sizeof(buf)),
                         "10.244.0.0/16,fd00:10:244::/56,10.96.0.0/12,fd00:10:96::/112");
        ck_assert_ptr_null(p->warning);
}
END_TEST

/* egress-ipv6 with only an IPv4 VIP: IPv4 still handled, and a warning. An
 * IPv6 pod with no IPv6 VIP is not SNATed but still makes this node a
 * candidate (the VIP serves its ingress). */
START_TEST(test_ipv6_without_vip6)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Ep e6[] = {READY("fd00:10:244:2::20", NODE)};
        Slice s;
        Svc v;

        svc_egress(&v, "web", "192.168.10.220");
        svc_set(&v, KV_ANN_EGRESS_IPV6, "true");
        slice_init(&s, "web-6", "web", "IPv6", e6, 1);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_uint_eq(p->n_pods, 0);
        ck_assert(!p->has_active6);
        ck_assert_ptr_nonnull(p->warning);
        ck_assert_msg(strstr(p->warning, KV_ANN_EGRESS_IPV6), "%s", p->warning);
}
END_TEST

/* An allowed list naming only IPv6 networks must not turn into "IPv4:
 * everything": the IPv4 side is left out. */
START_TEST(test_allowed_family)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Ep e4[] = {READY("10.244.2.20", NODE)};
        Ep e6[] = {READY("fd00:10:244:2::20", NODE)};
        Slice s[2];
        char buf[256];
        Svc v;

        svc_egress(&v, "web", "192.168.10.220,fd00:1::220");
        svc_set(&v, KV_ANN_EGRESS_ALLOWED_NETWORKS, "2001:db8::/32");
        slice_init(&s[0], "web-4", "web", "IPv4", e4, 1);
        slice_init(&s[1], "web-6", "web", "IPv6", e6, 1);
        p = compute(&v, s, 2, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_str_eq(addrs_str(p->pods, p->n_pods, buf, sizeof(buf)), "fd00:10:244:2::20");
        ck_assert(!p->has_active4);
        ck_assert_ptr_nonnull(p->warning);
        ck_assert_str_eq(prefixes_str(p->excluded, p->n_excluded, buf, sizeof(buf)),
                         "fd00:10:244::/56,fd00:10:96::/112");
}
END_TEST

START_TEST(test_filters)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Ep e4[] = {READY("10.244.2.20", NODE)};
        Slice s;
        char buf[256];
        Svc v;

        svc_egress(&v, "web", "192.168.10.220");
        svc_set(&v, KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:443, udp:53");
        svc_set(&v, KV_ANN_EGRESS_DENIED_NETWORKS, "172.18.0.0/24");
        svc_set(&v, KV_ANN_EGRESS_ALLOWED_NETWORKS, "172.16.0.0/12");
        svc_set(&v, KV_ANN_EGRESS_DETECT_API_SERVER, "true");
        svc_set(&v, KV_ANN_SERVICE_INTERFACE, "eth2");
        svc_set(&v, KV_ANN_LEASE_NAME, "infra/shared");
        slice_init(&s, "web-4", "web", "IPv4", e4, 1);
        p = compute(&v, &s, 1, NULL);
        ck_assert_int_eq(p->state, EGRESS_READY);
        ck_assert_uint_eq(p->n_ports, 2);
        ck_assert_uint_eq(p->ports[1].port, 53);
        ck_assert_str_eq(prefixes_str(p->allowed, p->n_allowed, buf, sizeof(buf)), "172.16.0.0/12");
        ck_assert_str_eq(prefixes_str(p->denied, p->n_denied, buf, sizeof(buf)),
                         "172.18.0.0/24,10.96.0.1/32");
        ck_assert_str_eq(p->ifname, "eth2");
        ck_assert_str_eq(p->lease_namespace, "infra");
        ck_assert_str_eq(p->lease_name, "shared");
}
END_TEST

/* kvnetd's network limit counts the API server address that
 * egress-detect-api-server adds: at the limit with it, ready; one past it,
 * refused here with the reason (kvnetd would refuse the SetEgress). */
START_TEST(test_denied_networks_limit)
{
        Ep e4[] = {READY("10.244.2.20", NODE)};
        _cleanup_free_ char *list = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&list, &len);
        Slice s;
        Svc v;

        ck_assert_ptr_nonnull(f);
        for (int i = 0; i < KVNETD_MAX_NETWORKS; i++)
                fprintf(f, "%s172.18.%d.0/24", i ? "," : "", i);
        ck_assert_int_eq(fclose(f), 0);
        slice_init(&s, "web-4", "web", "IPv4", e4, 1);
        for (int with_api = 0; with_api < 2; with_api++) {
                _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
                /* KVNETD_MAX_NETWORKS entries; with detection one more. */
                svc_egress(&v, "web", "192.168.10.220");
                svc_set(&v, KV_ANN_EGRESS_DENIED_NETWORKS, list);
                if (with_api)
                        svc_set(&v, KV_ANN_EGRESS_DETECT_API_SERVER, "true");
                p = compute(&v, &s, 1, NULL);
                if (!with_api) {
                        ck_assert_int_eq(p->state, EGRESS_READY);
                        ck_assert_uint_eq(p->n_denied, KVNETD_MAX_NETWORKS);
                        continue;
                }
                ck_assert_int_eq(p->state, EGRESS_INVALID);
                ck_assert(streq_ptr(p->error_annotation, KV_ANN_EGRESS_DENIED_NETWORKS));
                ck_assert_msg(strstr(p->error, "default/web: " KV_ANN_EGRESS_DENIED_NETWORKS), "%s",
                              p->error);
                ck_assert_msg(strstr(p->error, KV_ANN_EGRESS_DETECT_API_SERVER), "%s", p->error);
        }
        /* One fewer network with detection: exactly at the limit. */
        {
                _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
                char *last = strrchr(list, ',');
                *last = '\0';
                svc_egress(&v, "web", "192.168.10.220");
                svc_set(&v, KV_ANN_EGRESS_DENIED_NETWORKS, list);
                svc_set(&v, KV_ANN_EGRESS_DETECT_API_SERVER, "true");
                p = compute(&v, &s, 1, NULL);
                ck_assert_int_eq(p->state, EGRESS_READY);
                ck_assert_uint_eq(p->n_denied, KVNETD_MAX_NETWORKS);
        }
}
END_TEST

/* A live edit of an annotation changes the programming; an unrelated edit
 * does not. */
START_TEST(test_net_equal)
{
        Ep e4[] = {READY("10.244.2.20", NODE)};
        Slice s;
        Svc v;
        EgressPolicy *a, *b, *c;

        svc_egress(&v, "web", "192.168.10.220");
        svc_set(&v, KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:443");
        slice_init(&s, "web-4", "web", "IPv4", e4, 1);
        a = compute(&v, &s, 1, NULL);
        svc_set(&v, "unrelated", "x");
        b = compute(&v, &s, 1, NULL);
        svc_set(&v, KV_ANN_EGRESS_DESTINATION_PORTS, "tcp:8443");
        c = compute(&v, &s, 1, NULL);
        ck_assert(egress_policy_net_equal(a, b));
        ck_assert(!egress_policy_net_equal(b, c));
        ck_assert(egress_policy_lease_equal(a, c));
        egress_policy_free(a);
        egress_policy_free(b);
        egress_policy_free(c);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("egress-policy");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_loop_test(tc, test_endpoint_conditions, 0,
                            sizeof(endpoint_cases) / sizeof(endpoint_cases[0]));
        tcase_add_loop_test(tc, test_invalid, 0, sizeof(invalid_cases) / sizeof(invalid_cases[0]));
        tcase_add_test(tc, test_not_egress);
        tcase_add_loop_test(tc, test_lb_class, 0, sizeof(lb_class_cases) / sizeof(lb_class_cases[0]));
        tcase_add_test(tc, test_vip_sources);
        tcase_add_test(tc, test_prefers_ready_nodes);
        tcase_add_test(tc, test_all_slices_all_pods);
        tcase_add_test(tc, test_sticky_active);
        tcase_add_test(tc, test_dual_stack);
        tcase_add_test(tc, test_ipv6_without_vip6);
        tcase_add_test(tc, test_allowed_family);
        tcase_add_test(tc, test_filters);
        tcase_add_test(tc, test_denied_networks_limit);
        tcase_add_test(tc, test_net_equal);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
