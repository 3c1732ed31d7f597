/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel side of kvnetd/manager.c, left out, so fuzz-kvnetd runs the
 * real bus handlers (kvnetd/bus.c), validators (kvnetd/validate.c) and
 * record (kvnetd/service.c: services, VIPs, the pod diff) without a
 * kernel. Each call checks what the handlers promise to have checked
 * before they touch the kernel: that is the privileged boundary, so a
 * broken promise here is a bug even if nothing crashes. */
#include <time.h>

#include "bus.h"
#include "fuzz-kvnetd.h"
#include "kvnetd-bus.h"
#include "nft.h"

/* DescribeService reaches this only with a validated key of a known service. */
int introspect_list_nft(Manager *m, const Service *s, char **ret, size_t *ret_size)
{
        (void)m;
        fuzz_assert(service_key_parse(s->key, NULL, NULL, NULL) == 0);
        *ret = strdup("table inet kvegress {\n}\n");
        if (!*ret)
                return -ENOMEM;
        *ret_size = strlen(*ret);
        return 0;
}

static bool in_vip_ranges(const Config *c, const IpAddr *a)
{
        for (size_t i = 0; i < c->n_vip_ranges; i++)
                if (ip_prefix_contains(&c->vip_ranges[i], a))
                        return true;
        return false;
}

static bool allowed_interface(const Config *c, const char *ifname)
{
        for (char **i = c->interfaces; i && *i; i++)
                if (streq(*i, ifname))
                        return true;
        return false;
}

static void maybe_free(Manager *m, Service *s)
{
        if (s->n_vips == 0 && !service_has_egress(s))
                service_free(m, s);
}

int manager_grant_vip(Manager *m, Service *s, const IpAddr *a, const char *ifname, usec_t deadline)
{
        Vip *v = manager_find_vip(m, a);
        usec_t now = now_usec();

        /* What GrantVip validated before calling. */
        fuzz_assert(s && manager_find_service(m, s->key) == s);
        fuzz_assert(service_key_parse(s->key, NULL, NULL, NULL) == 0);
        fuzz_assert(in_vip_ranges(m->config, a));
        fuzz_assert(allowed_interface(m->config, ifname) && ifname_valid(ifname));
        fuzz_assert(deadline <= now || deadline - now <= KVNETD_MAX_GRANT_USEC);
        fuzz_assert(!v || v->service == s || v->adopted);

        if (v) {
                if (v->service != s && s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE)
                        return -E2BIG;
                if (!streq(v->ifname, ifname))
                        return -EADDRINUSE;
                if (v->service != s) {
                        Service *old = v->service;
                        service_detach_vip(m, v, false);
                        maybe_free(m, old);
                        service_attach_vip(m, s, v, false);
                }
                v->adopted = false;
        } else {
                if (s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE || m->n_vips >= m->max_vips)
                        return -E2BIG;
                if (service_reserve_vip(m) < 0)
                        return -ENOMEM;
                v = calloc(1, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                v->addr = *a;
                snprintf(v->ifname, sizeof(v->ifname), "%s", ifname);
                service_attach_vip(m, s, v, true);
        }
        fuzz_assert(manager_find_vip(m, a) == v && v->service == s);
        s->claimed = true;
        service_set_deadline(m, s, deadline);
        fuzz_assert(service_earliest(m)->deadline <= s->deadline);
        return 0;
}

/* kvnetd/addr.c's check that an address is not already on the node. The
 * fuzzed node has none in the VIP ranges but the one the handler must
 * refuse: 192.168.0.240, "the node's own address". */
int addr_check_unused(Manager *m, const IpAddr *a, char *ret_message, size_t size)
{
        IpAddr own;

        fuzz_assert(in_vip_ranges(m->config, a) && !manager_find_vip(m, a));
        fuzz_assert(ip_addr_parse("192.168.0.240", AF_INET, &own, NULL) == 0);
        if (!ip_addr_equal(a, &own))
                return 0;
        snprintf(ret_message, size,
                 "address: 192.168.0.240 is already on this node as 192.168.0.240/24 on lo");
        return -EADDRINUSE;
}

int manager_release_vip(Manager *m, Service *s, Vip *v)
{
        fuzz_assert(s && v && v->service == s);
        service_detach_vip(m, v, true);
        fuzz_assert(!manager_find_vip(m, &v->addr));
        free(v);
        maybe_free(m, s);
        return 0;
}

static void check_policy(const Manager *m, const Service *s, const EgressPolicy *p)
{
        const IpAddr *vips[] = {&p->vip4, &p->vip6};

        /* The state check: each VIP is granted to s, not merely adopted. */
        for (size_t k = 0; k < ELEMENTSOF(vips); k++) {
                bool granted = false;
                if (vips[k]->family == 0)
                        continue;
                fuzz_assert(vips[k]->family == (k == 0 ? AF_INET : AF_INET6));
                fuzz_assert(in_vip_ranges(m->config, vips[k]));
                for (size_t i = 0; i < s->n_vips; i++)
                        granted |= ip_addr_equal(&s->vips[i]->addr, vips[k]) && !s->vips[i]->adopted;
                fuzz_assert(granted);
        }
        fuzz_assert(p->vip4.family || p->vip6.family);
        /* Normalised: sorted, no duplicates, each family has its VIP. */
        fuzz_assert(p->n_pods <= KVNETD_MAX_PODS_PER_SERVICE);
        for (size_t i = 0; i < p->n_pods; i++) {
                fuzz_assert(p->pods[i].family == AF_INET ? p->vip4.family : p->vip6.family);
                fuzz_assert(i == 0 || ip_addr_compare(&p->pods[i - 1], &p->pods[i]) < 0);
        }
        fuzz_assert(p->n_ports <= KVNETD_MAX_PORTS);
        for (size_t i = 0; i < p->n_ports; i++) {
                fuzz_assert(p->ports[i].port != 0 && l4_proto_to_string(p->ports[i].proto));
                fuzz_assert(i == 0 || p->ports[i - 1].proto != p->ports[i].proto ||
                            p->ports[i - 1].port < p->ports[i].port);
        }
        {
                const IpPrefix *sets[] = {p->allowed, p->denied, p->excluded};
                size_t ns[] = {p->n_allowed, p->n_denied, p->n_excluded};
                for (size_t k = 0; k < ELEMENTSOF(sets); k++) {
                        fuzz_assert(ns[k] <= KVNETD_MAX_NETWORKS);
                        /* An nft interval set refuses overlaps. */
                        for (size_t i = 0; i < ns[k]; i++)
                                for (size_t j = 0; j < ns[k]; j++) {
                                        IpAddr a = {.family = sets[k][j].family, .addr = sets[k][j].addr};
                                        if (i != j)
                                                fuzz_assert(!ip_prefix_contains(&sets[k][i], &a));
                                }
                }
        }
}

int manager_set_egress(Manager *m, Service *s, EgressPolicy *policy, char **ret_error)
{
        EgressDiff d = {};
        int r;

        fuzz_assert(s && manager_find_service(m, s->key) == s);
        if (policy)
                check_policy(m, s, policy);
        /* The real diff; the "transaction" always succeeds here. */
        r = service_egress_diff(m, s, policy, &d, ret_error);
        if (r < 0) {
                egress_policy_free(policy);
                return r;
        }
        service_egress_apply(m, s, policy, &d);
        egress_diff_done(&d);
        fuzz_assert(!policy || (s->cls && s->cls->refs > 0 && egress_class_find(m, s->cls->name) == s->cls));
        for (size_t i = 0; i < s->n_pods; i++)
                fuzz_assert(podmap_get(&m->pods, &s->pods[i]) == s);
        maybe_free(m, s);
        return 0;
}

/* SetEgress's queue (kvnetd/egress-batch.c): here the change is made at
 * once and the deferred answer sent through bus.c as the real flush does. */
int egress_queue_set(Manager *m, Service *s, EgressPolicy *policy, sd_bus_message *msg, char **ret_error)
{
        int r = manager_set_egress(m, s, policy, ret_error);

        if (r < 0)
                return r;
        bus_reply_deferred(m, msg, 0, NULL);
        return 0;
}

void manager_egress_flush(Manager *m)
{
        (void)m;
}

int manager_remove_service(Manager *m, Service *s)
{
        fuzz_assert(s && manager_find_service(m, s->key) == s);
        service_free(m, s);
        return 0;
}

void manager_update_fence(Manager *m)
{
        (void)m;
}

void manager_schedule_save(Manager *m, bool now)
{
        (void)m;
        (void)now;
}

int manager_add_connection(Manager *m, sd_bus *bus)
{
        (void)m;
        (void)bus;
        return 0;
}

size_t manager_conntrack_pending(Manager *m)
{
        (void)m;
        return 0;
}

void fuzz_manager_reset(Manager *m)
{
        while (m->services)
                service_free(m, m->services);
        fuzz_assert(m->n_services == 0 && m->n_vips == 0 && m->pods.n == 0 && m->n_deadlines == 0);
        /* A class goes with its last service. */
        fuzz_assert(m->n_classes == 0 && m->n_legacy == 0);
}
