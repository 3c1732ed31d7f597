/* SPDX-License-Identifier: Apache-2.0 */
/* The Manager: the kernel transactions that make the kernel match the
 * record (service.c), the fence and the timers. Handlers (bus.c) call in
 * here only after every field has been validated. Each change prepares
 * everything it needs first (the diff, memory), then runs one kernel
 * transaction, then brings the record in line, which cannot fail: a failed
 * change leaves neither the kernel nor the record changed. */
#include "manager.h"

#include <inttypes.h>
#include <libmnl/libmnl.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "addr.h"
#include "announce.h"
#include "array.h"
#include "ctworker.h"
#include "dad.h"
#include "daemon.h"
#include "egress-batch.h"
#include "kvnetd-bus.h"
#include "bus.h"
#include "catalog.h"
#include "log.h"
#include "nft.h"
#include "state.h"
#include "validate.h"

static void service_maybe_free(Manager *m, Service *s)
{
        if (s->n_vips == 0 && !service_has_egress(s))
                service_free(m, s);
}

/* A grant in the journal, O(1) (state.h). False if that failed: the
 * caller then rewrites the whole file once the record holds the grant. */
static bool record_grant(Manager *m, const Service *s, const Vip *v, usec_t deadline)
{
        int r = state_append(m, s->key, v, deadline);

        if (r < 0)
                log_debug_errno(r, "cannot append to the state journal, rewriting the state file: %m");
        return r >= 0;
}

int manager_grant_vip(Manager *m, Service *s, const IpAddr *a, const char *ifname, usec_t deadline)
{
        Vip *v = manager_find_vip(m, a);
        bool journaled = true;
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
                        /* old may be freed: nothing of it stays queued. */
                        manager_egress_flush(m);
                        service_detach_vip(m, v, false);
                        service_maybe_free(m, old);
                        service_attach_vip(m, s, v, false);
                        journaled = record_grant(m, s, v, deadline);
                }
                /* Claimed as it is: no kernel change, so a replay after a
                 * restart does not flap the address. */
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
                /* Recorded before it exists: a crash at any point after
                 * leaves the files naming the VIP's owner and deadline. */
                journaled = record_grant(m, s, v, deadline);
                r = addr_add(m, v);
                if (r < 0) {
                        free(v);
                        return log_warning_errno(r, "binding %s on %s failed: %m",
                                                 ip_addr_to_string(a, (char[INET6_ADDRSTRLEN]){}), ifname);
                }
                /* Until its RTM_NEWADDR says otherwise (addr.c): DAD runs
                 * unless turned off, here or on the interface. */
                v->tentative = a->family == AF_INET6 && !m->config->ipv6_nodad;
                service_attach_vip(m, s, v, true);
                log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_VIP_BOUND,
                          LOG_OBJECT(.service = s->key,
                                     .vip = ip_addr_to_string(a, (char[INET6_ADDRSTRLEN]){})),
                          "bound VIP %s on %s for %s", ip_addr_to_string(a, (char[INET6_ADDRSTRLEN]){}),
                          ifname, s->key);
                announce_start(m, v);
        }
        service_set_deadline(m, s, deadline);
        s->claimed = true;
        manager_update_fence(m);
        /* The journal holds the grant already; the snapshot follows. */
        manager_schedule_save(m, !journaled);
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

        manager_egress_flush(m); /* a queued SetEgress may SNAT to v */

        /* Egress that SNATs to this VIP goes first: never a rule whose
         * source address this node does not hold. An adopted chain's policy
         * is unknown, so it goes too. */
        if (service_has_egress(s) && (!s->policy || policy_uses(s->policy, &v->addr))) {
                r = manager_set_egress(m, s, NULL, NULL);
                if (r < 0)
                        return r;
        }
        r = addr_del(m, v);
        if (r < 0)
                return log_warning_errno(r, "removing VIP %s from %s failed: %m",
                                         ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), v->ifname);
        log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_VIP_RELEASED,
                  LOG_OBJECT(.service = s->key,
                             .vip = ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){})),
                  "released VIP %s on %s of %s", ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}),
                  v->ifname, s->key);
        service_detach_vip(m, v, true);
        vip_dad_done(v, -ENOENT, "address: released before duplicate-address detection ended");
        free(v);
        service_maybe_free(m, s);
        /* A file that still names a released VIP changes nothing: at
         * start only addresses found on the node are looked up in it. */
        manager_schedule_save(m, false);
        manager_update_fence(m);
        manager_update_status(m);
        return 0;
}

int manager_set_egress(Manager *m, Service *s, EgressPolicy *policy, char **ret_error)
{
        /* After whatever is queued, in a transaction of its own. */
        return egress_apply_now(m, s, policy, ret_error);
}

int manager_remove_service(Manager *m, Service *s)
{
        int r;

        manager_egress_flush(m); /* s may have a change queued */

        if (service_has_egress(s)) {
                r = manager_set_egress(m, s, NULL, NULL);
                if (r < 0) {
                        /* Someone else's nft command (the table deleted,
                         * the ruleset flushed) makes the removal fail,
                         * and with it the VIP's: rebuild the table from
                         * the record, then remove again. A VIP kept here
                         * outlives its grant, or its lease once kvpd lets
                         * it go. */
                        log_notice("%s: removing its egress failed: %s; rebuilding table inet %s first",
                                   s->key, strerror(-r), m->config->table);
                        if (manager_reconcile_table(m) >= 0)
                                r = manager_set_egress(m, s, NULL, NULL);
                }
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

/* --- conntrack: handed to the worker -------------------------------------- */

/* At most this long on exit for what is still queued (a whole dump of 10^6
 * entries takes 1-3 s), so that flows of changed pods do not keep their old
 * NAT across a restart; then kvnetd exits anyway, well within the unit's
 * TimeoutStopSec=15s after --clean-on-stop's removals. */
#define CONNTRACK_FINISH_USEC (5 * USEC_PER_SEC)

static void conntrack_feed(Manager *m)
{
        if (m->ct_pending.n > 0 && m->ct_worker)
                (void)ct_worker_take(m->ct_worker, &m->ct_pending);
}

static void on_conntrack_done(CtWorker *w, uint64_t deleted, int error, void *userdata)
{
        Manager *m = userdata;

        (void)w;
        m->ct_deleted += deleted;
        if (error < 0)
                log_warning_errno(error, "deleting conntrack entries of changed pods failed: %m");
        else if (deleted > 0)
                log_debug("deleted %" PRIu64 " conntrack entries", deleted);
        conntrack_feed(m);
}

void manager_queue_conntrack(Manager *m, const IpAddr *addrs, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (podmap_put(&m->ct_pending, &addrs[i], (void *)1) < 0) {
                        log_warning("out of memory: the conntrack entries of %zu pods stay", n - i);
                        break;
                }
        conntrack_feed(m);
}

size_t manager_conntrack_pending(Manager *m)
{
        return m->ct_pending.n + (m->ct_worker ? ct_worker_pending(m->ct_worker) : 0);
}

/* On exit: what is queued is done (within CONNTRACK_FINISH_USEC). */
static void conntrack_finish(Manager *m)
{
        size_t left;

        if (!m->ct_worker)
                return;
        left = ct_worker_finish(m->ct_worker, &m->ct_pending, CONNTRACK_FINISH_USEC);
        if (left > 0)
                log_warning("exiting with the conntrack entries of %zu pods not deleted", left);
}

/* --- the fence ------------------------------------------------------------- */

int manager_add_connection(Manager *m, sd_bus *bus)
{
        /* Drop the ones that closed. */
        for (size_t i = 0; i < m->n_conns;)
                if (!sd_bus_is_open(m->conns[i])) {
                        sd_bus_unref(m->conns[i]);
                        m->conns[i] = m->conns[--m->n_conns];
                } else
                        i++;
        if (ARRAY_RESERVE(m->conns, m->cap_conns, m->n_conns + 1) < 0)
                return -ENOMEM;
        m->conns[m->n_conns++] = sd_bus_ref(bus);
        return 0;
}

/* Serves every request already received, so that no renewal that arrived
 * before a deadline loses to the fence (kvnetd may have been busy). */
static void drain_connections(Manager *m)
{
        for (size_t i = 0; i < m->n_conns; i++)
                for (unsigned k = 0; k < 100000 && sd_bus_is_open(m->conns[i]); k++)
                        if (sd_bus_process(m->conns[i], NULL) <= 0)
                                break;
}

/* deadline: the grant's deadline passed (else the grace period ended with
 * nobody claiming s). */
static void fence_service(Manager *m, Service *s, bool deadline)
{
        _cleanup_free_ char *key = strdup(s->key);
        bool claimed = s->claimed;
        int r;

        m->n_fences++;
        for (size_t i = 0; i < s->n_vips; i++)
                log_event(
                        LOG_NOTICE, 0, KVEGRESS_MESSAGE_VIP_FENCED,
                        LOG_OBJECT(.service = s->key,
                                   .vip = ip_addr_to_string(&s->vips[i]->addr, (char[INET6_ADDRSTRLEN]){})),
                        "%s: fencing VIP %s: %s", s->key,
                        ip_addr_to_string(&s->vips[i]->addr, (char[INET6_ADDRSTRLEN]){}),
                        !deadline ? "not claimed again in the grace period after a restart"
                        : claimed ? "its grant expired without renewal"
                                  : "its grant deadline, saved before the restart, passed before a client "
                                    "claimed it again");
        if (s->n_vips == 0)
                log_event(LOG_NOTICE, 0, KVEGRESS_MESSAGE_VIP_FENCED, LOG_OBJECT(.service = s->key),
                          "%s %s: removing its egress", s->key,
                          !deadline ? "was not claimed in the grace period"
                          : claimed ? "grant expired without renewal"
                                    : "grant deadline (saved before the restart) passed before it was "
                                      "claimed again");
        r = manager_remove_service(m, s);
        if (r < 0) {
                /* Try again soon; the VIP must not outlive its grant. */
                log_error_errno(r, "fencing %s failed, retrying: %m", key ? key : "?");
                service_set_deadline(m, s, now_usec() + USEC_PER_SEC);
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
                        fence_service(m, s, false);
                        continue;
                }
                if (service_has_egress(s) && !s->policy) {
                        (void)manager_set_egress(m, s, NULL, NULL);
                        if (s->n_vips == 0 && !service_has_egress(s)) {
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
        usec_t now;
        Service *s;

        (void)source;
        (void)usec;
        drain_connections(m);
        /* What those requests queued goes in before anyone is fenced. */
        manager_egress_flush(m);
        now = now_usec();
        if (m->grace_end != 0 && now >= m->grace_end)
                grace_end(m);
        /* Earliest first; a fence that fails moves its deadline on. */
        for (unsigned guard = 0; (s = service_earliest(m)) && s->deadline <= now && guard < 1000000; guard++)
                fence_service(m, s, true);
        manager_update_fence(m);
        return 0;
}

void manager_update_fence(Manager *m)
{
        Service *first = service_earliest(m);
        usec_t earliest = m->grace_end ? m->grace_end : UINT64_MAX;
        int r;

        if (first)
                earliest = MIN(earliest, first->deadline);
        if (!m->fence_timer) {
                r = sd_event_add_time(m->event, &m->fence_timer, CLOCK_MONOTONIC, UINT64_MAX, 0,
                                      on_fence_timer, m);
                if (r < 0) {
                        log_error_errno(r, "cannot create the fence timer: %m");
                        return;
                }
                /* Fencing comes before serving new requests; it drains
                 * what is already received first (drain_connections). */
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

        /* A crash must never forget who owns a VIP: a new one is in the
         * journal before it is bound (record_grant()), so the snapshot can
         * wait. Renewals and releases are coalesced too: a stale snapshot
         * only holds earlier deadlines, which errs on the safe side, or
         * names a released VIP, which is no longer on the node. "now" is
         * for when the journal could not be written. */
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

static int on_reconcile_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
        Manager *m = userdata;

        (void)addr_reconcile(m);
        (void)manager_reconcile_table(m);
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
        m->journal_fd = -EBADF;
        m->max_services = config->max_services ? config->max_services : KVNETD_MAX_SERVICES;
        m->max_vips = config->max_vips ? config->max_vips : KVNETD_MAX_VIPS;
        m->max_pods_total = config->max_pods ? config->max_pods : KVNETD_MAX_PODS_TOTAL;
        r = daemon_event_new(&m->event);
        if (r < 0)
                return r;
        m->nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!m->nft)
                return -ENOMEM;
        if (nft_ctx_buffer_error(m->nft) < 0)
                return -ENOMEM;
        r = nft_socket_open(&m->nft_nl);
        if (r < 0)
                return log_error_errno(r, "cannot open nftables netlink: %m");
        r = addr_open(m);
        if (r < 0)
                return log_error_errno(r, "cannot open rtnetlink: %m");
        r = ct_worker_new(m->event, on_conntrack_done, m, &m->ct_worker);
        if (r < 0)
                return log_error_errno(r, "cannot start the conntrack worker (ctnetlink): %m");
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
        for (size_t i = 0; i < m->n_conns; i++)
                sd_bus_unref(m->conns[i]);
        free(m->conns);
        service_record_done(m);
        m->refusals = refusal_log_free(m->refusals);
        loop_lag_stop(&m->metrics.loop_lag);
        sd_event_source_disable_unref(m->fence_timer);
        sd_event_source_disable_unref(m->announce_timer);
        sd_event_source_disable_unref(m->reconcile_timer);
        sd_event_source_disable_unref(m->save_timer);
        m->ct_worker = ct_worker_free(m->ct_worker);
        podmap_done(&m->ct_pending);
        egress_queue_done(m);
        state_close(m);
        addr_close(m);
        announce_close(m);
        if (m->nft)
                nft_ctx_free(m->nft);
        nft_socket_close(m->nft_nl);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

static int delete_table(Manager *m)
{
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        int r;

        r = nft_batch_new(true, NULL, &b);
        if (r < 0)
                return r;
        nft_batch_skeleton(b, m->config->table); /* so that the delete cannot fail */
        nft_batch_delete_table(b, m->config->table);
        return manager_nft_commit(m, b, NULL);
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
                conntrack_finish(m);
                /* Nothing of ours stays (the package's removal relies on
                 * it): the table goes too, and the grant records. */
                r = delete_table(m);
                if (r < 0)
                        return log_error_errno(r, "cannot delete table inet %s: %m", m->config->table);
                return state_save(m);
        }
        manager_update_fence(m);
        r = sd_event_add_time_relative(m->event, &m->reconcile_timer, CLOCK_MONOTONIC,
                                       m->config->reconcile_usec, 0, on_reconcile_timer, m);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(m->reconcile_timer, SD_EVENT_ON);
        return 0;
}

void manager_stop(Manager *m)
{
        int r;

        /* Queued requests are committed; their answers may not reach
         * anyone any more, but the kernel and the record agree. */
        manager_egress_flush(m);
        m->bus = bus_server_free(m->bus);
        if (!m->config->clean_on_stop) {
                /* Leave VIPs and rules in place: a restart adopts them and
                 * nothing flaps. The state file keeps each grant's deadline,
                 * which the next start honours. The conntrack entries of
                 * pods already changed still go. */
                conntrack_finish(m);
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
        conntrack_finish(m);
        (void)delete_table(m);
        (void)state_save(m);
}
