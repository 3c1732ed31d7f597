/* SPDX-License-Identifier: Apache-2.0 */
/* An in-memory stand-in for kvnetd/manager.c, so fuzz-kvnetd runs the real
 * bus handlers (kvnetd/bus.c) and validators (kvnetd/validate.c) without a
 * kernel. It keeps the same state (services, their VIPs and policies) and
 * the same limits, and checks on every call what the handlers promise to
 * have checked before they touch the kernel: that is the privileged
 * boundary, so a broken promise here is a bug even if nothing crashes. */
#include <time.h>

#include "fuzz-kvnetd.h"
#include "kvnetd-bus.h"

usec_t now_usec(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / NSEC_PER_USEC;
}

Service *manager_find_service(Manager *m, const char *key)
{
        for (Service *s = m->services; s; s = s->next)
                if (streq(s->key, key))
                        return s;
        return NULL;
}

int manager_add_service(Manager *m, const char *key, Service **ret)
{
        Service *s;

        /* Only validated keys become services. */
        fuzz_assert(service_key_parse(key, NULL, NULL, NULL) == 0);
        fuzz_assert(!manager_find_service(m, key));
        if (m->n_services >= KVNETD_MAX_SERVICES)
                return -E2BIG;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->key = strdup(key);
        if (!s->key) {
                free(s);
                return -ENOMEM;
        }
        s->next = m->services;
        m->services = s;
        m->n_services++;
        *ret = s;
        return 0;
}

Vip *manager_find_vip(Manager *m, const IpAddr *a)
{
        for (Service *s = m->services; s; s = s->next)
                for (size_t i = 0; i < s->n_vips; i++)
                        if (ip_addr_equal(&s->vips[i]->addr, a))
                                return s->vips[i];
        return NULL;
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

static void detach_vip(Service *s, Vip *v)
{
        for (size_t i = 0; i < s->n_vips; i++)
                if (s->vips[i] == v) {
                        s->vips[i] = s->vips[--s->n_vips];
                        return;
                }
        fuzz_assert(!"VIP not on its service");
}

static void service_free(Manager *m, Service *s)
{
        for (Service **p = &m->services; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        m->n_services--;
        for (size_t i = 0; i < s->n_vips; i++)
                free(s->vips[i]);
        m->n_vips -= s->n_vips;
        egress_policy_free(s->policy);
        free(s->key);
        free(s);
}

int manager_grant_vip(Manager *m, Service *s, const IpAddr *a, const char *ifname, usec_t deadline)
{
        Vip *v = manager_find_vip(m, a);
        usec_t now = now_usec();

        /* What GrantVip validated before calling. */
        fuzz_assert(s && manager_find_service(m, s->key) == s);
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
                        detach_vip(old, v);
                        if (old->n_vips == 0 && !old->has_chain)
                                service_free(m, old);
                        v->service = s;
                        s->vips[s->n_vips++] = v;
                }
                v->adopted = false;
        } else {
                if (s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE || m->n_vips >= KVNETD_MAX_VIPS)
                        return -E2BIG;
                v = calloc(1, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                v->addr = *a;
                snprintf(v->ifname, sizeof(v->ifname), "%s", ifname);
                v->service = s;
                s->vips[s->n_vips++] = v;
                m->n_vips++;
        }
        s->claimed = true;
        s->deadline = MAX(s->deadline, deadline);
        return 0;
}

int manager_release_vip(Manager *m, Service *s, Vip *v)
{
        fuzz_assert(s && v && v->service == s);
        detach_vip(s, v);
        free(v);
        m->n_vips--;
        if (s->n_vips == 0 && !s->has_chain)
                service_free(m, s);
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
        fuzz_assert(s && manager_find_service(m, s->key) == s);
        if (policy)
                check_policy(m, s, policy);
        egress_policy_free(s->policy);
        s->policy = policy;
        s->has_chain = policy != NULL;
        *ret_error = NULL;
        if (!s->has_chain && s->n_vips == 0)
                service_free(m, s);
        return 0;
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

void fuzz_manager_reset(Manager *m)
{
        while (m->services)
                service_free(m, m->services);
        fuzz_assert(m->n_services == 0 && m->n_vips == 0);
}
