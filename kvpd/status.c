/* SPDX-License-Identifier: Apache-2.0 */
/* Status back to the Service, written by the lease holder only (kube-vip
 * wrote active-endpoint from every node with a pod, last writer winning):
 * kube-vip.io/vipHost, active-endpoint, active-endpoint-ipv6 and
 * status.loadBalancer.ingress, with merge patches, once kvnetd has accepted
 * the VIPs and the SNAT, so the annotations never claim what the kernel does
 * not do. When this node gives the service up they are cleared, but only
 * while vipHost still names this node, and with the cached resourceVersion
 * as a precondition, so a late clear never erases what the next holder
 * wrote. Events (EgressActive, EgressReleased, EgressInvalid, EgressFailed)
 * go through kube_event_emit. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "cache.h"
#include "log.h"
#include "service.h"
#include "status.h"

#define MERGE_PATCH "application/merge-patch+json"

void status_event(Service *s, const char *type, const char *reason, const char *fmt, ...)
{
        Manager *m = s->manager;
        _cleanup_free_ char *msg = NULL;
        const char *uid = s->policy ? s->policy->uid : NULL;
        va_list ap;
        int r;

        if (!m->kube)
                return;
        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        r = kube_event_emit(m->kube, "kvpd", m->config.node_name, "Service", s->namespace, s->name, uid,
                            type, reason, msg);
        if (r < 0)
                log_debug_errno(r, "%s: cannot send Event %s: %m", s->key, reason);
}

/* The Service as cached (cache.h): a new reference. */
static json_t *cached(Service *s)
{
        return cache_service_json(s->manager, s->namespace, s->name);
}

static const char *cached_annotation(json_t *o, const char *key)
{
        return json_string_value(
                json_object_get(json_object_get(json_object_get(o, "metadata"), "annotations"), key));
}

/* [{ip, ports:[{port, protocol}]}] as kube-vip writes it (ipMode is the
 * server's default; left out of comparisons). */
static json_t *ingress_normalised(json_t *ingress)
{
        json_t *out = json_array(), *e;
        size_t i;

        if (!out)
                return NULL;
        json_array_foreach(ingress, i, e)
        {
                json_t *n = json_object(), *ports = json_array(), *p;
                size_t j;

                if (!n || !ports) {
                        json_decref(n);
                        json_decref(ports);
                        json_decref(out);
                        return NULL;
                }
                if (json_is_string(json_object_get(e, "ip")))
                        json_object_set(n, "ip", json_object_get(e, "ip"));
                if (json_is_string(json_object_get(e, "hostname")))
                        json_object_set(n, "hostname", json_object_get(e, "hostname"));
                json_array_foreach(json_object_get(e, "ports"), j, p) json_array_append_new(
                        ports, json_pack("{s:O?,s:O?}", "port", json_object_get(p, "port"), "protocol",
                                         json_object_get(p, "protocol")));
                if (json_array_size(ports) > 0)
                        json_object_set_new(n, "ports", ports);
                else
                        json_decref(ports);
                json_array_append_new(out, n);
        }
        return out;
}

static json_t *ingress_desired(const EgressPolicy *p, json_t *svc)
{
        json_t *out = json_array(), *sp;
        char buf[INET6_ADDRSTRLEN];
        size_t j;

        if (!out)
                return NULL;
        for (size_t i = 0; i < p->n_vips; i++) {
                json_t *ports = json_array(), *e;

                json_array_foreach(json_object_get(json_object_get(svc, "spec"), "ports"), j, sp)
                        json_array_append_new(ports,
                                              json_pack("{s:O?,s:O?}", "port", json_object_get(sp, "port"),
                                                        "protocol", json_object_get(sp, "protocol")));
                e = json_pack("{s:s}", "ip", ip_addr_to_string(&p->vips[i], buf));
                if (!e || !ports) {
                        json_decref(e);
                        json_decref(ports);
                        json_decref(out);
                        return NULL;
                }
                if (json_array_size(ports) > 0)
                        json_object_set_new(e, "ports", ports);
                else
                        json_decref(ports);
                json_array_append_new(out, e);
        }
        return out;
}

static int clear(Service *s, json_t *o, bool for_stop);

/* The per-node acknowledgement (README, "Operator's view"): what kvnetd
 * accepted on this node, written by the holder after each change
 *   kvegress.io/egress-programmed: node=NODE,vips=VIP[;VIP],pods=N,at=RFC3339
 * The time is when this node saw kvnetd accept it; it alone does not make a
 * new write. */
static char *programmed_value(Service *s)
{
        const EgressPolicy *p = s->programmed;
        _cleanup_free_ char *vips = NULL;
        char buf[INET6_ADDRSTRLEN], at[32];
        struct timespec ts;
        size_t size = 0;
        char *out = NULL;
        FILE *f;

        if (!p || !s->net_confirmed)
                return NULL;
        f = open_memstream(&vips, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; i < p->n_vips; i++)
                fprintf(f, "%s%s", i ? ";" : "", ip_addr_to_string(&p->vips[i], buf));
        if (fclose(f) != 0)
                return NULL;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        if (kube_time_format((uint64_t)ts.tv_sec * USEC_PER_SEC, at) < 0)
                return NULL;
        if (asprintf(&out, "node=%s,vips=%s,pods=%zu,at=%s", s->manager->config.node_name, vips ? vips : "",
                     p->n_pods, at) < 0)
                return NULL;
        return out;
}

/* Equal but for the time. */
static bool programmed_same(const char *have, const char *want)
{
        const char *h = have ? strstr(have, ",at=") : NULL, *w = strstr(want, ",at=");

        return h && w && h - have == w - want && strncmp(have, want, (size_t)(w - want)) == 0;
}

/* When want differs from the value of this node's last write that went
 * through only in its time, that value: the body is then the last one
 * again, and patch() sees that it went through already and its watch
 * event has not come yet. Without this, an echo that came in the next
 * second made a second write of the same annotations (1,000 Services: 130
 * to 300 extra PATCHes at start). */
static void keep_written_time(Service *s, char **want)
{
        json_t *last;
        const char *v;

        if (!*want || !s->status_last_body)
                return;
        last = json_loads(s->status_last_body, 0, NULL);
        v = json_string_value(
                json_object_get(json_object_get(json_object_get(last, "metadata"), "annotations"),
                                KV_ANN_EGRESS_PROGRAMMED));
        if (v && programmed_same(v, *want)) {
                char *t = strdup(v);

                if (t) {
                        free(*want);
                        *want = t;
                }
        }
        json_decref(last);
}

typedef struct StatusCall {
        Manager *manager;
        char *key;
        char *body;
        char *rv;
        bool for_stop;
} StatusCall;

static void status_call_free(StatusCall *c)
{
        if (!c)
                return;
        free(c->key);
        free(c->body);
        free(c->rv);
        free(c);
}

static int on_retry_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        StatusCall *c = userdata;
        Service *s = service_get(c->manager, c->key);
        (void)usec;

        if (s && !c->manager->stopping) {
                s->dirty = true;
                c->manager->reports->status_written(s);
        }
        status_call_free(c);
        sd_event_source_unref(es);
        return 0;
}

static void on_patched(KubeClient *kc, const KubeResponse *resp, void *userdata)
{
        StatusCall *c = userdata;
        Manager *m = c->manager;
        Service *s = service_get(m, c->key);
        bool ok = resp->error == 0 && resp->http_status >= 200 && resp->http_status < 300;
        (void)kc;

        if (c->for_stop) {
                if (!ok)
                        log_warning("%s: clearing the status at stop failed (HTTP %ld): %s", c->key,
                                    resp->http_status, resp->message ? resp->message : "");
                m->reports->stop_call_done(m);
                status_call_free(c);
                return;
        }
        if (s) {
                s->status_request = NULL;
                s->status_call = NULL;
                if (s->clear_at_stop) {
                        _cleanup_(json_decrefp) json_t *o = cached(s);
                        s->clear_at_stop = false;
                        if (o)
                                (void)clear(s, o, true);
                        m->reports->stop_call_done(m);
                }
        }
        /* The watch event for this write may have come before this answer,
         * and found the write still in flight: look again. */
        if (s)
                m->reports->status_written(s);
        if (ok) {
                if (s) {
                        free(s->status_last_body);
                        free(s->status_last_rv);
                        s->status_last_body = TAKE_PTR(c->body);
                        s->status_last_rv = TAKE_PTR(c->rv);
                }
                status_call_free(c);
                return;
        }
        if (resp->http_status == 404) {
                status_call_free(c); /* the Service is gone: nothing left to write */
                return;
        }
        /* 409: someone wrote in between (for a clear: maybe the next holder);
         * look again at the newest object after a pause. */
        log_full(resp->http_status == 409 ? LOG_DEBUG : LOG_WARNING,
                 "%s: status write failed (HTTP %ld, %s): %s; retrying", c->key, resp->http_status,
                 resp->reason ? resp->reason : "", resp->message ? resp->message : strerror(-resp->error));
        if (sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, m->config.status_retry_usec, 0,
                                       on_retry_timer, c) < 0)
                status_call_free(c);
}

static int patch(Service *s, bool subresource_status, json_t *body, const char *rv, bool for_stop)
{
        Manager *m = s->manager;
        _cleanup_free_ char *path = NULL, *text = NULL;
        KubeRequestOptions opts = {.content_type = MERGE_PATCH};
        StatusCall *c;
        int r;

        r = kube_resource_path(&kube_resource_services, s->namespace, s->name,
                               subresource_status ? "status" : NULL, &path);
        if (r < 0)
                return r;
        text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        /* The same patch against the same object succeeded already: the
         * informer has not caught up yet. */
        if (!for_stop && streq_ptr(text, s->status_last_body) && streq_ptr(rv, s->status_last_rv))
                return 0;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (StatusCall){.manager = m,
                          .key = strdup(s->key),
                          .body = TAKE_PTR(text),
                          .rv = rv ? strdup(rv) : NULL,
                          .for_stop = for_stop};
        if (!c->key) {
                status_call_free(c);
                return -ENOMEM;
        }
        r = kube_request(m->kube, "PATCH", path, body, &opts, on_patched, c,
                         for_stop ? NULL : &s->status_request);
        if (r < 0) {
                status_call_free(c);
                return log_warning_errno(r, "%s: cannot send a status patch: %m", s->key);
        }
        if (for_stop)
                m->stop_pending++;
        else
                s->status_call = c;
        log_debug("%s: PATCH %s %s", s->key, path, c->body);
        return 0;
}

/* The VIP source decides whether status.loadBalancer.ingress is ours: when
 * the VIPs came from it, someone else wrote it. Without a policy (egress
 * annotation removed) the same rule is applied to the object. */
static bool ingress_is_ours(Service *s, json_t *o)
{
        const char *lb = cached_annotation(o, KV_ANN_LOADBALANCER_IPS);
        const char *spec_ip =
                json_string_value(json_object_get(json_object_get(o, "spec"), "loadBalancerIP"));

        if (s->policy && s->policy->state != EGRESS_NONE && s->policy->vip_source != VIP_SOURCE_NONE)
                return s->policy->owns_ingress_status;
        return !isempty(lb) || !isempty(spec_ip);
}

static int clear(Service *s, json_t *o, bool for_stop)
{
        const char *rv =
                json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
        json_t *ingress =
                json_object_get(json_object_get(json_object_get(o, "status"), "loadBalancer"), "ingress");
        json_t *body;
        int r;

        /* Status first, while vipHost still says it was this node's; the
         * annotations follow on the next pass. At stop we still hold the
         * lease, so no one else writes and both go at once. */
        if ((for_stop || json_array_size(ingress) > 0) && ingress_is_ours(s, o)) {
                body = json_pack("{s:{s:{s:n}}}", "status", "loadBalancer", "ingress");
                if (!body)
                        return -ENOMEM;
                if (!for_stop && rv)
                        json_object_set_new(body, "metadata", json_pack("{s:s}", "resourceVersion", rv));
                r = patch(s, true, body, rv, for_stop);
                json_decref(body);
                if (r < 0 || !for_stop)
                        return r;
        }
        body = json_pack("{s:n,s:n,s:n,s:n}", KV_ANN_VIP_HOST, KV_ANN_ACTIVE_ENDPOINT,
                         KV_ANN_ACTIVE_ENDPOINT_IPV6, KV_ANN_EGRESS_PROGRAMMED);
        if (!body)
                return -ENOMEM;
        {
                json_t *meta = json_pack("{s:O}", "annotations", body);
                json_decref(body);
                if (!meta)
                        return -ENOMEM;
                if (!for_stop && rv)
                        json_object_set_new(meta, "resourceVersion", json_string(rv));
                body = json_pack("{s:o}", "metadata", meta);
                if (!body)
                        return -ENOMEM;
        }
        r = patch(s, false, body, rv, for_stop);
        json_decref(body);
        return r;
}

void status_apply(Service *s, StatusAction action)
{
        Manager *m = s->manager;
        const EgressPolicy *p = s->policy;
        _cleanup_(json_decrefp) json_t *o = NULL;
        char a4[INET6_ADDRSTRLEN] = "", a6[INET6_ADDRSTRLEN] = "";
        _cleanup_free_ char *programmed = NULL;

        if (!m->kube || (action != STATUS_ACTION_HOLD && action != STATUS_ACTION_RELEASE))
                return;
        o = cached(s);
        switch (action) {
        case STATUS_ACTION_HOLD:
                break;
        case STATUS_ACTION_RELEASE:
                if (s->active_reported) {
                        s->active_reported = false;
                        status_event(s, "Normal", "EgressReleased", "node %s released the egress VIP",
                                     m->config.node_name);
                }
                if (streq_ptr(cached_annotation(o, KV_ANN_VIP_HOST), m->config.node_name))
                        (void)clear(s, o, false);
                return;
        default:
                return; /* nothing to write, or not known yet whether this node holds it */
        }

        if (p->has_active4)
                (void)ip_addr_to_string(&p->active4, a4);
        if (p->has_active6)
                (void)ip_addr_to_string(&p->active6, a6);
        programmed = programmed_value(s);
        keep_written_time(s, &programmed);
        /* A family without an active endpoint has no annotation (an
         * IPv4-only Service got active-endpoint-ipv6: ""). */
        if (!streq_ptr(cached_annotation(o, KV_ANN_VIP_HOST), m->config.node_name) ||
            !streq_ptr(cached_annotation(o, KV_ANN_ACTIVE_ENDPOINT), a4) ||
            !streq_ptr(cached_annotation(o, KV_ANN_ACTIVE_ENDPOINT_IPV6), *a6 ? a6 : NULL) ||
            (programmed && !programmed_same(cached_annotation(o, KV_ANN_EGRESS_PROGRAMMED), programmed))) {
                json_t *body = json_pack("{s:{s:{s:s,s:s,s:o,s:s?}}}", "metadata", "annotations",
                                         KV_ANN_VIP_HOST, m->config.node_name, KV_ANN_ACTIVE_ENDPOINT, a4,
                                         KV_ANN_ACTIVE_ENDPOINT_IPV6, *a6 ? json_string(a6) : json_null(),
                                         KV_ANN_EGRESS_PROGRAMMED, programmed);
                if (body) {
                        (void)patch(s, false, body,
                                    json_string_value(json_object_get(json_object_get(o, "metadata"),
                                                                      "resourceVersion")),
                                    false);
                        json_decref(body);
                }
                return; /* one write at a time; the next pass does the status */
        }
        if (p->owns_ingress_status) {
                json_t *want = ingress_desired(p, o);
                json_t *have = ingress_normalised(json_object_get(
                        json_object_get(json_object_get(o, "status"), "loadBalancer"), "ingress"));
                if (want && have && !json_equal(want, have)) {
                        json_t *body = json_pack("{s:{s:{s:O}}}", "status", "loadBalancer", "ingress", want);
                        if (body) {
                                (void)patch(s, true, body,
                                            json_string_value(json_object_get(json_object_get(o, "metadata"),
                                                                              "resourceVersion")),
                                            false);
                                json_decref(body);
                        }
                        json_decref(want);
                        json_decref(have);
                        return;
                }
                json_decref(want);
                json_decref(have);
        }
        if (!s->active_reported) {
                char vip[INET6_ADDRSTRLEN];
                s->active_reported = true;
                status_event(s, "Normal", "EgressActive", "egress via %s on node %s for %zu local pods",
                             ip_addr_to_string(p->has_vip4 ? &p->vip4 : &p->vip6, vip), m->config.node_name,
                             p->n_pods);
        }
}

/* At stop, while this node still holds its leases (so nobody else writes
 * these fields): clear what this node wrote or may have written, even if the
 * informer has not shown it yet. A write still in flight is let finish
 * first, or it could land after the clear. */
void status_clear_all(Manager *m)
{
        for (size_t i = 0; i < m->n_services; i++) {
                Service *s = m->services[i];
                _cleanup_(json_decrefp) json_t *o = cached(s);

                if (!o)
                        continue;
                if (!streq_ptr(cached_annotation(o, KV_ANN_VIP_HOST), m->config.node_name) &&
                    !s->net_confirmed && !s->status_request && !s->active_reported)
                        continue;
                if (s->status_request) {
                        s->clear_at_stop = true;
                        m->stop_pending++;
                        continue;
                }
                (void)clear(s, o, true);
        }
}
