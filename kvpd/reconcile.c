/* SPDX-License-Identifier: Apache-2.0 */
/* From "something changed" to the desired state of each affected Service.
 *
 * Changes only mark a Service dirty; one short timer on the event loop then
 * recomputes every dirty Service from the informer caches. A burst of
 * events (a rollout touching a slice many times, a relist) thus costs one
 * computation per Service, and the computation always sees the newest
 * objects, never an event's partial view. */
#include <stdio.h>

#include "array.h"
#include "log.h"
#include "manager.h"

static const char *strempty(const char *s)
{
        return s ? s : "";
}

static int on_debounce(sd_event_source *es, uint64_t usec, void *userdata);

static void arm(Manager *m)
{
        int r;

        if (!m->debounce_source) {
                r = sd_event_add_time_relative(m->event, &m->debounce_source, CLOCK_MONOTONIC,
                                               m->config.debounce_usec, 0, on_debounce, m);
                if (r < 0) {
                        log_error_errno(r, "cannot schedule a reconciliation: %m");
                        return;
                }
                return;
        }
        if (sd_event_source_get_enabled(m->debounce_source, NULL) > 0)
                return; /* already pending: the change joins this round */
        r = sd_event_source_set_time_relative(m->debounce_source, m->config.debounce_usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->debounce_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "cannot schedule a reconciliation: %m");
}

void reconcile_mark(Manager *m, const char *namespace, const char *name)
{
        Service *s;

        if (isempty(namespace) || isempty(name) || m->stopping)
                return;
        if (manager_ensure_service(m, namespace, name, &s) < 0) {
                log_error("out of memory tracking %s/%s", namespace, name);
                return;
        }
        s->dirty = true;
        arm(m);
}

static int mark_one(json_t *o, void *userdata)
{
        json_t *meta = json_object_get(o, "metadata");

        reconcile_mark(userdata, json_string_value(json_object_get(meta, "namespace")),
                       json_string_value(json_object_get(meta, "name")));
        return 0;
}

void reconcile_mark_all(Manager *m)
{
        if (m->informers[WATCH_SERVICES])
                (void)kube_informer_foreach(m->informers[WATCH_SERVICES], mark_one, m);
        /* And those we hold state for whose object is gone. */
        for (size_t i = 0; i < m->n_services; i++)
                m->services[i]->dirty = true;
        arm(m);
}

void reconcile_mark_cidrs(Manager *m)
{
        m->cidrs_dirty = true;
        arm(m);
}

/* Parsed copies of an informer's objects. */
typedef struct Collected {
        void **v;
        size_t n, allocated;
        int error;
        void *(*parse)(json_t *o);
        /* Filter for slices: namespace and service. */
        const char *namespace, *service;
} Collected;

static void *parse_node(json_t *o)
{
        KubeNode *n = NULL;
        KubeParseError e = {};
        if (kube_node_parse(o, &n, &e) < 0)
                log_debug("skipping a Node: %s", e.message);
        return n;
}

static void *parse_servicecidr(json_t *o)
{
        KubeServiceCIDR *c = NULL;
        KubeParseError e = {};
        if (kube_servicecidr_parse(o, &c, &e) < 0)
                log_debug("skipping a ServiceCIDR: %s", e.message);
        return c;
}

static void *parse_pod(json_t *o)
{
        KubePod *p = NULL;
        KubeParseError e = {};
        if (kube_pod_parse(o, &p, &e) < 0)
                log_debug("skipping a Pod: %s", e.message);
        return p;
}

static void *parse_slice(json_t *o)
{
        KubeEndpointSlice *s = NULL;
        KubeParseError e = {};
        if (kube_endpointslice_parse(o, &s, &e) < 0)
                log_warning("skipping an EndpointSlice: %s", e.message);
        return s;
}

static int collect_one(json_t *o, void *userdata)
{
        Collected *c = userdata;
        void *x;

        if (c->service) {
                /* Cheap filter before a full parse: most slices belong to
                 * other services. */
                json_t *meta = json_object_get(o, "metadata");
                if (!streq_ptr(json_string_value(json_object_get(meta, "namespace")), c->namespace) ||
                    !streq_ptr(json_string_value(json_object_get(json_object_get(meta, "labels"),
                                                                 KUBE_LABEL_SERVICE_NAME)),
                               c->service))
                        return 0;
        }
        x = c->parse(o);
        if (!x)
                return 0;
        if (ARRAY_RESERVE(c->v, c->allocated, c->n + 1) < 0) {
                c->error = -ENOMEM;
                return -ENOMEM;
        }
        c->v[c->n++] = x;
        return 0;
}

static void collected_free(Collected *c, void *(*free_fn)(void *))
{
        for (size_t i = 0; i < c->n; i++)
                free_fn(c->v[i]);
        free(c->v);
}

static void *free_node(void *p)
{
        return kube_node_free(p);
}
static void *free_servicecidr(void *p)
{
        return kube_servicecidr_free(p);
}
static void *free_pod(void *p)
{
        return kube_pod_free(p);
}
static void *free_slice(void *p)
{
        return kube_endpointslice_free(p);
}

int reconcile_cidrs(Manager *m)
{
        Collected nodes = {.parse = parse_node}, scs = {.parse = parse_servicecidr}, kcms = {.parse = parse_pod};
        _cleanup_(kube_configmap_freep) KubeConfigMap *kubeadm = NULL;
        ClusterCidrs c = {};
        int r;

        if (m->informers[WATCH_NODES])
                (void)kube_informer_foreach(m->informers[WATCH_NODES], collect_one, &nodes);
        if (m->informers[WATCH_SERVICECIDRS])
                (void)kube_informer_foreach(m->informers[WATCH_SERVICECIDRS], collect_one, &scs);
        if (m->informers[WATCH_CONTROLLER_MANAGERS])
                (void)kube_informer_foreach(m->informers[WATCH_CONTROLLER_MANAGERS], collect_one, &kcms);
        if (m->informers[WATCH_KUBEADM_CONFIG]) {
                json_t *o = kube_informer_get(m->informers[WATCH_KUBEADM_CONFIG], "kube-system", "kubeadm-config");
                KubeParseError e = {};
                if (o && kube_configmap_parse(o, &kubeadm, &e) < 0)
                        log_debug("skipping kubeadm-config: %s", e.message);
        }
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
        collected_free(&nodes, free_node);
        collected_free(&scs, free_servicecidr);
        collected_free(&kcms, free_pod);
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
                log_info("cluster networks never SNATed: pods %s, services %s%s", strempty(pods), strempty(svcs),
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

int reconcile_service(Service *s)
{
        Manager *m = s->manager;
        _cleanup_(kube_service_freep) KubeService *svc = NULL;
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        Collected slices = {.parse = parse_slice, .namespace = s->namespace, .service = s->name};
        json_t *o;
        int r;

        s->dirty = false;
        o = kube_informer_get(m->informers[WATCH_SERVICES], s->namespace, s->name);
        if (o) {
                KubeParseError e = {};
                if (kube_service_parse(o, &svc, &e) < 0)
                        log_warning("%s: cannot read the Service, treating it as gone: %s", s->key, e.message);
        }
        if (svc) {
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

                (void)kube_informer_foreach(m->informers[WATCH_ENDPOINTSLICES], collect_one, &slices);
                r = slices.error;
                if (r >= 0) {
                        in.slices = (const KubeEndpointSlice *const *)slices.v;
                        in.n_slices = slices.n;
                        r = egress_policy_compute(&in, &p);
                }
                collected_free(&slices, free_slice);
                if (r < 0)
                        return log_error_errno(r, "%s: cannot compute the egress state: %m", s->key);
        }

        if (p && p->state == EGRESS_INVALID) {
                /* Logged on every node; reported as an Event by nodes that
                 * have a ready pod of the service (see egress_policy_compute),
                 * once per distinct error, even if the pod shows up later. */
                if (!streq_ptr(s->last_error_logged, p->error)) {
                        log_warning("%s", p->error);
                        free(s->last_error_logged);
                        s->last_error_logged = strdup(p->error);
                }
                if (p->has_local_endpoint && !streq_ptr(s->last_error_event, p->error)) {
                        status_event(s, "Warning", "EgressInvalid", "%s", p->error);
                        free(s->last_error_event);
                        s->last_error_event = strdup(p->error);
                }
        } else if (s->last_error_logged) {
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
                log_debug("%s: %s, %zu VIPs, %zu local pods", s->key, egress_state_to_string(p->state), p->n_vips,
                          p->n_pods);
        }
        egress_policy_free(s->policy);
        s->policy = TAKE_PTR(p);

        /* kvnetd first: a Service that stops being served sends
         * RemoveService before its lease is let go (elect_update waits). */
        net_update(s);
        elect_update(s);
        status_update(s);
        return 0;
}

static int on_debounce(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        (void)es;
        (void)usec;

        /* Before every watch has listed once, the picture is incomplete: a
         * missing Node would drop a pod CIDR from the exclusions, a missing
         * slice would look like "no local pod". Wait. */
        if (!m->synced || m->stopping)
                return 0;
        if (m->cidrs_dirty) {
                m->cidrs_dirty = false;
                (void)reconcile_cidrs(m);
        }
        /* Walk backwards: reconcile_service() may drop the entry it works on. */
        for (size_t i = m->n_services; i > 0; i--) {
                Service *s = m->services[i - 1];
                if (s->dirty)
                        (void)reconcile_service(s);
        }
        for (size_t i = m->n_services; i > 0; i--) {
                Service *s = m->services[i - 1];
                if ((!s->policy || s->policy->state == EGRESS_NONE) && !s->lease && !s->programmed &&
                    s->net_inflight == 0 && !s->status_request && !s->dirty)
                        manager_drop_service(m, s);
        }
        if (!m->reconciled) {
                /* Every Service wanted now campaigns: kvnetd's stale state
                 * can be told apart once kvelectd has answered. */
                m->reconciled = true;
                net_cleanup_stale(m);
        }
        return 0;
}
