/* SPDX-License-Identifier: Apache-2.0 */
/* List+watch plumbing: which resources kvpd watches, with which selectors,
 * and what each change marks for reconciliation. Nothing is decided here.
 *
 * The optional sources of cluster networks (ServiceCIDRs, the
 * kube-controller-manager pods, kubeadm-config) are probed first with one
 * GET: a 404 (an API without ServiceCIDRs) or a 403 (RBAC that does not grant
 * it) disables that source instead of leaving an informer that never syncs,
 * which would hold back every service. */
#include <stdio.h>

#include "log.h"
#include "manager.h"

#define PROBE_RETRY_USEC (1 * USEC_PER_SEC)

static const char *const watch_kind_table[_WATCH_KIND_MAX] = {
        [WATCH_SERVICES] = "services",
        [WATCH_ENDPOINTSLICES] = "endpointslices",
        [WATCH_NODES] = "nodes",
        [WATCH_SERVICECIDRS] = "servicecidrs",
        [WATCH_CONTROLLER_MANAGERS] = "kube-controller-manager pods",
        [WATCH_KUBEADM_CONFIG] = "kubeadm-config",
};

const char *watch_kind_to_string(WatchKind k)
{
        return k >= 0 && k < _WATCH_KIND_MAX ? watch_kind_table[k] : NULL;
}

static const char *meta_string(json_t *o, const char *field)
{
        return json_string_value(json_object_get(json_object_get(o, "metadata"), field));
}

static void check_synced(Manager *m)
{
        if (m->synced || m->probes_pending > 0)
                return;
        for (WatchKind k = 0; k < _WATCH_KIND_MAX; k++)
                if (m->watch_enabled[k] && (!m->informers[k] || !kube_informer_synced(m->informers[k])))
                        return;
        m->synced = true;
        log_info("all watches synced (%zu services, %zu endpointslices, %zu nodes)",
                 kube_informer_size(m->informers[WATCH_SERVICES]),
                 kube_informer_size(m->informers[WATCH_ENDPOINTSLICES]),
                 kube_informer_size(m->informers[WATCH_NODES]));
        reconcile_mark_cidrs(m);
        reconcile_mark_all(m);
        net_cleanup_stale(m);
}

static void on_event(KubeInformer *inf, KubeWatchEventType type, json_t *object, void *userdata)
{
        WatchCtx *ctx = userdata;
        Manager *m = ctx->manager;
        (void)inf;
        (void)type;

        switch (ctx->kind) {
        case WATCH_SERVICES:
                reconcile_mark(m, meta_string(object, "namespace"), meta_string(object, "name"));
                break;
        case WATCH_ENDPOINTSLICES: {
                json_t *labels = json_object_get(json_object_get(object, "metadata"), "labels");
                /* A slice that changes its service-name label arrives as
                 * DELETED (old labels) then ADDED (new), so both services
                 * are marked. */
                reconcile_mark(m, meta_string(object, "namespace"),
                               json_string_value(json_object_get(labels, KUBE_LABEL_SERVICE_NAME)));
                break;
        }
        default:
                reconcile_mark_cidrs(m);
                break;
        }
}

static void on_synced(KubeInformer *inf, void *userdata)
{
        WatchCtx *ctx = userdata;
        (void)inf;

        log_debug("%s synced", watch_kind_to_string(ctx->kind));
        /* A relist may have changed anything without a per-object event
         * reaching a service we did not track yet. */
        if (ctx->manager->synced)
                reconcile_mark_all(ctx->manager);
        check_synced(ctx->manager);
}

static int informer_start(Manager *m, WatchKind k)
{
        static const KubeInformerOps ops = {.event = on_event, .synced = on_synced};
        const KubeResource *res;
        KubeInformerOptions opts = {};
        int r;

        switch (k) {
        case WATCH_SERVICES:
                res = &kube_resource_services;
                opts.namespace = m->config.namespace;
                break;
        case WATCH_ENDPOINTSLICES:
                res = &kube_resource_endpointslices;
                opts.namespace = m->config.namespace;
                /* Only slices that belong to a Service. */
                opts.label_selector = KUBE_LABEL_SERVICE_NAME;
                break;
        case WATCH_NODES:
                res = &kube_resource_nodes;
                break;
        case WATCH_SERVICECIDRS:
                res = &kube_resource_servicecidrs;
                break;
        case WATCH_CONTROLLER_MANAGERS:
                res = &kube_resource_pods;
                opts.namespace = "kube-system";
                opts.label_selector = "component=kube-controller-manager";
                break;
        case WATCH_KUBEADM_CONFIG:
                res = &kube_resource_configmaps;
                opts.namespace = "kube-system";
                opts.field_selector = "metadata.name=kubeadm-config";
                break;
        default:
                return -EINVAL;
        }
        m->watch_ctx[k] = (WatchCtx){.manager = m, .kind = k};
        m->watch_enabled[k] = true;
        r = kube_informer_new(m->kube, res, &opts, &ops, &m->watch_ctx[k], &m->informers[k]);
        if (r < 0)
                return log_error_errno(r, "cannot watch %s: %m", watch_kind_to_string(k));
        return 0;
}

static int probe_send(Manager *m, WatchKind k);

static int on_probe_retry(sd_event_source *es, uint64_t usec, void *userdata)
{
        WatchCtx *ctx = userdata;
        (void)es;
        (void)usec;

        if (probe_send(ctx->manager, ctx->kind) < 0)
                log_error("cannot probe %s; cluster networks from it are not used", watch_kind_to_string(ctx->kind));
        return 0;
}

static void on_probe(KubeClient *c, const KubeResponse *resp, void *userdata)
{
        WatchCtx *ctx = userdata;
        Manager *m = ctx->manager;
        int r;
        (void)c;

        if (resp->error < 0 || resp->http_status >= 500 || resp->http_status == 429) {
                /* The API is not reachable yet: ask again, the answer decides
                 * whether a source exists. */
                log_debug_errno(resp->error, "probe of %s failed (HTTP %ld), retrying: %m",
                                watch_kind_to_string(ctx->kind), resp->http_status);
                r = sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, PROBE_RETRY_USEC, 0, on_probe_retry,
                                               ctx);
                if (r < 0)
                        log_error_errno(r, "cannot schedule a probe of %s: %m", watch_kind_to_string(ctx->kind));
                return;
        }
        m->probes_pending--;
        if (resp->http_status == 404 || resp->http_status == 403) {
                log_notice("%s unavailable (HTTP %ld%s%s): not used to detect cluster networks",
                           watch_kind_to_string(ctx->kind), resp->http_status, resp->message ? ": " : "",
                           resp->message ? resp->message : "");
                check_synced(m);
                return;
        }
        if (resp->http_status != 200)
                log_warning("probe of %s answered HTTP %ld; watching it anyway", watch_kind_to_string(ctx->kind),
                            resp->http_status);
        r = informer_start(m, ctx->kind);
        if (r < 0)
                m->watch_enabled[ctx->kind] = false;
        check_synced(m);
}

static int probe_send(Manager *m, WatchKind k)
{
        static const char *const queries[_WATCH_KIND_MAX] = {
                [WATCH_SERVICECIDRS] = "?limit=1",
                [WATCH_CONTROLLER_MANAGERS] = "?limit=1&labelSelector=component%3Dkube-controller-manager",
                [WATCH_KUBEADM_CONFIG] = "?limit=1&fieldSelector=metadata.name%3Dkubeadm-config",
        };
        static const KubeResource *const resources[_WATCH_KIND_MAX] = {
                [WATCH_SERVICECIDRS] = &kube_resource_servicecidrs,
                [WATCH_CONTROLLER_MANAGERS] = &kube_resource_pods,
                [WATCH_KUBEADM_CONFIG] = &kube_resource_configmaps,
        };
        _cleanup_free_ char *path = NULL, *full = NULL;
        KubeRequestOptions opts = {.timeout_usec = 10 * USEC_PER_SEC};
        int r;

        r = kube_resource_path(resources[k], k == WATCH_SERVICECIDRS ? NULL : "kube-system", NULL, NULL, &path);
        if (r < 0)
                return r;
        if (asprintf(&full, "%s%s", path, queries[k]) < 0)
                return -ENOMEM;
        m->watch_ctx[k] = (WatchCtx){.manager = m, .kind = k};
        r = kube_request(m->kube, "GET", full, NULL, &opts, on_probe, &m->watch_ctx[k], NULL);
        if (r < 0)
                return log_error_errno(r, "cannot probe %s: %m", watch_kind_to_string(k));
        return 0;
}

int watch_start(Manager *m)
{
        static const WatchKind required[] = {WATCH_SERVICES, WATCH_ENDPOINTSLICES, WATCH_NODES};
        static const WatchKind optional[] = {WATCH_SERVICECIDRS, WATCH_CONTROLLER_MANAGERS, WATCH_KUBEADM_CONFIG};
        int r;

        for (size_t i = 0; i < ELEMENTSOF(optional); i++) {
                r = probe_send(m, optional[i]);
                if (r < 0)
                        return r;
                m->probes_pending++;
        }
        for (size_t i = 0; i < ELEMENTSOF(required); i++) {
                r = informer_start(m, required[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}
