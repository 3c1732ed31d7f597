/* SPDX-License-Identifier: Apache-2.0 */
/* From "something changed" to the desired state of each affected Service.
 *
 * Changes only mark a Service dirty; one short timer on the event loop then
 * recomputes every dirty Service from the informer caches. A burst of
 * events (a rollout touching a slice many times, a relist) thus costs one
 * computation per Service, and the computation always sees the newest
 * objects, never an event's partial view.
 *
 * The dirty Services wait in a queue; one round of the timer works on them
 * for at most RECONCILE_SLICE_USEC, then yields to the event loop (renewals,
 * replies) and carries on in the next iteration. Work is per changed
 * Service: its cached object and its EndpointSlices are hash lookups. */
#include <stdio.h>
#include <time.h>

#include "array.h"
#include "cache.h"
#include "catalog.h"
#include "clock.h"
#include "log.h"
#include "reconcile.h"
#include "service.h"
#include "status.h"

static const char *strempty(const char *s)
{
        return s ? s : "";
}

/* The longest stretch one round of reconciliation keeps the loop. */
#define RECONCILE_SLICE_USEC (5 * USEC_PER_MSEC)

static int on_debounce(sd_event_source *es, uint64_t usec, void *userdata);

static void arm_after(Manager *m, uint64_t delay)
{
        int r;

        if (!m->debounce_source) {
                r = sd_event_add_time_relative(m->event, &m->debounce_source, CLOCK_MONOTONIC, delay, 0,
                                               on_debounce, m);
                if (r < 0) {
                        log_error_errno(r, "cannot schedule a reconciliation: %m");
                        return;
                }
                return;
        }
        if (delay > 0 && sd_event_source_get_enabled(m->debounce_source, NULL) > 0)
                return; /* already pending: the change joins this round */
        r = sd_event_source_set_time_relative(m->debounce_source, delay);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->debounce_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "cannot schedule a reconciliation: %m");
}

static void arm(Manager *m)
{
        arm_after(m, m->config.debounce_usec);
}

static void enqueue(Manager *m, Service *s)
{
        s->dirty = true;
        if (s->queued)
                return;
        s->queued = true;
        s->dirty_next = NULL;
        s->dirty_prev = m->dirty_tail;
        if (m->dirty_tail)
                m->dirty_tail->dirty_next = s;
        else
                m->dirty_head = s;
        m->dirty_tail = s;
}

static void unqueue(Service *s)
{
        Manager *m = s->manager;

        s->dirty = false;
        if (!s->queued)
                return;
        if (s->dirty_prev)
                s->dirty_prev->dirty_next = s->dirty_next;
        else
                m->dirty_head = s->dirty_next;
        if (s->dirty_next)
                s->dirty_next->dirty_prev = s->dirty_prev;
        else
                m->dirty_tail = s->dirty_prev;
        s->dirty_next = s->dirty_prev = NULL;
        s->queued = false;
}

void reconcile_mark(Manager *m, const char *namespace, const char *name)
{
        Service *s;

        if (isempty(namespace) || isempty(name) || m->stopping)
                return;
        if (service_ensure(m, namespace, name, &s) < 0) {
                log_error("out of memory tracking %s/%s", namespace, name);
                return;
        }
        enqueue(m, s);
        if (s->change_usec == 0)
                (void)sd_event_now(m->event, CLOCK_MONOTONIC, &s->change_usec);
        arm(m);
}

void reconcile_mark_if_relevant(Manager *m, const char *namespace, const char *name)
{
        _cleanup_free_ char *key = NULL;
        ServiceItem *it;

        if (isempty(namespace) || isempty(name) || m->stopping)
                return;
        if (asprintf(&key, "%s/%s", namespace, name) < 0)
                return;
        it = cache_service_item(m, namespace, name);
        if (service_get(m, key) || (it && it != &service_item_stub))
                reconcile_mark(m, namespace, name);
}

void reconcile_mark_all(Manager *m)
{
        if (m->stopping)
                return;
        for (size_t i = 0; i < m->n_services; i++)
                enqueue(m, m->services[i]);
        arm(m);
}

static int mark_cached(const char *key, void *item, void *userdata)
{
        Manager *m = userdata;
        const char *slash = strchr(key, '/');
        _cleanup_free_ char *ns = NULL;

        if (!item || item == &service_item_stub || !slash)
                return 0;
        ns = strndup(key, (size_t)(slash - key));
        if (ns)
                reconcile_mark(m, ns, slash + 1);
        return 0;
}

void reconcile_mark_cached(Manager *m)
{
        if (m->informers[WATCH_SERVICES])
                (void)kube_informer_foreach_item(m->informers[WATCH_SERVICES], mark_cached, m);
        reconcile_mark_all(m);
}

void reconcile_mark_cidrs(Manager *m)
{
        m->cidrs_dirty = true;
        arm(m);
}

/* Borrowed pointers to an informer's cached items. */
typedef struct Collected {
        const void **v;
        size_t n, allocated;
        int error;
} Collected;

static int collect_one(const char *key, void *item, void *userdata)
{
        Collected *c = userdata;
        (void)key;

        if (!item)
                return 0; /* did not parse */
        if (ARRAY_RESERVE(c->v, c->allocated, c->n + 1) < 0) {
                c->error = -ENOMEM;
                return -ENOMEM;
        }
        c->v[c->n++] = item;
        return 0;
}

static int reconcile_cidrs(Manager *m)
{
        Collected nodes = {}, scs = {}, kcms = {};
        const KubeConfigMap *kubeadm = NULL;
        ClusterCidrs c = {};
        int r;

        if (m->informers[WATCH_NODES])
                (void)kube_informer_foreach_item(m->informers[WATCH_NODES], collect_one, &nodes);
        if (m->informers[WATCH_SERVICECIDRS])
                (void)kube_informer_foreach_item(m->informers[WATCH_SERVICECIDRS], collect_one, &scs);
        if (m->informers[WATCH_CONTROLLER_MANAGERS])
                (void)kube_informer_foreach_item(m->informers[WATCH_CONTROLLER_MANAGERS], collect_one,
                                                 &kcms);
        if (m->informers[WATCH_KUBEADM_CONFIG])
                kubeadm = kube_informer_get_item(m->informers[WATCH_KUBEADM_CONFIG], "kube-system",
                                                 "kubeadm-config");
        r = nodes.error ?: scs.error ?: kcms.error;
        if (r >= 0) {
                ClusterCidrSources src = {
                        .env_pod = m->config.pod_cidrs,
                        .n_env_pod = m->config.n_pod_cidrs,
                        .env_service = m->config.service_cidrs,
                        .n_env_service = m->config.n_service_cidrs,
                        .service_cidrs = (const KubeServiceCIDR *const *)scs.v,
                        .n_service_cidrs = scs.n,
                        .nodes = (const KubeNode *const *)nodes.v,
                        .n_nodes = nodes.n,
                        .controller_managers = (const KubePod *const *)kcms.v,
                        .n_controller_managers = kcms.n,
                        .kubeadm_config = kubeadm,
                };
                r = cluster_cidrs_compute(&src, &c);
        }
        free(nodes.v);
        free(scs.v);
        free(kcms.v);
        if (r < 0) {
                bool was_valid = m->cidrs_valid;
                m->cidrs_valid = false;
                cluster_cidrs_done(&m->cidrs);
                if (was_valid)
                        reconcile_mark_all(m);
                return log_error_errno(r, "cannot determine the cluster networks (set egress_podcidr and "
                                          "egress_servicecidr): %m");
        }
        if (m->cidrs_valid && cluster_cidrs_equal(&c, &m->cidrs)) {
                cluster_cidrs_done(&c);
                return 0;
        }
        {
                char buf[IP_PREFIX_STRING_MAX];
                _cleanup_free_ char *pods = NULL, *svcs = NULL;
                size_t lp = 0, ls = 0;
                FILE *fp = open_memstream(&pods, &lp), *fs = open_memstream(&svcs, &ls);

                for (size_t i = 0; fp && i < c.n_pod; i++)
                        fprintf(fp, "%s%s", i ? "," : "", ip_prefix_to_string(&c.pod[i], buf));
                for (size_t i = 0; fs && i < c.n_service; i++)
                        fprintf(fs, "%s%s", i ? "," : "", ip_prefix_to_string(&c.service[i], buf));
                if (fp)
                        fclose(fp);
                if (fs)
                        fclose(fs);
                log_info("cluster networks never SNATed: pods %s, services %s%s", strempty(pods),
                         strempty(svcs),
                         c.defaulted ? " (some are defaults: nothing detected for that family; set "
                                       "egress_podcidr/egress_servicecidr if they are wrong)"
                                     : "");
        }
        cluster_cidrs_done(&m->cidrs);
        m->cidrs = c;
        m->cidrs_valid = true;
        reconcile_mark_all(m);
        return 0;
}

static int reconcile_service(Service *s)
{
        Manager *m = s->manager;
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        ServiceItem *it;
        const KubeService *svc = NULL;
        KubeService stub = {};
        int r;

        unqueue(s);
        it = cache_service_item(m, s->namespace, s->name);
        if (it == &service_item_stub) {
                /* Not an egress Service (any more): what the policy makes of
                 * one with no annotation, without keeping its object. */
                stub.meta.namespace = s->namespace;
                stub.meta.name = s->name;
                svc = &stub;
        } else if (it) {
                svc = it->service;
                if (!svc)
                        log_warning("%s: cannot read the Service, treating it as gone: %s", s->key,
                                    it->error ?: "out of memory");
        }
        if (svc) {
                SliceGroup *g = cache_slices(m, s->key);
                EgressInput in = {
                        .service = svc,
                        .cidrs = m->cidrs_valid ? &m->cidrs : NULL,
                        .node_name = m->config.node_name,
                        .default_ifname = m->config.service_interface,
                        .api_servers = m->config.api_servers,
                        .n_api_servers = m->config.n_api_servers,
                        .prev_active4 = s->has_prev_active4 ? &s->prev_active4 : NULL,
                        .prev_active6 = s->has_prev_active6 ? &s->prev_active6 : NULL,
                        .lb_class = &m->config.lb_class,
                };

                if (g) {
                        in.slices = (const KubeEndpointSlice *const *)g->slices;
                        in.n_slices = g->n;
                }
                r = egress_policy_compute(&in, &p);
                if (r < 0)
                        return log_error_errno(r, "%s: cannot compute the egress state: %m", s->key);
        }

        if (p && p->state == EGRESS_INVALID) {
                /* Logged on every node; reported as an Event by nodes that
                 * have a ready pod of the service (see egress_policy_compute),
                 * once per distinct error, even if the pod shows up later. */
                (void)service_error_set(s, "kvpd", p->error);
                if (!streq_ptr(s->last_error_logged, p->error)) {
                        log_event(
                                LOG_WARNING, 0, KVEGRESS_MESSAGE_INPUT_REJECTED,
                                LOG_OBJECT(.service = s->key, .daemon = "kvpd", .node = m->config.node_name),
                                "%s", p->error);
                        free(s->last_error_logged);
                        s->last_error_logged = strdup(p->error);
                }
                if (p->has_local_endpoint && !streq_ptr(s->last_error_event, p->error)) {
                        status_event(s, "Warning", "EgressInvalid", "%s", p->error);
                        free(s->last_error_event);
                        s->last_error_event = strdup(p->error);
                }
        } else if (s->last_error_logged) {
                service_error_clear(s, "kvpd");
                s->last_error_logged = mfree(s->last_error_logged);
                s->last_error_event = mfree(s->last_error_event);
                if (p && p->state != EGRESS_NONE)
                        log_info("%s: egress configuration is valid again", s->key);
        }
        if (p && p->warning && p->state == EGRESS_READY && !streq_ptr(s->last_warning_event, p->warning)) {
                log_warning("%s", p->warning);
                status_event(s, "Warning", "EgressWarning", "%s", p->warning);
                free(s->last_warning_event);
                s->last_warning_event = strdup(p->warning);
        }

        if (p) {
                s->has_prev_active4 = p->has_active4;
                s->prev_active4 = p->active4;
                s->has_prev_active6 = p->has_active6;
                s->prev_active6 = p->active6;
                log_debug("%s: %s, %zu VIPs, %zu local pods", s->key, egress_state_to_string(p->state),
                          p->n_vips, p->n_pods);
        }
        egress_policy_free(s->policy);
        s->policy = TAKE_PTR(p);

        m->reports->service_changed(s);
        return 0;
}

static int on_debounce(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        uint64_t start = now_usec();
        unsigned n = 0;
        (void)es;
        (void)usec;

        /* Before every watch has listed once, the picture is incomplete: a
         * missing Node would drop a pod CIDR from the exclusions, a missing
         * slice would look like "no local pod". Wait. */
        if (m->startup.phase == KVPD_PHASE_WAITING_FOR_SYNC || m->stopping)
                return 0;
        if (m->cidrs_dirty) {
                m->cidrs_dirty = false;
                (void)reconcile_cidrs(m);
        }
        while (m->dirty_head) {
                if (n > 0 && now_usec() - start >= RECONCILE_SLICE_USEC) {
                        /* The rest in the next round, after whatever else
                         * is waiting on the loop. */
                        log_debug("reconciled %u Services in %" PRIu64 " us, more to come", n,
                                  now_usec() - start);
                        arm_after(m, 0);
                        return 0;
                }
                {
                        uint64_t t = now_usec();

                        (void)reconcile_service(m->dirty_head);
                        metric_histogram_observe(&m->metrics.reconcile_seconds,
                                                 (double)(now_usec() - t) / USEC_PER_SEC);
                }
                n++;
        }
        for (size_t i = m->n_services; i > 0; i--) {
                Service *s = m->services[i - 1];
                if ((!s->policy || s->policy->state == EGRESS_NONE) && !s->lease && !s->programmed &&
                    s->net_inflight == 0 && !s->net_unknown && !s->status_request && !s->dirty) {
                        unqueue(s);
                        service_drop(s);
                }
        }
        if (n > 0)
                log_debug("reconciled %u Services in %" PRIu64 " us", n, now_usec() - start);
        /* Every Service wanted now campaigns: kvnetd's stale state can be
         * told apart once kvelectd has answered. */
        if (m->startup.phase == KVPD_PHASE_REPLAYING)
                m->reports->startup_event(m, STARTUP_FIRST_ROUND_DONE);
        return 0;
}
