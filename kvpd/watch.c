/* SPDX-License-Identifier: Apache-2.0 */
/* List+watch plumbing: which resources kvpd watches, with which selectors,
 * and what each change marks for reconciliation. Nothing is decided here.
 *
 * The optional sources of cluster networks (ServiceCIDRs, the
 * kube-controller-manager pods, kubeadm-config) are probed first with one
 * GET: a 404 (an API without ServiceCIDRs) or a 403 (RBAC that does not grant
 * it) disables that source instead of leaving an informer that never syncs,
 * which would hold back every service.
 *
 * What the caches keep. No JSON tree: each object is parsed once per
 * version into the few fields kvpd reads (a Service with no egress
 * annotation and no vipHost into nothing at all), and EndpointSlices are
 * indexed by their Service, keeping only their endpoints on this node. A
 * change then costs a hash lookup plus the work of the Service it concerns,
 * whatever the size of the cluster. */
#include <stdio.h>

#include "annotations.h"
#include "array.h"
#include "cache.h"
#include "log.h"
#include "reconcile.h"
#include "service.h"
#include "watch.h"

#define PROBE_RETRY_USEC (1 * USEC_PER_SEC)

static const char *const watch_kind_table[_WATCH_KIND_MAX] = {
        [WATCH_SERVICES] = "services",
        [WATCH_ENDPOINTSLICES] = "endpointslices",
        [WATCH_NODES] = "nodes",
        [WATCH_SERVICECIDRS] = "servicecidrs",
        [WATCH_CONTROLLER_MANAGERS] = "kube-controller-manager pods",
        [WATCH_KUBEADM_CONFIG] = "kubeadm-config",
};

DEFINE_STRING_TABLE_TO_STRING(watch_kind_to_string, WatchKind, watch_kind_table);

ServiceItem service_item_stub;

static const char *meta_string(json_t *o, const char *field)
{
        return json_string_value(json_object_get(json_object_get(o, "metadata"), field));
}

/* ---- Services ---- */

/* Whose annotations kvpd reads (annotations.h) or writes (status.c). */
static bool annotation_ours(const char *key)
{
        return strncmp(key, KV_ANNOTATION_PREFIX, strlen(KV_ANNOTATION_PREFIX)) == 0 ||
               strncmp(key, "kvegress.io/", strlen("kvegress.io/")) == 0;
}

/* Only our annotations, and no labels: kvpd reads nothing else of them,
 * and a kubectl-applied Service carries its whole manifest as an
 * annotation. */
static void service_meta_trim(KubeObjectMeta *meta)
{
        KubeStringMap *a = &meta->annotations;
        size_t n = 0;

        for (size_t i = 0; i < a->n; i++) {
                if (annotation_ours(a->keys[i])) {
                        a->keys[n] = a->keys[i];
                        a->values[n++] = a->values[i];
                        continue;
                }
                free(a->keys[i]);
                free(a->values[i]);
        }
        a->n = n;
        /* NULL-terminated, as the parser leaves them. */
        if (a->keys)
                a->keys[n] = NULL;
        if (a->values)
                a->values[n] = NULL;
        for (size_t i = 0; i < meta->labels.n; i++) {
                free(meta->labels.keys[i]);
                free(meta->labels.values[i]);
        }
        meta->labels.keys = mfree(meta->labels.keys);
        meta->labels.values = mfree(meta->labels.values);
        meta->labels.n = 0;
}

/* What status.c reads of the cached Service, and nothing else: name,
 * namespace, uid, resourceVersion, our annotations, spec.loadBalancerIP,
 * each spec.ports[]'s port and protocol, status.loadBalancer. The values are
 * shared with o (reference counts), not copied. A whole Service as a
 * jansson tree costs several KiB, and kvpd keeps one per egress Service
 * (as text: service_json_text()). NULL if out of memory. */
static json_t *service_json_trim(json_t *o)
{
        json_t *meta = json_object_get(o, "metadata"), *spec = json_object_get(o, "spec");
        json_t *lb = json_object_get(json_object_get(o, "status"), "loadBalancer");
        json_t *out = json_object(), *m = json_object(), *ann = json_object(), *sp = json_object();
        json_t *ports = json_array(), *v, *port;
        const char *key;
        size_t i;
        bool ok = out && m && ann && sp && ports;

        for (const char *const *f =
                     (const char *const[]){"name", "namespace", "uid", "resourceVersion", NULL};
             ok && *f; f++)
                if ((v = json_object_get(meta, *f)))
                        ok = json_object_set(m, *f, v) == 0;
        json_object_foreach(json_object_get(meta, "annotations"), key, v) if (ok && annotation_ours(key))
                ok = json_object_set(ann, key, v) == 0;
        if (ok && (v = json_object_get(spec, "loadBalancerIP")))
                ok = json_object_set(sp, "loadBalancerIP", v) == 0;
        json_array_foreach(json_object_get(spec, "ports"), i, port)
        {
                json_t *p = ok ? json_object() : NULL;

                ok = p && json_array_append_new(ports, p) == 0;
                if (ok && (v = json_object_get(port, "port")))
                        ok = json_object_set(p, "port", v) == 0;
                if (ok && (v = json_object_get(port, "protocol")))
                        ok = json_object_set(p, "protocol", v) == 0;
        }
        if (ok)
                ok = json_object_set_new(sp, "ports", TAKE_PTR(ports)) == 0 &&
                     json_object_set_new(m, "annotations", TAKE_PTR(ann)) == 0 &&
                     json_object_set_new(out, "metadata", TAKE_PTR(m)) == 0 &&
                     json_object_set_new(out, "spec", TAKE_PTR(sp)) == 0 &&
                     (!lb ||
                      json_object_set_new(out, "status", json_pack("{s:O}", "loadBalancer", lb)) == 0);
        json_decref(ports);
        json_decref(ann);
        json_decref(m);
        json_decref(sp);
        if (!ok)
                return json_decref(out), NULL;
        return out;
}

static char *service_json_text(json_t *o)
{
        json_t *t = service_json_trim(o);
        char *text = t ? json_dumps(t, JSON_COMPACT) : NULL;

        json_decref(t);
        return text;
}

static void *service_transform(KubeInformer *inf, json_t *o, void *userdata)
{
        json_t *ann = json_object_get(json_object_get(o, "metadata"), "annotations");
        KubeParseError e = {};
        ServiceItem *it;
        (void)inf;
        (void)userdata;

        /* Ours to look at: asks for egress, or carries a vipHost (written by
         * a node of this cluster, maybe this one, to be cleared). */
        if (!json_object_get(ann, KV_ANN_EGRESS) && !json_object_get(ann, KV_ANN_VIP_HOST))
                return &service_item_stub;
        it = calloc(1, sizeof(*it));
        if (!it) {
                log_error("out of memory caching Service %s/%s", meta_string(o, "namespace") ?: "",
                          meta_string(o, "name") ?: "");
                return NULL;
        }
        it->json = service_json_text(o);
        if (!it->json) {
                log_error("out of memory caching Service %s/%s", meta_string(o, "namespace") ?: "",
                          meta_string(o, "name") ?: "");
                free(it);
                return NULL;
        }
        if (kube_service_parse(o, &it->service, &e) < 0)
                it->error = strdup(e.message);
        else
                service_meta_trim(&it->service->meta);
        return it;
}

static void service_item_free(void *p)
{
        ServiceItem *it = p;

        if (!it || it == &service_item_stub)
                return;
        kube_service_free(it->service);
        free(it->json);
        free(it->error);
        free(it);
}

/* Splits "namespace/name" and marks it. */
static void mark_key(Manager *m, const char *key, bool relevant_only)
{
        const char *slash = key ? strchr(key, '/') : NULL;
        _cleanup_free_ char *ns = NULL;

        if (!slash || !(ns = strndup(key, (size_t)(slash - key))))
                return;
        if (relevant_only)
                reconcile_mark_if_relevant(m, ns, slash + 1);
        else
                reconcile_mark(m, ns, slash + 1);
}

static void on_service_event(Manager *m, const char *key, ServiceItem *old, ServiceItem *new)
{
        bool ours = (old && old != &service_item_stub) || (new &&new != &service_item_stub);

        if (ours)
                mark_key(m, key, false);
        else if (service_get(m, key))
                mark_key(m, key, false); /* state held for it: see that it is gone */
}

/* ---- EndpointSlices ---- */

static void *slice_transform(KubeInformer *inf, json_t *o, void *userdata)
{
        WatchCtx *ctx = userdata;
        KubeEndpointSlice *sl = NULL;
        KubeParseError e = {};
        (void)inf;

        if (kube_endpointslice_parse(o, &sl, &e) < 0) {
                /* Name it: the message alone says which field, not which
                 * of the cluster's slices. */
                json_t *meta = json_object_get(o, "metadata");
                const char *ns = json_string_value(json_object_get(meta, "namespace"));
                const char *name = json_string_value(json_object_get(meta, "name"));
                log_warning("skipping EndpointSlice %s/%s: %s", ns ? ns : "?", name ? name : "?", e.message);
                return NULL;
        }
        kube_endpointslice_keep_node(sl, ctx->manager->config.node_name);
        /* egress-policy.c skips an address that is not of the slice's
         * family (never a guess); say so, naming it. */
        int family = streq_ptr(sl->address_type, "IPv4")   ? AF_INET
                     : streq_ptr(sl->address_type, "IPv6") ? AF_INET6
                                                           : 0;
        for (size_t i = 0; family && i < sl->n_endpoints; i++) {
                size_t k = 0;
                for (char **a = sl->endpoints[i].addresses; a && *a; a++, k++)
                        if (ip_addr_parse(*a, family, &(IpAddr){}, NULL) < 0)
                                log_warning("EndpointSlice %s/%s: endpoints[%zu].addresses[%zu]: \"%.64s\" "
                                            "is not an %s "
                                            "address; skipped",
                                            sl->meta.namespace ? sl->meta.namespace : "?",
                                            sl->meta.name ? sl->meta.name : "?", i, k, *a, sl->address_type);
        }
        return sl;
}

static void slice_free(void *p)
{
        kube_endpointslice_free(p);
}

static char *slice_service_key(const KubeEndpointSlice *sl)
{
        char *key;

        if (!sl || !sl->service_name || !sl->meta.namespace)
                return NULL;
        if (asprintf(&key, "%s/%s", sl->meta.namespace, sl->service_name) < 0)
                return NULL;
        return key;
}

static void slice_group_free(SliceGroup *g)
{
        if (!g)
                return;
        free(g->key);
        free(g->slices);
        free(g);
}

static int slice_index_add(Manager *m, KubeEndpointSlice *sl)
{
        _cleanup_free_ char *key = slice_service_key(sl);
        SliceGroup *g;

        if (!key)
                return sl && sl->service_name ? -ENOMEM : 0;
        g = hashmap_get(&m->slice_groups, key);
        if (!g) {
                g = calloc(1, sizeof(*g));
                if (!g)
                        return -ENOMEM;
                g->key = TAKE_PTR(key);
                if (hashmap_put(&m->slice_groups, g->key, g) < 0) {
                        slice_group_free(g);
                        return -ENOMEM;
                }
        }
        /* Most Services have one slice: room for one first (array_reserve()
         * starts at 8, 56 bytes per Service for nothing). */
        if (g->cap == 0) {
                g->slices = malloc(sizeof(*g->slices));
                if (!g->slices)
                        return -ENOMEM;
                g->cap = 1;
        } else if (ARRAY_RESERVE(g->slices, g->cap, g->n + 1) < 0)
                return -ENOMEM;
        g->slices[g->n++] = sl;
        return 0;
}

static void slice_index_remove(Manager *m, KubeEndpointSlice *sl)
{
        _cleanup_free_ char *key = slice_service_key(sl);
        SliceGroup *g = key ? hashmap_get(&m->slice_groups, key) : NULL;

        if (!g)
                return;
        for (size_t i = 0; i < g->n; i++)
                if (g->slices[i] == sl) {
                        g->slices[i] = g->slices[--g->n];
                        break;
                }
        if (g->n == 0) {
                (void)hashmap_remove(&m->slice_groups, g->key);
                slice_group_free(g);
        }
}

static void on_slice_event(Manager *m, KubeEndpointSlice *old, KubeEndpointSlice *new)
{
        /* A slice that changes its service-name label marks both Services. */
        if (old) {
                slice_index_remove(m, old);
                if (old->service_name)
                        reconcile_mark_if_relevant(m, old->meta.namespace, old->service_name);
        }
        if (new) {
                if (slice_index_add(m, new) < 0)
                        log_error("out of memory indexing EndpointSlice %s/%s", new->meta.namespace ?: "",
                                  new->meta.name ?: "");
                if (new->service_name && (!old || !streq_ptr(old->service_name, new->service_name) ||
                                          !streq_ptr(old->meta.namespace, new->meta.namespace)))
                        reconcile_mark_if_relevant(m, new->meta.namespace, new->service_name);
        }
}

/* ---- cluster networks ---- */

static void *cidr_source_transform(KubeInformer *inf, json_t *o, void *userdata)
{
        WatchCtx *ctx = userdata;
        KubeParseError e = {};
        void *ret = NULL;
        int r = -EINVAL;
        (void)inf;

        switch (ctx->kind) {
        case WATCH_NODES:
                r = kube_node_parse(o, (KubeNode **)&ret, &e);
                if (r >= 0)
                        kube_object_meta_trim(&((KubeNode *)ret)->meta);
                break;
        case WATCH_SERVICECIDRS:
                r = kube_servicecidr_parse(o, (KubeServiceCIDR **)&ret, &e);
                break;
        case WATCH_CONTROLLER_MANAGERS:
                r = kube_pod_parse(o, (KubePod **)&ret, &e);
                if (r >= 0)
                        kube_object_meta_trim(&((KubePod *)ret)->meta);
                break;
        case WATCH_KUBEADM_CONFIG:
                r = kube_configmap_parse(o, (KubeConfigMap **)&ret, &e);
                break;
        default:
                break;
        }
        if (r < 0)
                log_debug("skipping a %s object: %s", watch_kind_to_string(ctx->kind), e.message);
        return r < 0 ? NULL : ret;
}

static void node_free(void *p)
{
        kube_node_free(p);
}
static void servicecidr_free(void *p)
{
        kube_servicecidr_free(p);
}
static void pod_free(void *p)
{
        kube_pod_free(p);
}
static void configmap_free(void *p)
{
        kube_configmap_free(p);
}

static bool strv_equal(char **a, char **b)
{
        for (; a && *a && b && *b; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return (!a || !*a) && (!b || !*b);
}

void watch_done(Manager *m)
{
        const char *key;
        SliceGroup *g;

        HASHMAP_FOREACH(&m->slice_groups, i, key, g)
        slice_group_free(g);
        hashmap_done(&m->slice_groups);
}

static void check_synced(Manager *m)
{
        if (m->startup.phase != KVPD_PHASE_WAITING_FOR_SYNC || m->probes_pending > 0)
                return;
        for (WatchKind k = 0; k < _WATCH_KIND_MAX; k++)
                if (m->watch_enabled[k] && (!m->informers[k] || !kube_informer_synced(m->informers[k])))
                        return;
        log_info("all watches synced (%zu services, %zu endpointslices, %zu nodes)",
                 kube_informer_size(m->informers[WATCH_SERVICES]),
                 kube_informer_size(m->informers[WATCH_ENDPOINTSLICES]),
                 kube_informer_size(m->informers[WATCH_NODES]));
        reconcile_mark_cidrs(m);
        reconcile_mark_cached(m);
        m->reports->startup_event(m, STARTUP_SYNCED);
}

static void on_item_event(KubeInformer *inf, KubeWatchEventType type, const char *key, void *old, void *new,
                          void *userdata)
{
        WatchCtx *ctx = userdata;
        Manager *m = ctx->manager;
        (void)inf;
        (void)type;

        switch (ctx->kind) {
        case WATCH_SERVICES:
                on_service_event(m, key, old, new);
                break;
        case WATCH_ENDPOINTSLICES:
                on_slice_event(m, old, new);
                break;
        case WATCH_NODES: {
                KubeNode *a = old, *b = new;
                /* Nodes change every few seconds (status); only their pod
                 * CIDRs matter here. */
                if (!a || !b || !strv_equal(a->pod_cidrs, b->pod_cidrs))
                        reconcile_mark_cidrs(m);
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
        /* A relist reports every change as an event (the informer diffs it
         * against its cache); the Services kvpd tracks are looked at again
         * anyway, which costs no more than their number. */
        if (ctx->manager->startup.phase != KVPD_PHASE_WAITING_FOR_SYNC)
                reconcile_mark_all(ctx->manager);
        check_synced(ctx->manager);
}

static int informer_start(Manager *m, WatchKind k)
{
        KubeInformerOps ops = {
                .item_event = on_item_event, .synced = on_synced, .transform = cidr_source_transform};
        const KubeResource *res;
        KubeInformerOptions opts = {};
        int r;

        switch (k) {
        case WATCH_SERVICES:
                res = &kube_resource_services;
                opts.namespace = m->config.namespace;
                ops.transform = service_transform;
                ops.free_item = service_item_free;
                break;
        case WATCH_ENDPOINTSLICES:
                res = &kube_resource_endpointslices;
                opts.namespace = m->config.namespace;
                /* Only slices that belong to a Service. */
                opts.label_selector = KUBE_LABEL_SERVICE_NAME;
                ops.transform = slice_transform;
                ops.free_item = slice_free;
                break;
        case WATCH_NODES:
                res = &kube_resource_nodes;
                ops.free_item = node_free;
                break;
        case WATCH_SERVICECIDRS:
                res = &kube_resource_servicecidrs;
                ops.free_item = servicecidr_free;
                break;
        case WATCH_CONTROLLER_MANAGERS:
                res = &kube_resource_pods;
                opts.namespace = "kube-system";
                opts.label_selector = "component=kube-controller-manager";
                ops.free_item = pod_free;
                break;
        case WATCH_KUBEADM_CONFIG:
                res = &kube_resource_configmaps;
                opts.namespace = "kube-system";
                opts.field_selector = "metadata.name=kubeadm-config";
                ops.free_item = configmap_free;
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
                log_error("cannot probe %s; cluster networks from it are not used",
                          watch_kind_to_string(ctx->kind));
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
                r = sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, PROBE_RETRY_USEC, 0,
                                               on_probe_retry, ctx);
                if (r < 0)
                        log_error_errno(r, "cannot schedule a probe of %s: %m",
                                        watch_kind_to_string(ctx->kind));
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
                log_warning("probe of %s answered HTTP %ld; watching it anyway",
                            watch_kind_to_string(ctx->kind), resp->http_status);
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

        r = kube_resource_path(resources[k], k == WATCH_SERVICECIDRS ? NULL : "kube-system", NULL, NULL,
                               &path);
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
        static const WatchKind optional[] = {WATCH_SERVICECIDRS, WATCH_CONTROLLER_MANAGERS,
                                             WATCH_KUBEADM_CONFIG};
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
