/* SPDX-License-Identifier: Apache-2.0 */
/* SetEgress coalesced: one nft transaction per event-loop iteration
 * (egress-batch.h says why and what stays true). */
#include "egress-batch.h"

#include <stdio.h>

#include "array.h"
#include "bus.h"
#include "catalog.h"
#include "log.h"
#include "manager.h"
#include "nft.h"

struct EgressChange {
        Service *service;
        EgressPolicy *policy; /* NULL: remove the egress */
        EgressDiff diff;
        sd_bus_message *msg; /* answered after the commit; NULL for internal changes */
};

static void change_done(EgressChange *c)
{
        egress_policy_free(c->policy);
        egress_diff_done(&c->diff);
        sd_bus_message_unref(c->msg);
        *c = (EgressChange){};
}

/* What one transaction does to the classes: each class a change touches
 * holds, while it is composed, the number of services it will have
 * (planned); a class comes or goes only at the end (nft.h: the base chain
 * is rewritten then, and an emptied class removed after it). */
typedef struct ClassPlan {
        EgressClass **touched;
        size_t n, cap;
        size_t legacy_removed; /* legacy chains this transaction removes */
        bool dispatch;         /* the base chain's rules are rewritten */
        int error;
} ClassPlan;

static void plan_touch(ClassPlan *pl, EgressClass *c)
{
        if (!c || c->touched)
                return;
        if (ARRAY_RESERVE(pl->touched, pl->cap, pl->n + 1) < 0) {
                pl->error = -ENOMEM;
                return;
        }
        c->touched = true;
        c->planned = c->refs;
        pl->touched[pl->n++] = c;
}

/* The pods taken over from adopted leftovers leave their owners' elements. */
static void compose_stolen(Manager *m, NftBatch *b, const EgressDiff *d)
{
        const char *table = m->config->table;

        for (size_t i = 0; i < d->n_stolen; i++) {
                const Service *owner = podmap_get(&m->pods, &d->stolen[i]);

                if (!owner)
                        continue;
                if (owner->cls) {
                        nft_batch_class_pods(b, table, owner->cls->name, NULL, &d->stolen[i], 1, false);
                        nft_batch_vip_pods(b, table, NULL, NULL, NULL, &d->stolen[i], 1, false);
                } else if (owner->legacy)
                        nft_batch_legacy_pods(b, table, &d->stolen[i], 1);
        }
}

/* The change's part of a transaction. */
static void change_compose(Manager *m, NftBatch *b, ClassPlan *pl, const EgressChange *c)
{
        const char *table = m->config->table;
        const Service *s = c->service;
        const EgressDiff *d = &c->diff;
        const EgressPolicy *p = c->policy;
        EgressClass *old = s->cls, *cls = d->cls;

        if (p) {
                plan_touch(pl, cls);
                plan_touch(pl, old);
                if (pl->error < 0)
                        return;
                if (!cls->in_kernel && !cls->created) {
                        nft_batch_class(b, table, cls->name, p, false, 0);
                        cls->created = true;
                } else if (d->class_rewrite && cls->in_kernel && !cls->rewritten) {
                        nft_batch_class(b, table, cls->name, p, true, cls->sets);
                        cls->rewritten = true;
                }
                compose_stolen(m, b, d);
                if (d->class_change) {
                        if (old) {
                                nft_batch_class_pods(b, table, old->name, NULL, s->pods, s->n_pods, false);
                                old->planned--;
                        }
                        nft_batch_class_pods(b, table, cls->name, s->key, d->new_pods, d->n_new, true);
                        cls->planned++;
                } else {
                        nft_batch_class_pods(b, table, cls->name, NULL, d->removed, d->n_removed, false);
                        nft_batch_class_pods(b, table, cls->name, s->key, d->added, d->n_added, true);
                }
                if (d->vip_change) {
                        if (old)
                                nft_batch_vip_pods(b, table, NULL, NULL, NULL, s->pods, s->n_pods, false);
                        nft_batch_vip_pods(b, table, s->key, &p->vip4, &p->vip6, d->new_pods, d->n_new,
                                           true);
                } else {
                        nft_batch_vip_pods(b, table, NULL, NULL, NULL, d->removed, d->n_removed, false);
                        nft_batch_vip_pods(b, table, s->key, &p->vip4, &p->vip6, d->added, d->n_added, true);
                }
        } else if (old) {
                plan_touch(pl, old);
                if (pl->error < 0)
                        return;
                nft_batch_class_pods(b, table, old->name, NULL, s->pods, s->n_pods, false);
                nft_batch_vip_pods(b, table, NULL, NULL, NULL, s->pods, s->n_pods, false);
                old->planned--;
        }
        if (s->legacy && (!p || d->class_change)) {
                char chain[NFT_NAME_MAX];

                nft_legacy_chain_name(s->key, chain);
                nft_batch_remove_legacy(b, table, chain, s->pods, s->n_pods, s->legacy_sets);
                pl->legacy_removed++;
        }
}

/* After every change: classes that come or go, and the base chain. */
static void plan_compose_end(Manager *m, NftBatch *b, ClassPlan *pl)
{
        _cleanup_free_ const char **names = NULL;
        const char *table = m->config->table;
        bool legacy_gone = m->n_legacy > 0 && pl->legacy_removed == m->n_legacy;
        size_t n = 0;

        if (pl->error < 0)
                return;
        for (size_t i = 0; i < pl->n; i++) {
                EgressClass *c = pl->touched[i];
                if (c->created || (c->in_kernel && c->planned == 0))
                        pl->dispatch = true;
        }
        if (!pl->dispatch && !legacy_gone)
                return;
        names = calloc(MAX(m->n_classes, (size_t)1), sizeof(*names));
        if (!names) {
                pl->error = -ENOMEM;
                return;
        }
        for (EgressClass *c = m->classes; c; c = c->next)
                if (c->touched ? (c->in_kernel || c->created) && c->planned > 0 : c->in_kernel)
                        names[n++] = c->name;
        nft_batch_dispatch(b, table, m->n_legacy > pl->legacy_removed, names, n);
        for (size_t i = 0; i < pl->n; i++) {
                EgressClass *c = pl->touched[i];
                if (c->in_kernel && c->planned == 0)
                        nft_batch_remove_class(b, table, c->name, c->sets);
        }
        if (legacy_gone)
                nft_batch_remove_legacy_maps(b, table);
}

/* After the commit (ok: it went in): the classes follow. The services
 * follow in change_finish(). */
static void plan_done(ClassPlan *pl, bool ok)
{
        for (size_t i = 0; i < pl->n; i++) {
                EgressClass *c = pl->touched[i];
                if (ok && c->created)
                        c->in_kernel = true;
                if (ok && c->planned == 0)
                        c->in_kernel = false;
                c->touched = c->created = c->rewritten = false;
        }
        free(pl->touched);
        *pl = (ClassPlan){};
}

static bool change_is_empty(const EgressChange *c)
{
        const EgressDiff *d = &c->diff;

        if (!c->policy)
                return !service_has_egress(c->service);
        return !d->rules_change && !d->class_rewrite && d->n_removed == 0 && d->n_stolen == 0 &&
               d->n_added == 0;
}

static int commit(Manager *m, NftBatch *b, char **ret_error)
{
        usec_t t = now_usec();
        int r;

        r = manager_nft_commit(m, b, ret_error);
        if (nft_batch_is_empty(b))
                return r;
        metric_histogram_observe(&m->metrics.nft_seconds, (double)(now_usec() - t) / USEC_PER_SEC);
        m->egress.transactions++;
        if (r < 0)
                m->metrics.nft_failed++;
        else
                m->metrics.nft_ok++;
        return r;
}

/* The journal's line for one applied change: the catalogue's MESSAGE_ID, the
 * Service and VIP, and one KVEGRESS_POD= per pod whose SNAT it added or
 * removed (a field repeated, as the journal allows), so `journalctl
 * KVEGRESS_POD=10.244.1.10` finds the changes of that pod. At most
 * LOG_PODS_MAX of them (the line says when there were more): the counts are
 * always in the message. Addresses only. */
#define LOG_PODS_MAX 8
static void log_change(const EgressChange *c)
{
        const Service *s = c->service;
        const EgressPolicy *p = c->policy;
        const EgressDiff *d = &c->diff;
        char service[KVEGRESS_FIELD_MAX],
                vip[sizeof("KVEGRESS_VIP=") + INET6_ADDRSTRLEN] = "",
                                              pods[LOG_PODS_MAX][sizeof("KVEGRESS_POD=") + INET6_ADDRSTRLEN];
        const char *fields[3 + LOG_PODS_MAX + 1];
        /* Removing the egress: every pod of the record is in d->removed. */
        size_t n = 0, named = 0;

        fields[n++] = p ? KVEGRESS_MESSAGE_EGRESS_APPLIED : KVEGRESS_MESSAGE_EGRESS_REMOVED;
        (void)snprintf(service, sizeof(service), "KVEGRESS_SERVICE=%s", s->key);
        fields[n++] = service;
        if (p) {
                char a[INET6_ADDRSTRLEN];
                (void)snprintf(vip, sizeof(vip), "KVEGRESS_VIP=%s",
                               ip_addr_to_string(p->vip4.family ? &p->vip4 : &p->vip6, a));
                fields[n++] = vip;
        }
        for (size_t i = 0; i < d->n_added + d->n_removed && named < LOG_PODS_MAX; i++, named++) {
                char a[INET6_ADDRSTRLEN];
                (void)snprintf(
                        pods[named], sizeof(pods[named]), "KVEGRESS_POD=%s",
                        ip_addr_to_string(i < d->n_added ? &d->added[i] : &d->removed[i - d->n_added], a));
                fields[n++] = pods[named];
        }
        fields[n] = NULL;
        log_struct(LOG_INFO, 0, fields, "egress of %s: %s%zu pods added, %zu removed%s", s->key,
                   !p                ? "removed, "
                   : d->rules_change ? "rules set, "
                                     : "",
                   d->n_added, d->n_removed,
                   d->n_added + d->n_removed > named
                           ? " (KVEGRESS_POD= names the first " STRINGIFY(LOG_PODS_MAX) ")"
                           : "");
}

/* Whether the record's pods, plus added and less freed (what the queue
 * does to the pod index), plus d's net change, stay within the node's pod
 * limit. A pod d takes over (stolen) is in the index already: it is counted
 * in d->n_added and does not grow it. Net, not gross: at the limit every
 * change that replaces a pod adds one and removes one, and counting only
 * the additions made each of them a transaction of its own. */
static bool pods_fit(const Manager *m, size_t added, size_t freed, const EgressDiff *d)
{
        return m->pods.n + added + d->n_added <= m->max_pods_total + freed + d->n_removed + d->n_stolen;
}

/* After the commit that carried c: on success the record follows (cannot
 * fail) and the conntrack entries of the changed pods are queued; then the
 * request is answered either way. */
static int change_finish(Manager *m, EgressChange *c, int r, const char *kerr)
{
        Service *s = c->service;
        EgressDiff *d = &c->diff;

        s->egress_queued = false;
        if (r < 0) {
                log_warning_errno(r, "egress transaction for %s failed, nothing changed", s->key);
                if (c->msg)
                        bus_reply_deferred(m, c->msg, r, kerr ? kerr : "egress transaction failed");
                return r;
        }
        if (!change_is_empty(c))
                log_change(c);
        manager_queue_conntrack(m, d->flush, d->n_flush);
        service_egress_apply(m, s, TAKE_PTR(c->policy), d);
        if (c->msg)
                bus_reply_deferred(m, c->msg, 0, NULL);
        return 0;
}

/* One change in a transaction of its own; the kernel's reason for a
 * failure goes to *ret_error if given, else into the answer. */
static int change_run(Manager *m, EgressChange *c, char **ret_error)
{
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        _cleanup_free_ char *kerr = NULL;
        int r;

        ClassPlan pl = {};

        r = nft_batch_new(true, NULL, &b);
        if (r >= 0) {
                change_compose(m, b, &pl, c);
                plan_compose_end(m, b, &pl);
                r = pl.error < 0 ? pl.error : commit(m, b, &kerr);
        }
        plan_done(&pl, r >= 0);
        r = change_finish(m, c, r, kerr);
        if (ret_error)
                *ret_error = TAKE_PTR(kerr);
        return r;
}

/* One change of a refused batch on its own. The queue admitted it with
 * the pods the changes before it free (pods_fit()): if one of those failed,
 * its pods are still mapped, and this one may no longer fit. */
static int fallback_run(Manager *m, EgressChange *c)
{
        _cleanup_free_ char *msg = NULL;

        if (pods_fit(m, 0, 0, &c->diff))
                return change_run(m, c, NULL);
        (void)asprintf(&msg, "pods: %zu pod mappings on this node would pass the limit of %zu",
                       m->pods.n + c->diff.n_added - c->diff.n_removed - c->diff.n_stolen,
                       m->max_pods_total);
        return change_finish(m, c, -E2BIG, msg);
}

static void queue_reset(Manager *m)
{
        EgressQueue *q = &m->egress;

        for (size_t i = 0; i < q->n; i++)
                change_done(&q->changes[i]);
        q->n = 0;
        egress_classes_gc(m);
        q->pods_added = q->pods_freed = 0;
        podmap_done(&q->pods);
        if (q->source)
                (void)sd_event_source_set_enabled(q->source, SD_EVENT_OFF);
}

void manager_egress_flush(Manager *m)
{
        EgressQueue *q = &m->egress;
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        _cleanup_free_ char *kerr = NULL;
        ClassPlan pl = {};
        int r;

        if (q->n == 0)
                return;
        if (q->n == 1) {
                (void)change_run(m, &q->changes[0], NULL);
                queue_reset(m);
                manager_update_status(m);
                return;
        }
        r = nft_batch_new(true, NULL, &b);
        if (r >= 0) {
                for (size_t i = 0; i < q->n; i++)
                        change_compose(m, b, &pl, &q->changes[i]);
                plan_compose_end(m, b, &pl);
                r = pl.error < 0 ? pl.error : commit(m, b, &kerr);
        }
        plan_done(&pl, r >= 0);
        if (r >= 0) {
                log_debug("egress: %zu changes in one transaction (%zu netlink messages)", q->n,
                          nft_batch_messages(b));
                for (size_t i = 0; i < q->n; i++)
                        (void)change_finish(m, &q->changes[i], 0, NULL);
        } else {
                /* Which one failed? Each on its own: the others still go
                 * in, the bad one is refused with its own error. */
                log_notice("egress: a transaction of %zu changes failed (%s); committing them one by one",
                           q->n, kerr ? kerr : "no detail");
                q->fallbacks++;
                for (size_t i = 0; i < q->n; i++)
                        (void)fallback_run(m, &q->changes[i]);
        }
        queue_reset(m);
        manager_update_status(m);
}

static int on_flush(sd_event_source *source, void *userdata)
{
        (void)source;
        manager_egress_flush(userdata);
        return 0;
}

/* Calls fn for each pod the diff touches (maps anew, removes or takes
 * over) until one returns non-zero, and returns that. */
static int foreach_touched_pod(EgressQueue *q, const EgressDiff *d,
                               int (*fn)(EgressQueue *q, const IpAddr *pod))
{
        const struct {
                const IpAddr *v;
                size_t n;
        } lists[] = {{d->new_pods, d->n_new}, {d->removed, d->n_removed}, {d->stolen, d->n_stolen}};

        for (size_t l = 0; l < ELEMENTSOF(lists); l++)
                for (size_t i = 0; i < lists[l].n; i++) {
                        int r = fn(q, &lists[l].v[i]);
                        if (r != 0)
                                return r;
                }
        return 0;
}

static int pod_queued(EgressQueue *q, const IpAddr *pod)
{
        return podmap_get(&q->pods, pod) ? 1 : 0;
}

static int pod_remember(EgressQueue *q, const IpAddr *pod)
{
        return podmap_put(&q->pods, pod, (void *)1) < 0 ? -ENOMEM : 0;
}

/* Whether the diff touches a pod some queued change touches. */
static bool overlaps(EgressQueue *q, const EgressDiff *d)
{
        return q->pods.n > 0 && foreach_touched_pod(q, d, pod_queued) > 0;
}

static int remember_pods(EgressQueue *q, const EgressDiff *d)
{
        return foreach_touched_pod(q, d, pod_remember);
}

/* The diff of policy against s's record, in c. */
static int diff(Manager *m, Service *s, EgressPolicy *p, EgressChange *c, char **ret_error)
{
        return service_egress_diff(m, s, p, &c->diff, ret_error);
}

int egress_queue_set(Manager *m, Service *s, EgressPolicy *policy, sd_bus_message *msg, char **ret_error)
{
        _cleanup_(egress_policy_freep) EgressPolicy *p = policy;
        EgressQueue *q = &m->egress;
        EgressChange c = {.service = s};
        int r;

        /* One queued change per service, a bounded batch. */
        if (s->egress_queued || q->n >= EGRESS_BATCH_MAX)
                manager_egress_flush(m);
        r = diff(m, s, p, &c, ret_error);
        if (r >= 0 && q->n > 0 &&
            (overlaps(q, &c.diff) || !pods_fit(m, q->pods_added, q->pods_freed, &c.diff))) {
                /* Its diff (a pod's owner, the pod limit) depends on what is
                 * queued: commit that, then diff again against the record. */
                egress_diff_done(&c.diff);
                if (ret_error)
                        *ret_error = mfree(*ret_error);
                manager_egress_flush(m);
                r = diff(m, s, p, &c, ret_error);
        }
        if (r < 0)
                return r;
        /* The record's pod index must take every queued addition without
         * growing after the commit. */
        if (podmap_reserve(&m->pods, q->pods_added + c.diff.n_added) < 0 || remember_pods(q, &c.diff) < 0 ||
            ARRAY_RESERVE(q->changes, q->cap, q->n + 1) < 0) {
                egress_diff_done(&c.diff);
                return -ENOMEM;
        }
        if (!q->source) {
                r = sd_event_add_defer(m->event, &q->source, on_flush, m);
                if (r < 0) {
                        egress_diff_done(&c.diff);
                        return r;
                }
                /* After every request already received (the bus is at
                 * NORMAL priority), before the conntrack pass (IDLE). */
                (void)sd_event_source_set_priority(q->source, SD_EVENT_PRIORITY_IDLE - 1);
        }
        c.policy = TAKE_PTR(p);
        c.msg = sd_bus_message_ref(msg);
        q->pods_added += c.diff.n_added;
        q->pods_freed += c.diff.n_removed + c.diff.n_stolen;
        q->changes[q->n++] = c;
        s->egress_queued = true;
        (void)sd_event_source_set_enabled(q->source, SD_EVENT_ONESHOT);
        return 0;
}

int egress_apply_now(Manager *m, Service *s, EgressPolicy *policy, char **ret_error)
{
        EgressChange c = {.service = s, .policy = policy};
        int r;

        manager_egress_flush(m);
        r = diff(m, s, c.policy, &c, ret_error);
        if (r < 0) {
                change_done(&c);
                return r;
        }
        r = change_run(m, &c, ret_error);
        manager_update_status(m);
        change_done(&c);
        egress_classes_gc(m);
        return r;
}

void egress_queue_done(Manager *m)
{
        queue_reset(m);
        free(m->egress.changes);
        m->egress.changes = NULL;
        m->egress.cap = 0;
        m->egress.source = sd_event_source_disable_unref(m->egress.source);
}
