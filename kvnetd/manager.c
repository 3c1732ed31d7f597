/* SPDX-License-Identifier: Apache-2.0 */
/* The Manager: services, their VIPs and egress, and the kernel transactions
 * that make the kernel match them. Handlers (bus.c) call in here only after
 * every field has been validated. */
#include "manager.h"

#include <nftables/libnftables.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "addr.h"
#include "announce.h"
#include "array.h"
#include "conntrack.h"
#include "daemon.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "nft.h"
#include "state.h"
#include "validate.h"

/* Holds VIPs found in the kernel that no state entry names; not a valid
 * service key, so no client can claim it by name. */
#define UNOWNED_KEY ":unowned"

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
        char chain[24];

        if (m->n_services >= KVNETD_MAX_SERVICES)
                return -E2BIG;
        nft_chain_name(key, chain);
        for (Service *o = m->services; o; o = o->next)
                if (streq(o->chain, chain))
                        return -EEXIST; /* a 64-bit hash collision: refuse rather than share */
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->key = strdup(key);
        if (!s->key) {
                free(s);
                return -ENOMEM;
        }
        memcpy(s->chain, chain, sizeof(chain));
        s->next = m->services;
        m->services = s;
        m->n_services++;
        *ret = s;
        return 0;
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
        for (size_t i = 0; i < s->n_pods; i++)
                if (podmap_get(&m->pods, &s->pods[i]) == s)
                        podmap_remove(&m->pods, &s->pods[i]);
        free(s->pods);
        egress_policy_free(s->policy);
        free(s->key);
        free(s);
}

static void service_maybe_free(Manager *m, Service *s)
{
        if (s->n_vips == 0 && !s->has_chain)
                service_free(m, s);
}

Vip *manager_find_vip(Manager *m, const IpAddr *a)
{
        for (Service *s = m->services; s; s = s->next)
                for (size_t i = 0; i < s->n_vips; i++)
                        if (ip_addr_equal(&s->vips[i]->addr, a))
                                return s->vips[i];
        return NULL;
}

static void service_detach_vip(Service *s, Vip *v)
{
        for (size_t i = 0; i < s->n_vips; i++)
                if (s->vips[i] == v) {
                        s->vips[i] = s->vips[--s->n_vips];
                        break;
                }
        v->service = NULL;
}

int manager_grant_vip(Manager *m, Service *s, const IpAddr *a, const char *ifname, usec_t deadline)
{
        Vip *v = manager_find_vip(m, a);
        bool added = false;
        int r;

        if (v) {
                if (v->service != s) {
                        /* Only a VIP nobody has claimed since our start can
                         * change hands. */
                        if (!v->adopted)
                                return -EBUSY;
                        if (s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE)
                                return -E2BIG;
                }
                if (!streq(v->ifname, ifname))
                        return -EADDRINUSE;
                if (v->service != s) {
                        Service *old = v->service;
                        service_detach_vip(old, v);
                        service_maybe_free(m, old);
                        v->service = s;
                        s->vips[s->n_vips++] = v;
                }
                /* Claimed as it is: no kernel change, so a replay after a
                 * restart does not flap the address. */
                v->adopted = false;
        } else {
                if (s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE || m->n_vips >= KVNETD_MAX_VIPS)
                        return -E2BIG;
                v = calloc(1, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                v->addr = *a;
                snprintf(v->ifname, sizeof(v->ifname), "%s", ifname);
                r = addr_add(m, v);
                if (r < 0) {
                        free(v);
                        return log_warning_errno(r, "binding %s on %s failed: %m",
                                                 ip_addr_to_string(a, (char[INET6_ADDRSTRLEN]){}), ifname);
                }
                v->service = s;
                s->vips[s->n_vips++] = v;
                m->n_vips++;
                added = true;
                log_info("bound VIP %s on %s for %s", ip_addr_to_string(a, (char[INET6_ADDRSTRLEN]){}), ifname,
                         s->key);
                announce_start(m, v);
        }
        s->deadline = deadline;
        s->claimed = true;
        manager_update_fence(m);
        manager_schedule_save(m, added);
        manager_update_status(m);
        return 0;
}

static bool policy_uses(const EgressPolicy *p, const IpAddr *a)
{
        return p && (ip_addr_equal(&p->vip4, a) || ip_addr_equal(&p->vip6, a));
}

int manager_release_vip(Manager *m, Service *s, Vip *v)
{
        int r;

        /* Egress that SNATs to this VIP goes first: never a rule whose
         * source address this node does not hold. An adopted chain's policy
         * is unknown, so it goes too. */
        if (s->has_chain && (!s->policy || policy_uses(s->policy, &v->addr))) {
                r = manager_set_egress(m, s, NULL, NULL);
                if (r < 0)
                        return r;
        }
        r = addr_del(m, v);
        if (r < 0)
                return log_warning_errno(r, "removing VIP %s from %s failed: %m",
                                         ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), v->ifname);
        log_info("released VIP %s on %s of %s", ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}),
                 v->ifname, s->key);
        service_detach_vip(s, v);
        free(v);
        m->n_vips--;
        service_maybe_free(m, s);
        manager_schedule_save(m, true);
        manager_update_fence(m);
        manager_update_status(m);
        return 0;
}

static int addrs_append(IpAddr **v, size_t *n, size_t *cap, const IpAddr *a)
{
        if (array_reserve((void **)v, cap, *n + 1, sizeof(IpAddr)) < 0)
                return -ENOMEM;
        (*v)[(*n)++] = *a;
        return 0;
}

static void pods_remove_one(Service *s, const IpAddr *a)
{
        for (size_t i = 0; i < s->n_pods; i++)
                if (ip_addr_equal(&s->pods[i], a)) {
                        memmove(&s->pods[i], &s->pods[i + 1], (s->n_pods - i - 1) * sizeof(IpAddr));
                        s->n_pods--;
                        return;
                }
}

int manager_set_egress(Manager *m, Service *s, EgressPolicy *policy, char **ret_error)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = policy;
        _cleanup_free_ IpAddr *added = NULL, *removed = NULL, *stolen = NULL, *flush = NULL, *new_pods = NULL;
        size_t n_added = 0, n_removed = 0, n_stolen = 0, n_flush = 0;
        size_t cap_added = 0, cap_removed = 0, cap_stolen = 0, cap_flush = 0;
        size_t n_new = p ? p->n_pods : 0;
        _cleanup_free_ char *batch = NULL;
        const char *table = m->config->table;
        uint64_t fp = 0;
        bool rules_change = false;
        size_t bsize = 0, i = 0, k = 0;
        FILE *f;
        int r;

        /* Pods of another service: refused if that service is live, taken
         * over if it is an adopted leftover nobody claimed. */
        for (size_t j = 0; j < n_new; j++) {
                Service *owner = podmap_get(&m->pods, &p->pods[j]);
                if (!owner || owner == s)
                        continue;
                if (owner->claimed && owner->policy) {
                        if (ret_error)
                                (void)asprintf(ret_error, "pods: %s is mapped by service %s",
                                               ip_addr_to_string(&p->pods[j], (char[INET6_ADDRSTRLEN]){}),
                                               owner->key);
                        return -EBUSY;
                }
                if (addrs_append(&stolen, &n_stolen, &cap_stolen, &p->pods[j]) < 0)
                        return -ENOMEM;
        }
        if (m->pods.n - s->n_pods - n_stolen + n_new > KVNETD_MAX_PODS_TOTAL) {
                if (ret_error)
                        (void)asprintf(ret_error, "pods: %zu pod mappings on this node would pass the limit of %d",
                                       m->pods.n - s->n_pods - n_stolen + n_new, KVNETD_MAX_PODS_TOTAL);
                return -E2BIG;
        }

        /* Both lists are sorted: one merge gives what to add and remove. */
        while (i < s->n_pods || k < n_new) {
                int c = i >= s->n_pods ? 1 : k >= n_new ? -1 : ip_addr_compare(&s->pods[i], &p->pods[k]);
                if (c < 0)
                        r = addrs_append(&removed, &n_removed, &cap_removed, &s->pods[i++]);
                else if (c > 0)
                        r = addrs_append(&added, &n_added, &cap_added, &p->pods[k++]);
                else {
                        i++;
                        k++;
                        r = 0;
                }
                if (r < 0)
                        return r;
        }

        f = open_memstream(&batch, &bsize);
        if (!f)
                return -ENOMEM;
        if (p) {
                fp = nft_policy_fingerprint(table, s->chain, s->key, p);
                rules_change = !s->has_chain || s->fingerprint != fp;
                if (rules_change)
                        nft_batch_service(f, table, s->chain, s->key, p, s->has_chain);
                nft_batch_pods(f, table, removed, n_removed, NULL);
                nft_batch_pods(f, table, stolen, n_stolen, NULL);
                nft_batch_pods(f, table, added, n_added, s->chain);
        } else if (s->has_chain) {
                nft_batch_pods(f, table, s->pods, s->n_pods, NULL);
                nft_batch_remove_service(f, table, s->chain);
        }
        if (fclose(f) != 0)
                return -ENOMEM;

        r = nft_apply(m->nft, batch, ret_error);
        if (r < 0)
                return log_warning_errno(r, "egress transaction for %s failed, nothing changed", s->key);
        if (!isempty(batch))
                log_info("egress of %s: %s%zu pods added, %zu removed", s->key,
                         !p ? "removed, " : rules_change ? "rules set, " : "", n_added, n_removed);

        /* Applied: bring our view in line, then flush conntrack. */
        for (size_t j = 0; j < n_stolen; j++) {
                Service *owner = podmap_get(&m->pods, &stolen[j]);
                if (owner)
                        pods_remove_one(owner, &stolen[j]);
        }
        for (size_t j = 0; j < n_removed; j++)
                podmap_remove(&m->pods, &removed[j]);
        for (size_t j = 0; j < n_added; j++)
                if (podmap_put(&m->pods, &added[j], s) < 0)
                        log_error("out of memory recording pod mappings");
        if (!p)
                for (size_t j = 0; j < s->n_pods; j++)
                        podmap_remove(&m->pods, &s->pods[j]);
        if (n_new > 0) {
                new_pods = malloc(n_new * sizeof(IpAddr));
                if (!new_pods)
                        return log_error_errno(ENOMEM, "out of memory");
                memcpy(new_pods, p->pods, n_new * sizeof(IpAddr));
        }

        /* Every pod whose SNAT changed: added, removed, taken over, and all
         * of them when the rules (VIP, ports, networks) changed. */
        if (!p || (rules_change && s->has_chain)) {
                for (size_t j = 0; j < s->n_pods; j++)
                        (void)addrs_append(&flush, &n_flush, &cap_flush, &s->pods[j]);
                for (size_t j = 0; j < n_added; j++)
                        (void)addrs_append(&flush, &n_flush, &cap_flush, &added[j]);
        } else {
                for (size_t j = 0; j < n_removed; j++)
                        (void)addrs_append(&flush, &n_flush, &cap_flush, &removed[j]);
                for (size_t j = 0; j < n_added; j++)
                        (void)addrs_append(&flush, &n_flush, &cap_flush, &added[j]);
        }

        free(s->pods);
        s->pods = TAKE_PTR(new_pods);
        s->n_pods = n_new;
        s->has_chain = p != NULL;
        s->fingerprint = fp;
        egress_policy_free(s->policy);
        s->policy = TAKE_PTR(p);

        if (n_flush > 0) {
                r = conntrack_flush_sources(m, flush, n_flush);
                if (r > 0)
                        log_debug("deleted %d conntrack entries of %zu pods", r, n_flush);
        }
        manager_update_status(m);
        return 0;
}

int manager_remove_service(Manager *m, Service *s)
{
        int r;

        if (s->has_chain) {
                r = manager_set_egress(m, s, NULL, NULL);
                if (r < 0)
                        return r;
        }
        while (s->n_vips > 0) {
                Vip *v = s->vips[s->n_vips - 1];
                bool last = s->n_vips == 1;

                r = manager_release_vip(m, s, v);
                if (r < 0)
                        return r;
                if (last)
                        return 0; /* s was freed with its last VIP */
        }
        service_free(m, s);
        manager_update_status(m);
        return 0;
}

static void fence_service(Manager *m, Service *s)
{
        _cleanup_free_ char *key = strdup(s->key);
        bool claimed = s->claimed;
        int r;

        log_struct(LOG_NOTICE, 0, LOG_FIELDS("KVEGRESS_EVENT=fence"), "%s %s: removing its VIPs and egress",
                   s->key, claimed ? "grant expired without renewal" : "was not claimed in the grace period");
        r = manager_remove_service(m, s);
        if (r < 0) {
                /* Try again soon; the VIP must not outlive its grant. */
                log_error_errno(r, "fencing %s failed, retrying: %m", key ? key : "?");
                s->deadline = now_usec() + USEC_PER_SEC;
                return;
        }
        if (claimed && key && m->bus)
                (void)bus_server_emit_signal(m->bus, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE,
                                             KVNETD_SIGNAL_GRANT_EXPIRED, KVNETD_SIG_GRANT_EXPIRED, key);
}

static void grace_end(Manager *m)
{
        Service *next;

        m->grace_end = 0;
        log_info("grace period over: removing what no client claimed");
        for (Service *s = m->services; s; s = next) {
                next = s->next;
                if (!s->claimed) {
                        fence_service(m, s);
                        continue;
                }
                if (s->has_chain && !s->policy) {
                        (void)manager_set_egress(m, s, NULL, NULL);
                        if (s->n_vips == 0 && !s->has_chain) {
                                service_free(m, s);
                                continue;
                        }
                }
                for (size_t i = s->n_vips; i > 0; i--)
                        if (s->vips[i - 1]->adopted) {
                                bool last = s->n_vips == 1;
                                (void)manager_release_vip(m, s, s->vips[i - 1]);
                                if (last)
                                        break;
                        }
        }
}

static int on_fence_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        usec_t now = now_usec();
        Service *next;

        (void)source;
        (void)usec;
        if (m->grace_end != 0 && now >= m->grace_end)
                grace_end(m);
        for (Service *s = m->services; s; s = next) {
                next = s->next;
                if (s->deadline <= now)
                        fence_service(m, s);
        }
        manager_update_fence(m);
        return 0;
}

void manager_update_fence(Manager *m)
{
        usec_t earliest = m->grace_end ? m->grace_end : UINT64_MAX;
        int r;

        for (Service *s = m->services; s; s = s->next)
                earliest = MIN(earliest, s->deadline);
        if (!m->fence_timer) {
                r = sd_event_add_time(m->event, &m->fence_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_fence_timer, m);
                if (r < 0) {
                        log_error_errno(r, "cannot create the fence timer: %m");
                        return;
                }
                /* Fencing comes before serving new requests. */
                (void)sd_event_source_set_priority(m->fence_timer, SD_EVENT_PRIORITY_IMPORTANT);
        }
        if (earliest == UINT64_MAX) {
                (void)sd_event_source_set_enabled(m->fence_timer, SD_EVENT_OFF);
                return;
        }
        (void)sd_event_source_set_time(m->fence_timer, earliest);
        (void)sd_event_source_set_enabled(m->fence_timer, SD_EVENT_ONESHOT);
}

void manager_update_status(Manager *m)
{
        char buf[160];

        snprintf(buf, sizeof(buf), "%s%zu services, %zu VIPs, %zu pod mappings",
                 m->grace_end ? "grace period: " : "", m->n_services, m->n_vips, m->pods.n);
        daemon_notify_status(buf);
}

static int on_save_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        int r;

        (void)source;
        (void)usec;
        r = state_save(m);
        if (r < 0)
                log_warning_errno(r, "cannot write the state file in %s: %m", m->config->state_dir);
        return 0;
}

void manager_schedule_save(Manager *m, bool now)
{
        int r;

        /* A new or removed VIP is written at once (a crash right after must
         * not forget who owns it); renewals are coalesced: a stale file only
         * holds earlier deadlines, which errs on the safe side. */
        if (now) {
                if (m->save_timer)
                        (void)sd_event_source_set_enabled(m->save_timer, SD_EVENT_OFF);
                (void)on_save_timer(NULL, 0, m);
                return;
        }
        if (!m->save_timer) {
                r = sd_event_add_time_relative(m->event, &m->save_timer, CLOCK_MONOTONIC, USEC_PER_SEC, 0,
                                               on_save_timer, m);
                if (r < 0)
                        (void)on_save_timer(NULL, 0, m);
                return;
        }
        if (sd_event_source_get_enabled(m->save_timer, NULL) <= 0) {
                (void)sd_event_source_set_time_relative(m->save_timer, USEC_PER_SEC);
                (void)sd_event_source_set_enabled(m->save_timer, SD_EVENT_ONESHOT);
        }
}

/* Rebuilds our table from memory when someone removed or changed it. One
 * transaction: "add table; delete table" removes whatever is there (and is
 * harmless when nothing is), then everything is created again, so the
 * kernel switches from the old table to the rebuilt one atomically. */
static int nft_rebuild(Manager *m)
{
        _cleanup_free_ char *batch = NULL, *err = NULL;
        _cleanup_free_ IpAddr *all = NULL;
        size_t bsize = 0, n_all = 0, cap_all = 0;
        FILE *f;
        int r;

        f = open_memstream(&batch, &bsize);
        if (!f)
                return -ENOMEM;
        fprintf(f, "add table inet %s\ndelete table inet %s\n", m->config->table, m->config->table);
        nft_batch_skeleton(f, m->config->table);
        for (Service *s = m->services; s; s = s->next)
                if (s->policy) {
                        nft_batch_service(f, m->config->table, s->chain, s->key, s->policy, false);
                        nft_batch_pods(f, m->config->table, s->pods, s->n_pods, s->chain);
                        for (size_t i = 0; i < s->n_pods; i++)
                                (void)addrs_append(&all, &n_all, &cap_all, &s->pods[i]);
                }
        if (fclose(f) != 0)
                return -ENOMEM;
        r = nft_apply(m->nft, batch, &err);
        if (r < 0)
                return log_error_errno(r, "cannot rebuild table inet %s: %s", m->config->table, err ? err : "");
        for (Service *s = m->services; s; s = s->next)
                if (s->has_chain && !s->policy) {
                        /* An adopted chain we cannot rebuild: forget it. */
                        for (size_t i = 0; i < s->n_pods; i++)
                                podmap_remove(&m->pods, &s->pods[i]);
                        s->pods = mfree(s->pods);
                        s->n_pods = 0;
                        s->has_chain = false;
                }
        (void)conntrack_flush_sources(m, all, n_all);
        return 0;
}

/* Whether the kernel holds what we last programmed: the skeleton, for each
 * service with a chain that chain with our fingerprint and exactly our pods
 * in the maps, and no other chain of ours. Returns 1 if so, 0 if not (with
 * a reason), negative errno if the table could not be read. */
static int nft_table_matches(Manager *m, const char **ret_reason)
{
        _cleanup_(nft_table_info_done) NftTableInfo t = {};
        size_t expected = 0;
        int r;

        r = nft_read_table(m->nft, m->config->table, &t);
        if (r < 0)
                return r;
        if (!t.exists) {
                *ret_reason = "the table was removed";
                return 0;
        }
        if (!t.skeleton_ok) {
                *ret_reason = "its maps or base chain changed";
                return 0;
        }
        for (Service *s = m->services; s; s = s->next) {
                const NftChainInfo *c = NULL;

                if (!s->has_chain)
                        continue;
                expected++;
                for (size_t i = 0; i < t.n_chains && !c; i++)
                        if (streq(t.chains[i].chain, s->chain))
                                c = &t.chains[i];
                if (!c || c->fingerprint != s->fingerprint) {
                        *ret_reason = "a service chain or its rules changed";
                        return 0;
                }
                if (c->n_pods != s->n_pods) {
                        *ret_reason = "pod mappings changed";
                        return 0;
                }
                /* Both sorted with ip_addr_compare(). */
                for (size_t i = 0; i < s->n_pods; i++)
                        if (!ip_addr_equal(&c->pods[i], &s->pods[i])) {
                                *ret_reason = "pod mappings changed";
                                return 0;
                        }
        }
        if (t.n_chains != expected) {
                *ret_reason = "a chain we did not make appeared, or pods map to one";
                return 0;
        }
        return 1;
}

static int on_reconcile_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        const char *reason = NULL;
        int r;

        (void)addr_reconcile(m);
        /* Someone else's nft command (a firewall manager's flush, an
         * operator's typo) must not leave pods SNATed wrongly, or not at all,
         * until the next change: compare, and rebuild on any difference. */
        r = nft_table_matches(m, &reason);
        if (r < 0)
                log_warning_errno(r, "cannot read table inet %s: %m", m->config->table);
        else if (r == 0) {
                log_notice("table inet %s differs from what kvnetd programmed (%s): rebuilding it",
                           m->config->table, reason);
                (void)nft_rebuild(m);
        }
        (void)sd_event_source_set_time(source, usec + m->config->reconcile_usec);
        (void)sd_event_source_set_enabled(source, SD_EVENT_ON);
        return 0;
}

int manager_new(Config *config, Manager **ret)
{
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->config = config;
        m->arp_fd = -EBADF;
        r = daemon_event_new(&m->event);
        if (r < 0)
                return r;
        m->nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!m->nft)
                return -ENOMEM;
        if (nft_ctx_buffer_error(m->nft) < 0)
                return -ENOMEM;
        r = addr_open(m);
        if (r < 0)
                return log_error_errno(r, "cannot open rtnetlink: %m");
        r = conntrack_open(m);
        if (r < 0)
                return log_error_errno(r, "cannot open conntrack netlink: %m");
        r = announce_open(m);
        if (r < 0)
                return log_error_errno(r, "cannot open the packet socket for ARP and NA (CAP_NET_RAW?): %m");
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m)
{
        if (!m)
                return NULL;
        m->bus = bus_server_free(m->bus);
        while (m->services)
                service_free(m, m->services);
        sd_event_source_disable_unref(m->fence_timer);
        sd_event_source_disable_unref(m->announce_timer);
        sd_event_source_disable_unref(m->reconcile_timer);
        sd_event_source_disable_unref(m->save_timer);
        addr_close(m);
        conntrack_close(m);
        announce_close(m);
        if (m->nft)
                nft_ctx_free(m->nft);
        podmap_done(&m->pods);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

static int service_get_or_add(Manager *m, const char *key, usec_t deadline, Service **ret)
{
        Service *s = manager_find_service(m, key);
        int r;

        if (!s) {
                r = manager_add_service(m, key, &s);
                if (r < 0)
                        return r;
                s->deadline = deadline;
        }
        s->deadline = MIN(s->deadline, deadline);
        *ret = s;
        return 0;
}

/* Reads what a previous kvnetd left: our addresses and our table. Nothing
 * is changed here; the grace period decides. */
static int manager_adopt(Manager *m)
{
        _cleanup_free_ AddrInfo *addrs = NULL;
        StateEntry *entries = NULL;
        NftTableInfo t = {};
        size_t n_addrs = 0, n_entries = 0;
        usec_t grace = now_usec() + m->config->grace_usec;
        bool adopted = false;
        int r;

        r = state_load(m->config, &entries, &n_entries);
        if (r < 0)
                return r;
        r = addr_list_vips(m, &addrs, &n_addrs);
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < n_addrs; i++) {
                const char *key = UNOWNED_KEY;
                usec_t deadline = grace;
                Service *s;
                Vip *v;

                for (size_t k = 0; k < n_entries; k++)
                        if (ip_addr_equal(&entries[k].addr, &addrs[i].addr) &&
                            streq(entries[k].ifname, addrs[i].ifname)) {
                                key = entries[k].key;
                                deadline = MIN(grace, entries[k].deadline);
                        }
                if (manager_find_vip(m, &addrs[i].addr))
                        continue; /* the same address on two interfaces: keep the first */
                r = service_get_or_add(m, key, deadline, &s);
                if (r < 0)
                        goto finish;
                if (s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE)
                        continue;
                v = calloc(1, sizeof(*v));
                if (!v) {
                        r = -ENOMEM;
                        goto finish;
                }
                *v = (Vip){.addr = addrs[i].addr, .service = s, .adopted = true};
                memcpy(v->ifname, addrs[i].ifname, sizeof(v->ifname));
                s->vips[s->n_vips++] = v;
                m->n_vips++;
                adopted = true;
                log_info("adopted VIP %s on %s (%s) until claimed", ip_addr_to_string(&v->addr, (char[64]){}),
                         v->ifname, s->key);
        }

        r = nft_read_table(m->nft, m->config->table, &t);
        if (r < 0) {
                log_error_errno(r, "cannot read table inet %s: %m", m->config->table);
                goto finish;
        }
        if (t.exists && !t.skeleton_ok) {
                _cleanup_free_ char *cmd = NULL;
                log_warning("table inet %s is not as kvnetd makes it: recreating it", m->config->table);
                if (asprintf(&cmd, "delete table inet %s\n", m->config->table) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                (void)nft_apply(m->nft, cmd, NULL);
                nft_table_info_done(&t);
        }
        if (!t.exists || !t.skeleton_ok) {
                _cleanup_free_ char *batch = NULL, *err = NULL;
                size_t bsize = 0;
                FILE *f = open_memstream(&batch, &bsize);
                if (!f) {
                        r = -ENOMEM;
                        goto finish;
                }
                nft_batch_skeleton(f, m->config->table);
                (void)fclose(f);
                r = nft_apply(m->nft, batch, &err);
                if (r < 0) {
                        log_error("cannot create table inet %s: %s", m->config->table, err ? err : "");
                        goto finish;
                }
        }
        for (size_t i = 0; i < t.n_chains; i++) {
                NftChainInfo *c = &t.chains[i];
                Service *s;

                if (!c->key) {
                        /* Not identifiable: remove it with its pods now. */
                        _cleanup_free_ char *batch = NULL;
                        size_t bsize = 0;
                        FILE *f = open_memstream(&batch, &bsize);
                        if (!f)
                                continue;
                        nft_batch_pods(f, m->config->table, c->pods, c->n_pods, NULL);
                        nft_batch_remove_service(f, m->config->table, c->chain);
                        (void)fclose(f);
                        log_warning("removing chain %s: not one kvnetd made", c->chain);
                        (void)nft_apply(m->nft, batch, NULL);
                        continue;
                }
                r = service_get_or_add(m, c->key, grace, &s);
                if (r < 0)
                        goto finish;
                s->has_chain = true;
                s->fingerprint = c->fingerprint;
                s->pods = TAKE_PTR(c->pods);
                s->n_pods = c->n_pods;
                for (size_t k = 0; k < s->n_pods; k++)
                        (void)podmap_put(&m->pods, &s->pods[k], s);
                adopted = true;
                log_info("adopted egress chain of %s with %zu pods until replayed", s->key, s->n_pods);
        }
        m->grace_end = adopted ? grace : 0;
        r = 0;
finish:
        nft_table_info_done(&t);
        state_entries_free(entries, n_entries);
        return r;
}

int manager_start(Manager *m)
{
        int r;

        r = manager_adopt(m);
        if (r < 0)
                return r;
        if (m->config->flush_and_exit) {
                while (m->services) {
                        r = manager_remove_service(m, m->services);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        manager_update_fence(m);
        r = sd_event_add_time_relative(m->event, &m->reconcile_timer, CLOCK_MONOTONIC, m->config->reconcile_usec,
                                       0, on_reconcile_timer, m);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(m->reconcile_timer, SD_EVENT_ON);
        return 0;
}

void manager_stop(Manager *m)
{
        int r;

        m->bus = bus_server_free(m->bus);
        if (!m->config->clean_on_stop) {
                /* Leave VIPs and rules in place: a restart adopts them and
                 * nothing flaps. The state file keeps each grant's deadline,
                 * which the next start honours. */
                r = state_save(m);
                if (r < 0)
                        log_warning_errno(r, "cannot write the state file: %m");
                return;
        }
        log_info("--clean-on-stop: removing every VIP and rule");
        while (m->services) {
                r = manager_remove_service(m, m->services);
                if (r < 0) {
                        log_error_errno(r, "clean-up incomplete: %m");
                        break;
                }
        }
        {
                _cleanup_free_ char *cmd = NULL;
                if (asprintf(&cmd, "delete table inet %s\n", m->config->table) >= 0)
                        (void)nft_apply(m->nft, cmd, NULL);
        }
        (void)state_save(m);
}
