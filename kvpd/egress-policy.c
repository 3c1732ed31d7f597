/* SPDX-License-Identifier: Apache-2.0 */
#include "egress-policy.h"

#include <stdarg.h>
#include <stdio.h>

#include "array.h"

static const char *const state_table[_EGRESS_STATE_MAX] = {
        [EGRESS_NONE] = "none",         [EGRESS_INVALID] = "invalid", [EGRESS_IDLE] = "idle",
        [EGRESS_YIELDING] = "yielding", [EGRESS_READY] = "ready",
};

static const char *const vip_source_table[_VIP_SOURCE_MAX] = {
        [VIP_SOURCE_NONE] = "none",
        [VIP_SOURCE_ANNOTATION] = KV_ANN_LOADBALANCER_IPS,
        [VIP_SOURCE_INGRESS] = "status.loadBalancer.ingress",
        [VIP_SOURCE_SPEC] = "spec.loadBalancerIP",
};

DEFINE_STRING_TABLE_TO_STRING(egress_state_to_string, EgressState, state_table);

DEFINE_STRING_TABLE_TO_STRING(vip_source_to_string, VipSource, vip_source_table);

EgressPolicy *egress_policy_ref(EgressPolicy *p)
{
        if (p)
                p->n_ref++;
        return p;
}

EgressPolicy *egress_policy_free(EgressPolicy *p)
{
        if (!p || --p->n_ref > 0)
                return NULL;
        free(p->service_key);
        free(p->uid);
        free(p->error);
        free(p->warning);
        free(p->vips);
        free(p->pods);
        free(p->ports);
        free(p->allowed);
        free(p->denied);
        free(p->excluded);
        free(p->ifname);
        free(p->lease_namespace);
        free(p->lease_name);
        free(p);
        return NULL;
}

static int set_error(EgressPolicy *p, const char *annotation, const char *fmt, ...) _printf_(3, 4);
static int set_error(EgressPolicy *p, const char *annotation, const char *fmt, ...)
{
        _cleanup_free_ char *m = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(p->error);
        if (asprintf(&p->error, "%s: %s", p->service_key, m) < 0) {
                p->error = NULL;
                return -ENOMEM;
        }
        p->state = EGRESS_INVALID;
        p->error_annotation = annotation;
        return 0;
}

static int add_warning(EgressPolicy *p, const char *fmt, ...) _printf_(2, 3);
static int add_warning(EgressPolicy *p, const char *fmt, ...)
{
        _cleanup_free_ char *m = NULL;
        char *n;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (p->warning)
                r = asprintf(&n, "%s; %s", p->warning, m);
        else
                r = asprintf(&n, "%s: %s", p->service_key, m);
        if (r < 0)
                return -ENOMEM;
        free(p->warning);
        p->warning = n;
        return 0;
}

static int slice_ptr_cmp(const void *a, const void *b)
{
        const KubeEndpointSlice *x = *(const KubeEndpointSlice *const *)a;
        const KubeEndpointSlice *y = *(const KubeEndpointSlice *const *)b;

        return strcmp(x->meta.name ? x->meta.name : "", y->meta.name ? y->meta.name : "");
}

static bool addr_in(const IpAddr *v, size_t n, const IpAddr *a)
{
        for (size_t i = 0; i < n; i++)
                if (ip_addr_equal(&v[i], a))
                        return true;
        return false;
}

static bool family_allowed(const EgressAnnotations *a, int family)
{
        if (a->n_allowed == 0)
                return true;
        for (size_t i = 0; i < a->n_allowed; i++)
                if (a->allowed[i].family == family)
                        return true;
        return false;
}

static int collect_vips(EgressPolicy *p, const KubeService *s, const EgressAnnotations *a)
{
        ParseError pe = {};
        size_t n = 0;

        p->vips = calloc(KV_MAX_LB_IPS, sizeof(IpAddr));
        if (!p->vips)
                return -ENOMEM;
        if (a->has_lb_ips) {
                p->vip_source = VIP_SOURCE_ANNOTATION;
                for (size_t i = 0; i < a->n_lb_ips && n < KV_MAX_LB_IPS; i++)
                        p->vips[n++] = a->lb_ips[i];
        } else if (s->n_ingress > 0) {
                for (size_t i = 0; i < s->n_ingress && n < KV_MAX_LB_IPS; i++) {
                        IpAddr ip;
                        /* Entries with only a hostname name no address to bind. */
                        if (isempty(s->ingress[i].ip))
                                continue;
                        if (ip_addr_parse(s->ingress[i].ip, AF_UNSPEC, &ip, &pe) < 0)
                                return set_error(p, NULL, "status.loadBalancer.ingress[%zu].ip: %s", i,
                                                 pe.message);
                        if (!addr_in(p->vips, n, &ip))
                                p->vips[n++] = ip;
                }
                if (n > 0)
                        p->vip_source = VIP_SOURCE_INGRESS;
        }
        if (n == 0 && !a->has_lb_ips && !isempty(s->load_balancer_ip)) {
                if (ip_addr_parse(s->load_balancer_ip, AF_UNSPEC, &p->vips[0], &pe) < 0)
                        return set_error(p, NULL, "spec.loadBalancerIP: %s", pe.message);
                n = 1;
                p->vip_source = VIP_SOURCE_SPEC;
        }
        p->n_vips = n;
        for (size_t i = 0; i < n; i++) {
                if (p->vips[i].family == AF_INET && !p->has_vip4) {
                        p->vip4 = p->vips[i];
                        p->has_vip4 = true;
                } else if (p->vips[i].family == AF_INET6 && !p->has_vip6) {
                        p->vip6 = p->vips[i];
                        p->has_vip6 = true;
                }
        }
        p->owns_ingress_status = p->vip_source != VIP_SOURCE_INGRESS;
        return 0;
}

typedef struct LocalEndpoints {
        IpAddr *v; /* ready ones first, each in slice-name then endpoint order, no duplicates */
        size_t n;
        size_t n_ready; /* v[0..n_ready) are ready and not terminating */
        bool remote_ready;
} LocalEndpoints;

static bool endpoint_ready(const KubeEndpoint *e)
{
        /* The API's own "ready" is serving and not terminating; both are
         * checked in case a controller writes them inconsistently. */
        return e->ready && e->serving && !e->terminating;
}

static int collect_pass(const KubeEndpointSlice *const *slices, size_t ns, const char *node_name, bool ready,
                        LocalEndpoints *l, size_t *allocated)
{
        for (size_t i = 0; i < ns; i++) {
                const KubeEndpointSlice *sl = slices[i];
                int family = streq_ptr(sl->address_type, "IPv4")   ? AF_INET
                             : streq_ptr(sl->address_type, "IPv6") ? AF_INET6
                                                                   : AF_UNSPEC;

                if (family == AF_UNSPEC) /* FQDN slices name no pod address */
                        continue;
                /* kvpd's informer keeps only this node's endpoints
                 * (kube_endpointslice_keep_node) and notes whether it
                 * dropped a ready one. */
                if (ready && sl->remote_ready)
                        l->remote_ready = true;
                for (size_t j = 0; j < sl->n_endpoints; j++) {
                        const KubeEndpoint *e = &sl->endpoints[j];

                        if (!streq_ptr(e->node_name, node_name)) {
                                if (ready && endpoint_ready(e) && e->addresses && e->addresses[0])
                                        l->remote_ready = true;
                                continue;
                        }
                        if (endpoint_ready(e) != ready)
                                continue;
                        for (char **a = e->addresses; a && *a; a++) {
                                IpAddr ip;
                                if (ip_addr_parse(*a, family, &ip, NULL) < 0)
                                        continue; /* the API validates these; a bad one is not ours to guess
                                                   */
                                if (addr_in(l->v, l->n, &ip))
                                        continue;
                                if (l->n >= EGRESS_MAX_PODS)
                                        return -E2BIG;
                                if (ARRAY_RESERVE(l->v, *allocated, l->n + 1) < 0)
                                        return -ENOMEM;
                                l->v[l->n++] = ip;
                        }
                }
        }
        return 0;
}

/* Every endpoint of this node, whatever its conditions: ready ones first
 * (they are the better "active endpoint"), then starting and terminating
 * ones. */
static int collect_local(const EgressInput *in, LocalEndpoints *ret)
{
        _cleanup_free_ const KubeEndpointSlice **slices = NULL;
        LocalEndpoints l = {};
        const KubeService *s = in->service;
        size_t ns = 0, allocated = 0;
        int r;

        slices = calloc(in->n_slices ? in->n_slices : 1, sizeof(*slices));
        if (!slices)
                return -ENOMEM;
        for (size_t i = 0; i < in->n_slices; i++) {
                const KubeEndpointSlice *sl = in->slices[i];
                if (sl && streq_ptr(sl->service_name, s->meta.name) &&
                    streq_ptr(sl->meta.namespace, s->meta.namespace))
                        slices[ns++] = sl;
        }
        qsort(slices, ns, sizeof(*slices), slice_ptr_cmp);

        r = collect_pass(slices, ns, in->node_name, true, &l, &allocated);
        if (r >= 0) {
                l.n_ready = l.n;
                r = collect_pass(slices, ns, in->node_name, false, &l, &allocated);
        }
        if (r < 0) {
                free(l.v);
                return r;
        }
        *ret = l;
        return 0;
}

/* The previous active endpoint while it is still ready, else the first
 * ready one, else (none ready) the previous one or the first. */
static void pick_active(const LocalEndpoints *l, int family, const IpAddr *prev, bool *has, IpAddr *ret)
{
        const struct {
                size_t from, to;
        } ranges[] = {{0, l->n_ready}, {l->n_ready, l->n}};

        for (size_t k = 0; k < ELEMENTSOF(ranges); k++) {
                if (prev && prev->family == family &&
                    addr_in(l->v + ranges[k].from, ranges[k].to - ranges[k].from, prev)) {
                        *ret = *prev;
                        *has = true;
                        return;
                }
                for (size_t i = ranges[k].from; i < ranges[k].to; i++)
                        if (l->v[i].family == family) {
                                *ret = l->v[i];
                                *has = true;
                                return;
                        }
        }
        *has = false;
}

static bool family_handled(const EgressPolicy *p, const EgressAnnotations *a, int family)
{
        bool has = family == AF_INET ? p->has_vip4 : p->has_vip6;
        return has && family_allowed(a, family);
}

static int fill_filters(EgressPolicy *p, const EgressInput *in, const EgressAnnotations *a)
{
        size_t nd = a->n_denied + (a->detect_api_server ? in->n_api_servers : 0), ne = 0;

        if (a->n_ports > 0) {
                p->ports = calloc(a->n_ports, sizeof(PortSpec));
                if (!p->ports)
                        return -ENOMEM;
                memcpy(p->ports, a->ports, a->n_ports * sizeof(PortSpec));
                p->n_ports = a->n_ports;
        }
        if (a->n_allowed > 0) {
                p->allowed = calloc(a->n_allowed, sizeof(IpPrefix));
                if (!p->allowed)
                        return -ENOMEM;
                memcpy(p->allowed, a->allowed, a->n_allowed * sizeof(IpPrefix));
                p->n_allowed = a->n_allowed;
        }
        if (nd > 0) {
                p->denied = calloc(nd, sizeof(IpPrefix));
                if (!p->denied)
                        return -ENOMEM;
                memcpy(p->denied, a->denied, a->n_denied * sizeof(IpPrefix));
                p->n_denied = a->n_denied;
                /* kube-vip took any non-empty value as "on", and IPv4 only;
                 * here "true" only, either family. */
                for (size_t i = 0; a->detect_api_server && i < in->n_api_servers; i++)
                        p->denied[p->n_denied++] = (IpPrefix){
                                .family = in->api_servers[i].family,
                                .addr = in->api_servers[i].addr,
                                .prefixlen = family_max_prefixlen(in->api_servers[i].family),
                        };
        }
        {
                p->excluded = calloc(in->cidrs->n_pod + in->cidrs->n_service + 1, sizeof(IpPrefix));
                if (!p->excluded)
                        return -ENOMEM;
                /* Only the families this service SNATs: the others would be
                 * dead weight in kvnetd's sets. */
                for (size_t i = 0; i < in->cidrs->n_pod; i++)
                        if (family_handled(p, a, in->cidrs->pod[i].family))
                                p->excluded[ne++] = in->cidrs->pod[i];
                for (size_t i = 0; i < in->cidrs->n_service; i++)
                        if (family_handled(p, a, in->cidrs->service[i].family))
                                p->excluded[ne++] = in->cidrs->service[i];
                p->n_excluded = ne;
        }
        return 0;
}

bool lb_class_accepts(const LbClassFilter *f, const char *service_class)
{
        static const LbClassFilter defaults = {.name = LB_CLASS_NAME_DEFAULT, .legacy = true};
        const char *name;

        if (!f)
                f = &defaults;
        name = f->name ? f->name : LB_CLASS_NAME_DEFAULT;
        if (f->legacy) {
                if (service_class)
                        return streq(service_class, name);
                return !f->only;
        }
        if (!service_class)
                return isempty(name);
        return streq(service_class, name);
}

int egress_policy_compute(const EgressInput *in, EgressPolicy **ret)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        _cleanup_(egress_annotations_done) EgressAnnotations a = {};
        _cleanup_free_ IpAddr *local_v = NULL;
        const KubeService *s = in->service;
        const KubeStringMap *ann = &s->meta.annotations;
        LocalEndpoints local = {};
        AnnotationError ae = {};
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->n_ref = 1;
        if (asprintf(&p->service_key, "%s/%s", s->meta.namespace ? s->meta.namespace : "default",
                     s->meta.name ? s->meta.name : "") < 0) {
                p->service_key = NULL;
                return -ENOMEM;
        }
        if (s->meta.uid && !(p->uid = strdup(s->meta.uid)))
                return -ENOMEM;
        p->state = EGRESS_NONE;

        /* Not ours to act on: no error, no Event (the removal paths rely on
         * this being NONE). */
        if (s->meta.deleting || !streq_ptr(s->type, "LoadBalancer") ||
            !lb_class_accepts(in->lb_class, s->load_balancer_class) ||
            !streq_ptr(annotation_get(ann, KV_ANN_EGRESS), "true") ||
            streq_ptr(annotation_get(ann, KV_ANN_IGNORE), "true")) {
                *ret = TAKE_PTR(p);
                return 0;
        }

        /* Computed before any refusal too: only nodes with a local ready
         * endpoint report a refusal as an Event, so a cluster of N nodes does
         * not say the same thing N times. */
        r = collect_local(in, &local);
        if (r == -E2BIG) {
                r = set_error(p, NULL, "more than %d local endpoints", EGRESS_MAX_PODS);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(p);
                return 0;
        }
        if (r < 0)
                return r;
        local_v = local.v;
        p->has_local_endpoint = local.n > 0;
        p->has_local_ready = local.n_ready > 0;
        p->has_remote_ready = local.remote_ready;

        if (!in->cidrs) {
                r = set_error(p, NULL, "the cluster networks could not be determined, see the log");
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(p);
                return 0;
        }

        r = egress_annotations_parse(ann, s->meta.namespace, &a, &ae);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                r = set_error(p, ae.key, "%s", ae.message);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(p);
                return 0;
        }

        if (!streq_ptr(s->external_traffic_policy, "Local")) {
                r = set_error(
                        p, NULL,
                        "spec.externalTrafficPolicy is \"%s\"; egress needs \"Local\" so the VIP lives on "
                        "the node of the pods it is the source address for",
                        s->external_traffic_policy ? s->external_traffic_policy : "Cluster");
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(p);
                return 0;
        }

        /* kvnetd takes at most KVNETD_MAX_NETWORKS denied networks, the
         * API server addresses that egress-detect-api-server adds included:
         * refused here, with the reason, rather than there. */
        if (a.detect_api_server && a.n_denied + in->n_api_servers > KVNETD_MAX_NETWORKS) {
                r = set_error(p, KV_ANN_EGRESS_DENIED_NETWORKS,
                              "%s: %zu networks and %zu API server address%s added by %s are more than %d",
                              KV_ANN_EGRESS_DENIED_NETWORKS, a.n_denied, in->n_api_servers,
                              in->n_api_servers == 1 ? "" : "es", KV_ANN_EGRESS_DETECT_API_SERVER,
                              KVNETD_MAX_NETWORKS);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(p);
                return 0;
        }

        if (a.lease_name) {
                p->lease_namespace = TAKE_PTR(a.lease_namespace);
                p->lease_name = TAKE_PTR(a.lease_name);
        } else {
                p->lease_namespace = strdup(s->meta.namespace ? s->meta.namespace : "default");
                if (asprintf(&p->lease_name, "kubevip-%s", s->meta.name ? s->meta.name : "") < 0)
                        p->lease_name = NULL;
                if (!p->lease_namespace || !p->lease_name)
                        return -ENOMEM;
        }
        p->ifname = strdup(a.service_interface ? a.service_interface
                                               : (in->default_ifname ? in->default_ifname : "auto"));
        if (!p->ifname)
                return -ENOMEM;

        r = collect_vips(p, s, &a);
        if (r < 0)
                return r;
        if (p->state == EGRESS_INVALID) {
                *ret = TAKE_PTR(p);
                return 0;
        }

        if (a.ipv6 && !p->has_vip6 && p->n_vips > 0 &&
            (r = add_warning(p, "%s is \"true\" but no VIP is IPv6", KV_ANN_EGRESS_IPV6)) < 0)
                return r;
        for (int f = 0; f < 2; f++) {
                int family = f == 0 ? AF_INET : AF_INET6;
                bool has = family == AF_INET ? p->has_vip4 : p->has_vip6;
                /* An allowed list with no entry of this family must not read
                 * as "no restriction" further down: that family is left out. */
                if (has && !family_allowed(&a, family) &&
                    (r = add_warning(p, "%s has no %s network; %s egress is off",
                                     KV_ANN_EGRESS_ALLOWED_NETWORKS, family == AF_INET ? "IPv4" : "IPv6",
                                     family == AF_INET ? "IPv4" : "IPv6")) < 0)
                        return r;
        }

        p->pods = calloc(local.n ? local.n : 1, sizeof(IpAddr));
        if (!p->pods)
                return -ENOMEM;
        for (size_t i = 0; i < local.n; i++)
                if (family_handled(p, &a, local.v[i].family))
                        p->pods[p->n_pods++] = local.v[i];
        ip_addrs_sort(p->pods, p->n_pods);

        if (family_handled(p, &a, AF_INET))
                pick_active(&local, AF_INET, in->prev_active4, &p->has_active4, &p->active4);
        if (family_handled(p, &a, AF_INET6))
                pick_active(&local, AF_INET6, in->prev_active6, &p->has_active6, &p->active6);

        r = fill_filters(p, in, &a);
        if (r < 0)
                return r;

        /* Leadership prefers a node with a ready pod; a node whose pods are
         * all starting or terminating still campaigns when no other node has
         * a ready one (a single-replica rollout, the last pod draining). */
        if (p->n_vips == 0 || !p->has_local_endpoint)
                p->state = EGRESS_IDLE;
        else if (p->has_local_ready || !p->has_remote_ready)
                p->state = EGRESS_READY;
        else
                p->state = EGRESS_YIELDING;
        *ret = TAKE_PTR(p);
        return 0;
}

static bool addrs_equal(const IpAddr *a, size_t na, const IpAddr *b, size_t nb)
{
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!ip_addr_equal(&a[i], &b[i]))
                        return false;
        return true;
}

static bool prefixes_equal(const IpPrefix *a, size_t na, const IpPrefix *b, size_t nb)
{
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!ip_prefix_equal(&a[i], &b[i]))
                        return false;
        return true;
}

bool egress_policy_net_equal(const EgressPolicy *a, const EgressPolicy *b)
{
        if (!a || !b)
                return a == b;
        if (a->has_vip4 != b->has_vip4 || a->has_vip6 != b->has_vip6 || a->n_ports != b->n_ports)
                return false;
        if ((a->has_vip4 && !ip_addr_equal(&a->vip4, &b->vip4)) ||
            (a->has_vip6 && !ip_addr_equal(&a->vip6, &b->vip6)))
                return false;
        for (size_t i = 0; i < a->n_ports; i++)
                if (a->ports[i].proto != b->ports[i].proto || a->ports[i].port != b->ports[i].port)
                        return false;
        return streq_ptr(a->ifname, b->ifname) && addrs_equal(a->vips, a->n_vips, b->vips, b->n_vips) &&
               addrs_equal(a->pods, a->n_pods, b->pods, b->n_pods) &&
               prefixes_equal(a->allowed, a->n_allowed, b->allowed, b->n_allowed) &&
               prefixes_equal(a->denied, a->n_denied, b->denied, b->n_denied) &&
               prefixes_equal(a->excluded, a->n_excluded, b->excluded, b->n_excluded);
}

bool egress_policy_lease_equal(const EgressPolicy *a, const EgressPolicy *b)
{
        if (!a || !b)
                return a == b;
        return streq_ptr(a->lease_namespace, b->lease_namespace) && streq_ptr(a->lease_name, b->lease_name);
}
