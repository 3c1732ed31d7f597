/* SPDX-License-Identifier: Apache-2.0 */
#include "validate.h"

#include <net/if.h>
#include <stdio.h>
#include <sys/socket.h>

#include "kvnetd-bus.h"

static const char *field_name(const char *field, size_t idx, char buf[static 64])
{
        if (idx == FIELD_NONE)
                snprintf(buf, 64, "%s", field);
        else
                snprintf(buf, 64, "%s[%zu]", field, idx);
        return buf;
}

int validate_string(const char *field, size_t idx, const char *s, ParseError *err)
{
        char f[64];

        /* sd-bus has already refused strings that are not valid UTF-8 or
         * contain NUL; what is left is length. */
        if (isempty(s)) {
                parse_error_set(err, "%s: must not be empty", field_name(field, idx, f));
                return -EINVAL;
        }
        if (strlen(s) > KVNETD_MAX_STRING) {
                parse_error_set(err, "%s: longer than %d bytes", field_name(field, idx, f),
                                KVNETD_MAX_STRING);
                return -E2BIG;
        }
        return 0;
}

int validate_service_key(const char *field, const char *s, ParseError *err)
{
        ParseError e;
        int r;

        r = validate_string(field, FIELD_NONE, s, err);
        if (r < 0)
                return r;
        if (strlen(s) > KVNETD_MAX_SERVICE_KEY) {
                parse_error_set(err, "%s: longer than %d bytes", field, KVNETD_MAX_SERVICE_KEY);
                return -EINVAL;
        }
        r = service_key_parse(s, NULL, NULL, &e);
        if (r < 0) {
                parse_error_set(err, "%s: %s", field, e.message);
                return -EINVAL;
        }
        return 0;
}

static bool in_vip_ranges(const Config *c, const IpAddr *a)
{
        for (size_t i = 0; i < c->n_vip_ranges; i++)
                if (ip_prefix_contains(&c->vip_ranges[i], a))
                        return true;
        return false;
}

int validate_vip(const Config *c, const char *field, const char *s, int family, IpAddr *ret, ParseError *err)
{
        IpPrefix p;
        IpAddr a;
        ParseError e;
        char buf[INET6_ADDRSTRLEN];
        int r;

        r = validate_string(field, FIELD_NONE, s, err);
        if (r < 0)
                return r;
        r = ip_prefix_parse(s, family, true, &p, &e);
        if (r < 0) {
                parse_error_set(err, "%s: %s", field, e.message);
                return -EINVAL;
        }
        if (p.prefixlen != family_max_prefixlen(p.family)) {
                parse_error_set(err, "%s: a VIP is a single address (/%u), not /%u", field,
                                family_max_prefixlen(p.family), p.prefixlen);
                return -EINVAL;
        }
        a = (IpAddr){.family = p.family, .addr = p.addr};
        if (!in_vip_ranges(c, &a)) {
                parse_error_set(err, "%s: %s is not inside any configured VIP range", field,
                                ip_addr_to_string(&a, buf));
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

int validate_ifname(const Config *c, const char *field, const char *s, ParseError *err)
{
        bool listed = false;
        int r;

        r = validate_string(field, FIELD_NONE, s, err);
        if (r < 0)
                return r;
        if (!ifname_valid(s)) {
                parse_error_set(err, "%s: not a valid interface name", field);
                return -EINVAL;
        }
        for (char **i = c->interfaces; i && *i; i++)
                if (streq(*i, s))
                        listed = true;
        if (!listed) {
                parse_error_set(err, "%s: interface \"%s\" is not in the allowed interfaces", field, s);
                return -EINVAL;
        }
        if (if_nametoindex(s) == 0) {
                parse_error_set(err, "%s: interface \"%s\" does not exist", field, s);
                return -EINVAL;
        }
        return 0;
}

int validate_deadline(usec_t now, usec_t deadline, const char *field, ParseError *err)
{
        if (deadline <= now) {
                parse_error_set(err, "%s: %llu is not in the future (now %llu)", field,
                                (unsigned long long)deadline, (unsigned long long)now);
                return -EINVAL;
        }
        if (deadline - now > KVNETD_MAX_GRANT_USEC) {
                parse_error_set(err, "%s: more than %llus from now", field,
                                (unsigned long long)(KVNETD_MAX_GRANT_USEC / USEC_PER_SEC));
                return -EINVAL;
        }
        return 0;
}

static int port_cmp(const void *x, const void *y)
{
        const PortSpec *a = x, *b = y;

        if (a->proto != b->proto)
                return a->proto < b->proto ? -1 : 1;
        return a->port < b->port ? -1 : a->port > b->port;
}

void egress_policy_free(EgressPolicy *p)
{
        if (!p)
                return;
        free(p->pods);
        free(p->ports);
        free(p->allowed);
        free(p->denied);
        free(p->excluded);
        free(p);
}

static int networks_validate(const char *field, const char **in, size_t n, IpPrefix **ret, size_t *ret_n,
                             ParseError *err)
{
        _cleanup_free_ IpPrefix *v = NULL;
        char f[64];
        int r;

        if (n > KVNETD_MAX_NETWORKS) {
                parse_error_set(err, "%s: %zu entries, the limit is %d", field, n, KVNETD_MAX_NETWORKS);
                return -E2BIG;
        }
        v = calloc(MAX(n, (size_t)1), sizeof(IpPrefix));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                ParseError e;

                r = validate_string(field, i, in[i], err);
                if (r < 0)
                        return r;
                r = ip_prefix_parse(in[i], AF_UNSPEC, true, &v[i], &e);
                if (r < 0) {
                        parse_error_set(err, "%s: %s", field_name(field, i, f), e.message);
                        return -EINVAL;
                }
        }
        prefixes_normalize(v, &n);
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

int egress_request_validate(const Config *c, const EgressRequest *req, EgressPolicy **ret, ParseError *err)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        char f[64];
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;

        /* "" means no VIP of that family. */
        if (!isempty(req->vip4)) {
                r = validate_vip(c, "vip4", req->vip4, AF_INET, &p->vip4, err);
                if (r < 0)
                        return r;
        }
        if (!isempty(req->vip6)) {
                r = validate_vip(c, "vip6", req->vip6, AF_INET6, &p->vip6, err);
                if (r < 0)
                        return r;
        }

        if (req->n_pods > KVNETD_MAX_PODS_PER_SERVICE) {
                parse_error_set(err, "pods: %zu entries, the limit is %d", req->n_pods,
                                KVNETD_MAX_PODS_PER_SERVICE);
                return -E2BIG;
        }
        p->pods = calloc(MAX(req->n_pods, (size_t)1), sizeof(IpAddr));
        if (!p->pods)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_pods; i++) {
                ParseError e;

                r = validate_string("pods", i, req->pods[i], err);
                if (r < 0)
                        return r;
                r = ip_addr_parse(req->pods[i], AF_UNSPEC, &p->pods[i], &e);
                if (r < 0) {
                        parse_error_set(err, "%s: %s", field_name("pods", i, f), e.message);
                        return -EINVAL;
                }
                if (p->pods[i].family == AF_INET && p->vip4.family == 0) {
                        parse_error_set(err, "%s: IPv4 pod but vip4 is empty", field_name("pods", i, f));
                        return -EINVAL;
                }
                if (p->pods[i].family == AF_INET6 && p->vip6.family == 0) {
                        parse_error_set(err, "%s: IPv6 pod but vip6 is empty", field_name("pods", i, f));
                        return -EINVAL;
                }
        }
        p->n_pods = req->n_pods;
        ip_addrs_sort(p->pods, p->n_pods);
        for (size_t i = 1; i < p->n_pods; i++)
                if (ip_addr_equal(&p->pods[i - 1], &p->pods[i])) {
                        char buf[INET6_ADDRSTRLEN];
                        parse_error_set(err, "pods: %s is listed twice",
                                        ip_addr_to_string(&p->pods[i], buf));
                        return -EINVAL;
                }

        if (req->n_ports > KVNETD_MAX_PORTS) {
                parse_error_set(err, "ports: %zu entries, the limit is %d", req->n_ports, KVNETD_MAX_PORTS);
                return -E2BIG;
        }
        p->ports = calloc(MAX(req->n_ports, (size_t)1), sizeof(PortSpec));
        if (!p->ports)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_ports; i++) {
                L4Proto proto;

                r = validate_string("ports", i, req->port_protos[i], err);
                if (r < 0)
                        return r;
                proto = l4_proto_from_string(req->port_protos[i]);
                if (proto < 0 || !streq(req->port_protos[i], l4_proto_to_string(proto))) {
                        parse_error_set(err, "%s: protocol must be tcp, udp or sctp",
                                        field_name("ports", i, f));
                        return -EINVAL;
                }
                if (req->port_numbers[i] == 0) {
                        parse_error_set(err, "%s: port must be 1..65535", field_name("ports", i, f));
                        return -EINVAL;
                }
                p->ports[i] = (PortSpec){.proto = proto, .port = req->port_numbers[i]};
        }
        p->n_ports = req->n_ports;
        qsort(p->ports, p->n_ports, sizeof(PortSpec), port_cmp);
        {
                size_t o = 0;
                for (size_t i = 0; i < p->n_ports; i++)
                        if (o == 0 || port_cmp(&p->ports[o - 1], &p->ports[i]) != 0)
                                p->ports[o++] = p->ports[i];
                p->n_ports = o;
        }

        r = networks_validate("allowed", req->allowed, req->n_allowed, &p->allowed, &p->n_allowed, err);
        if (r < 0)
                return r;
        r = networks_validate("denied", req->denied, req->n_denied, &p->denied, &p->n_denied, err);
        if (r < 0)
                return r;
        r = networks_validate("excluded", req->excluded, req->n_excluded, &p->excluded, &p->n_excluded, err);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}
