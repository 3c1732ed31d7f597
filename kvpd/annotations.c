/* SPDX-License-Identifier: Apache-2.0 */
#include "annotations.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>

const char *annotation_get(const KubeStringMap *m, const char *key)
{
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n; i++)
                if (streq_ptr(m->keys[i], key))
                        return m->values[i];
        return NULL;
}

void egress_annotations_done(EgressAnnotations *a)
{
        if (!a)
                return;
        free(a->ports);
        free(a->denied);
        free(a->allowed);
        free(a->lb_ips);
        free(a->lease_namespace);
        free(a->lease_name);
        free(a->service_interface);
        *a = (EgressAnnotations){};
}

static int fail(AnnotationError *err, const char *key, int r, const char *fmt, ...) _printf_(4, 5);
static int fail(AnnotationError *err, const char *key, int r, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                int n;

                err->key = key;
                n = snprintf(err->message, sizeof(err->message), "%s: ", key);
                va_start(ap, fmt);
                if (n > 0 && (size_t)n < sizeof(err->message))
                        (void)vsnprintf(err->message + n, sizeof(err->message) - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return r < 0 ? r : -EINVAL;
}

static bool blank(const char *s)
{
        for (; s && *s; s++)
                if (!isspace((unsigned char)*s))
                        return false;
        return true;
}

/* "true"/"false" only (and "" as false), for annotations where kube-vip's
 * "any non-empty value" reading would silently do the opposite of what
 * "false" says. */
static int parse_strict_bool(const char *key, const char *v, bool *ret, AnnotationError *err)
{
        if (!v || streq(v, "") || streq(v, "false")) {
                *ret = false;
                return 0;
        }
        if (streq(v, "true")) {
                *ret = true;
                return 0;
        }
        return fail(err, key, -EINVAL, "\"%.64s\" is not \"true\" or \"false\"", v);
}

/* A DNS name where an address was expected deserves its own message:
 * kube-vip resolves names (DDNS), kvegress binds addresses only. */
static bool looks_like_dns_name(const char *s)
{
        bool alpha = false;

        for (const char *p = s; *p; p++) {
                if (isalpha((unsigned char)*p))
                        alpha = true;
                else if (!isdigit((unsigned char)*p) && *p != '-' && *p != '.')
                        return false;
        }
        return alpha && k8s_dns_subdomain_valid(s);
}

static int parse_lb_ips(const char *v, EgressAnnotations *a, AnnotationError *err)
{
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ IpAddr *ips = NULL;
        ParseError pe = {};
        size_t n = 0;
        int r;

        r = split_comma_list(v, KV_MAX_LB_IPS, &l, &pe);
        if (r < 0)
                return fail(err, KV_ANN_LOADBALANCER_IPS, r, "%s", pe.message);
        for (char **i = l; *i; i++)
                n++;
        ips = calloc(n, sizeof(IpAddr));
        if (!ips)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (looks_like_dns_name(l[i]))
                        return fail(err, KV_ANN_LOADBALANCER_IPS, -EINVAL,
                                    "entry %zu \"%.64s\" is a DNS name; kvegress binds IP addresses only",
                                    i + 1, l[i]);
                r = ip_addr_parse(l[i], AF_UNSPEC, &ips[i], &pe);
                if (r < 0)
                        return fail(err, KV_ANN_LOADBALANCER_IPS, r, "entry %zu: %s", i + 1, pe.message);
                for (size_t j = 0; j < i; j++)
                        if (ip_addr_equal(&ips[i], &ips[j]))
                                return fail(err, KV_ANN_LOADBALANCER_IPS, -EINVAL,
                                            "entry %zu \"%.64s\" is repeated", i + 1, l[i]);
        }
        a->lb_ips = TAKE_PTR(ips);
        a->n_lb_ips = n;
        a->has_lb_ips = true;
        return 0;
}

static int parse_lease_name(const char *v, const char *service_namespace, EgressAnnotations *a,
                            AnnotationError *err)
{
        _cleanup_free_ char *ns = NULL, *name = NULL;
        ParseError pe = {};
        int r;

        if (strchr(v, '/')) {
                r = service_key_parse(v, &ns, &name, &pe);
                if (r < 0)
                        return fail(err, KV_ANN_LEASE_NAME, r, "%s", pe.message);
        } else {
                if (!k8s_dns_subdomain_valid(v))
                        return fail(err, KV_ANN_LEASE_NAME, -EINVAL,
                                    "\"%.64s\" is not a valid Lease name (name or namespace/name)", v);
                ns = strdup(service_namespace ? service_namespace : "default");
                name = strdup(v);
                if (!ns || !name)
                        return -ENOMEM;
        }
        a->lease_namespace = TAKE_PTR(ns);
        a->lease_name = TAKE_PTR(name);
        return 0;
}

int egress_annotations_parse(const KubeStringMap *annotations, const char *service_namespace,
                             EgressAnnotations *ret, AnnotationError *err)
{
        _cleanup_(egress_annotations_done) EgressAnnotations a = {};
        ParseError pe = {};
        const char *v;
        bool b;
        int r;

        /* kube-vip compares with "true" exactly; anything else is "off", not
         * an error, because "false" is a common way of saying off. */
        a.egress = streq_ptr(annotation_get(annotations, KV_ANN_EGRESS), "true");
        a.ipv6 = streq_ptr(annotation_get(annotations, KV_ANN_EGRESS_IPV6), "true");
        a.ignore = streq_ptr(annotation_get(annotations, KV_ANN_IGNORE), "true");
        /* One datapath only (nftables in kvnetd): egress-internal picks
         * nothing, whatever its value. */
        a.internal = !isempty(annotation_get(annotations, KV_ANN_EGRESS_INTERNAL));

        v = annotation_get(annotations, KV_ANN_EGRESS_DESTINATION_PORTS);
        if (v) {
                /* Present but empty would mean "no port" to one reader and
                 * "every port" to another; refuse rather than guess wide. */
                if (blank(v))
                        return fail(err, KV_ANN_EGRESS_DESTINATION_PORTS, -EINVAL,
                                    "is empty; remove the annotation to SNAT every port");
                r = port_list_parse(v, KV_MAX_PORTS, &a.ports, &a.n_ports, &pe);
                if (r < 0)
                        return fail(err, KV_ANN_EGRESS_DESTINATION_PORTS, r, "%s", pe.message);
        }

        v = annotation_get(annotations, KV_ANN_EGRESS_ALLOWED_NETWORKS);
        if (v) {
                if (blank(v))
                        return fail(err, KV_ANN_EGRESS_ALLOWED_NETWORKS, -EINVAL,
                                    "is empty; remove the annotation to SNAT every destination");
                r = ip_prefix_list_parse(v, AF_UNSPEC, KV_MAX_NETWORKS, &a.allowed, &a.n_allowed, &pe);
                if (r < 0)
                        return fail(err, KV_ANN_EGRESS_ALLOWED_NETWORKS, r, "%s", pe.message);
        }

        /* An empty deny list denies nothing, which is what it says. */
        v = annotation_get(annotations, KV_ANN_EGRESS_DENIED_NETWORKS);
        if (v && !blank(v)) {
                r = ip_prefix_list_parse(v, AF_UNSPEC, KV_MAX_NETWORKS, &a.denied, &a.n_denied, &pe);
                if (r < 0)
                        return fail(err, KV_ANN_EGRESS_DENIED_NETWORKS, r, "%s", pe.message);
        }

        r = parse_strict_bool(KV_ANN_EGRESS_DETECT_API_SERVER,
                              annotation_get(annotations, KV_ANN_EGRESS_DETECT_API_SERVER),
                              &a.detect_api_server, err);
        if (r < 0)
                return r;

        /* Its doc comment says "true" keeps pod and service traffic un-SNATed;
         * kube-vip's code does the opposite. The cluster networks are always
         * excluded here (a pod talking to a pod must keep its address), so
         * both values are accepted and neither widens the SNAT. */
        r = parse_strict_bool(KV_ANN_EGRESS_NO_INTERNAL_TRAFFIC,
                              annotation_get(annotations, KV_ANN_EGRESS_NO_INTERNAL_TRAFFIC), &b, err);
        if (r < 0)
                return r;

        v = annotation_get(annotations, KV_ANN_LOADBALANCER_IPS);
        if (v && !blank(v)) {
                r = parse_lb_ips(v, &a, err);
                if (r < 0)
                        return r;
        }

        v = annotation_get(annotations, KV_ANN_LEASE_NAME);
        if (v && !blank(v)) {
                r = parse_lease_name(v, service_namespace, &a, err);
                if (r < 0)
                        return r;
        }

        /* kube-vip creates 802.1Q links on demand; kvnetd never creates
         * links, so binding "somewhere else" would be a guess. */
        v = annotation_get(annotations, KV_ANN_SERVICE_VLAN);
        if (v && !blank(v))
                return fail(err, KV_ANN_SERVICE_VLAN, -EOPNOTSUPP,
                            "\"%.32s\" is not supported: create the VLAN link on the node and name it in %s",
                            v, KV_ANN_SERVICE_INTERFACE);

        v = annotation_get(annotations, KV_ANN_SERVICE_INTERFACE);
        if (v && !blank(v)) {
                if (!streq(v, "auto") && !ifname_valid(v))
                        return fail(err, KV_ANN_SERVICE_INTERFACE, -EINVAL,
                                    "\"%.32s\" is not an interface name (or \"auto\")", v);
                a.service_interface = strdup(v);
                if (!a.service_interface)
                        return -ENOMEM;
        }

        *ret = a;
        a = (EgressAnnotations){};
        return 0;
}
