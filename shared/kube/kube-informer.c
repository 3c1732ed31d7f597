/* SPDX-License-Identifier: Apache-2.0 */
/* Informers: client-go's reflector in C. LIST (paged) replaces the cache,
 * WATCH from the list's resourceVersion keeps it current, and every way a
 * watch can end is mapped to the right next step:
 *   clean end of stream           -> watch again from the last RV
 *   ERROR 410 / HTTP 410 / 504 RV -> list again, diffing against the cache
 *   anything else                 -> back off (honouring Retry-After), retry
 * Diffing a relist against the cache, and skipping events whose object RV
 * the cache already holds, is what lets consumers see every change once.
 *
 * The cache is a hash table of entries (key, uid, resourceVersion, item).
 * The item is the object's JSON, or, with ops.transform, whatever the
 * consumer keeps of it: kvpd keeps a few fields of 10,000 Services instead
 * of 10,000 jansson trees (176 MB, and lookups that dominated its profile). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hashmap.h"
#include "clock.h"
#include "kube-client.h"
#include "kube-internal.h"
#include "log.h"

#define DEFAULT_PAGE_LIMIT 500U
#define DEFAULT_WATCH_TIMEOUT_MIN_SEC 300U
#define DEFAULT_WATCH_TIMEOUT_MAX_SEC 600U
#define DEFAULT_WATCH_IDLE_USEC (150 * USEC_PER_SEC)
#define DEFAULT_BACKOFF_INITIAL_USEC (800 * USEC_PER_MSEC)
#define DEFAULT_BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
/* etcd refuses objects over 1.5 MiB; an event ten times that is a broken stream. */
#define WATCH_EVENT_MAX (16U * 1024U * 1024U)
/* client-go treats a watch that ends this quickly with no event as a failure. */
#define WATCH_SHORT_USEC USEC_PER_SEC

/* Negative codes the watch data path uses to say how a stream ended. */
#define WATCH_EXPIRED (-ESTALE)

typedef enum NextAction {
        NEXT_LIST,
        NEXT_WATCH,
} NextAction;

struct KubeInformer {
        KubeClient *client;
        const KubeResource *res;
        char *namespace, *label_selector, *field_selector;
        unsigned page_limit;
        KubeInformerOps ops;
        void *userdata;

        Hashmap cache;   /* key -> CacheEntry */
        Hashmap listing; /* keys of the list being paged in (key -> itself) */
        char *list_rv, *list_continue;
        unsigned expired_in_a_row;
        char *rv;
        bool synced;

        KubeHttp *http;
        KubeJsonSplitter splitter;
        uint64_t watch_started_usec;
        unsigned watch_events;

        sd_event_source *retry;
        NextAction next;
        KubeBackoff backoff;
        uint64_t watch_timeout_min, watch_timeout_max, idle_usec;

        unsigned busy;
        bool freed;
};

/* One allocation per entry: key, uid and resourceVersion follow the struct
 * (an entry never changes; a new version is a new entry). Four allocations
 * cost about 50 bytes more per cached object, 1 MB at 20,000 objects. */
typedef struct CacheEntry {
        char *key;  /* "namespace/name", or "name" */
        char *uid;  /* NULL if absent */
        char *rv;   /* NULL if absent */
        void *item; /* the JSON (incref'd), or ops.transform's result */
        char strings[];
} CacheEntry;

static void entry_free(KubeInformer *inf, CacheEntry *e)
{
        if (!e)
                return;
        if (e->item) {
                if (inf->ops.transform) {
                        if (inf->ops.free_item)
                                inf->ops.free_item(e->item);
                } else
                        json_decref(e->item);
        }
        free(e);
}

static void entries_clear(KubeInformer *inf, Hashmap *h)
{
        const char *key;
        CacheEntry *e;

        HASHMAP_FOREACH(h, i, key, e)
        entry_free(inf, e);
        hashmap_done(h);
}

static void keys_clear(Hashmap *h)
{
        const char *key;
        char *v;

        HASHMAP_FOREACH(h, i, key, v)
        free(v);
        hashmap_done(h);
}

static void informer_free_now(KubeInformer *inf)
{
        kube_http_cancel(inf->http);
        (void)sd_event_source_disable_unref(inf->retry);
        entries_clear(inf, &inf->cache);
        keys_clear(&inf->listing);
        kube_json_splitter_done(&inf->splitter);
        free(inf->namespace);
        free(inf->label_selector);
        free(inf->field_selector);
        free(inf->list_rv);
        free(inf->list_continue);
        free(inf->rv);
        free(inf);
}

KubeInformer *kube_informer_free(KubeInformer *inf)
{
        if (!inf)
                return NULL;
        if (inf->busy > 0) {
                /* Inside one of our callbacks: stop all activity now, release
                 * the memory when the callback chain unwinds. */
                inf->freed = true;
                kube_http_cancel(inf->http);
                inf->http = NULL;
                inf->retry = sd_event_source_disable_unref(inf->retry);
                return NULL;
        }
        informer_free_now(inf);
        return NULL;
}

static void enter(KubeInformer *inf)
{
        inf->busy++;
}

/* Returns true if the informer is gone and must not be touched. */
static bool leave(KubeInformer *inf)
{
        if (--inf->busy == 0 && inf->freed) {
                informer_free_now(inf);
                return true;
        }
        return inf->freed;
}

static const char *meta_str(json_t *obj, const char *key)
{
        return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static int object_key(KubeInformer *inf, json_t *obj, char **ret)
{
        const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");

        if (isempty(name))
                return -EBADMSG;
        if (!isempty(ns)) {
                if (asprintf(ret, "%s/%s", ns, name) < 0)
                        return -ENOMEM;
        } else if (!(*ret = strdup(name)))
                return -ENOMEM;
        return 0;
}

static int set_str(char **p, const char *v)
{
        char *n = NULL;

        if (v && !(n = strdup(v)))
                return -ENOMEM;
        free(*p);
        *p = n;
        return 0;
}

/* Builds an entry for obj; NULL on -ENOMEM or -EBADMSG (no name). */
static int entry_new(KubeInformer *inf, json_t *obj, CacheEntry **ret)
{
        const char *uid = meta_str(obj, "uid"), *rv = meta_str(obj, "resourceVersion");
        const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");
        size_t n_ns = isempty(ns) ? 0 : strlen(ns) + 1, n_name, n_uid = uid ? strlen(uid) + 1 : 0,
               n_rv = rv ? strlen(rv) + 1 : 0;
        CacheEntry *e;
        char *p;

        if (isempty(name))
                return -EBADMSG;
        n_name = strlen(name) + 1;
        e = calloc(1, sizeof(*e) + n_ns + n_name + n_uid + n_rv);
        if (!e)
                return -ENOMEM;
        /* object_key()'s "namespace/name", or "name"; then uid, rv. */
        p = e->key = e->strings;
        if (n_ns)
                p = mempcpy(mempcpy(p, ns, n_ns - 1), "/", 1);
        p = mempcpy(p, name, n_name);
        if (uid)
                p = mempcpy(e->uid = p, uid, n_uid);
        if (rv)
                (void)mempcpy(e->rv = p, rv, n_rv);
        e->item = inf->ops.transform ? inf->ops.transform(inf, obj, inf->userdata) : json_incref(obj);
        *ret = e;
        return 0;
}

/* Calls the consumer. old is the entry the cache held (DELETED, MODIFIED),
 * new the one it holds now (ADDED, MODIFIED); obj, if set, the object a
 * DELETED event carried. Returns -ECANCELED if the consumer freed us. */
static int emit(KubeInformer *inf, KubeWatchEventType type, CacheEntry *old, CacheEntry *new, json_t *obj)
{
        if (inf->ops.transform) {
                if (inf->ops.item_event)
                        inf->ops.item_event(inf, type, (new ?: old)->key, old ? old->item : NULL,
                                            new ? new->item : NULL, inf->userdata);
        } else if (inf->ops.event) {
                json_t *o = new ? new->item : old->item;
                /* The event carries the last state; if the cache held an
                 * older incarnation, that is the one the consumer knows. */
                if (type == KUBE_WATCH_DELETED && obj && streq_ptr(old->uid, meta_str(obj, "uid")))
                        o = obj;
                inf->ops.event(inf, type, o, inf->userdata);
        }
        return inf->freed ? -ECANCELED : 0;
}

static int start_list(KubeInformer *inf);
static int start_watch(KubeInformer *inf);

static void run_next(KubeInformer *inf);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        KubeInformer *inf = userdata;

        enter(inf);
        run_next(inf);
        (void)leave(inf);
        return 0;
}

static void schedule(KubeInformer *inf, NextAction next, uint64_t delay)
{
        int r;

        inf->next = next;
        if (inf->freed)
                return;
        if (delay == 0) {
                run_next(inf);
                return;
        }
        log_debug("kube: %s: %s again in %" PRIu64 " ms", inf->res->plural,
                  next == NEXT_LIST ? "list" : "watch", (uint64_t)(delay / USEC_PER_MSEC));
        if (!inf->retry) {
                r = sd_event_add_time_relative(kube_client_event(inf->client), &inf->retry, CLOCK_MONOTONIC,
                                               delay, USEC_PER_MSEC, on_retry, inf);
                if (r >= 0)
                        (void)sd_event_source_set_description(inf->retry, "kube-informer-retry");
        } else {
                r = sd_event_source_set_time_relative(inf->retry, delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(inf->retry, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_debug_errno(r, "kube: %s: cannot arm the retry timer: %m", inf->res->plural);
}

static void run_next(KubeInformer *inf)
{
        int r;

        if (inf->freed)
                return;
        r = inf->next == NEXT_LIST ? start_list(inf) : start_watch(inf);
        if (r < 0) {
                log_debug_errno(r, "kube: %s: cannot start a request: %m", inf->res->plural);
                schedule(inf, inf->next, MAX(kube_backoff_next(&inf->backoff), USEC_PER_MSEC));
        }
}

/* Non-2xx answers to a list or a watch that are not about expiry. */
static void retry_after_error(KubeInformer *inf, const KubeHttpResult *res, NextAction next)
{
        uint64_t delay = kube_backoff_next(&inf->backoff);

        if (res->error == 0 && res->status == 401 && kube_client_refresh_credentials(inf->client, true) > 0)
                delay = 0;
        if (res->error == 0 && res->retry_after_sec > 0 && (res->status == 429 || res->status >= 500))
                delay = MAX(delay, (uint64_t)res->retry_after_sec * USEC_PER_SEC);
        if (res->error < 0)
                log_debug_errno(res->error, "kube: %s: request failed: %m", inf->res->plural);
        else
                log_debug("kube: %s: HTTP %ld", inf->res->plural, res->status);
        schedule(inf, next, delay);
}

static int build_path(KubeInformer *inf, bool watch, char **ret)
{
        _cleanup_(kube_buf_done) KubeBuf b = {};
        _cleanup_free_ char *base = NULL;
        int r;

        r = kube_resource_path(inf->res, inf->namespace, NULL, NULL, &base);
        if (r < 0)
                return r;
        r = kube_buf_append(&b, base, strlen(base));
        if (r < 0)
                return r;
        /* Sorted keys, as client-go sends them. */
        if (watch && (r = kube_query_append(&b, "allowWatchBookmarks", "true")) < 0)
                return r;
        if (!watch && inf->list_continue && (r = kube_query_append(&b, "continue", inf->list_continue)) < 0)
                return r;
        if (inf->field_selector && (r = kube_query_append(&b, "fieldSelector", inf->field_selector)) < 0)
                return r;
        if (inf->label_selector && (r = kube_query_append(&b, "labelSelector", inf->label_selector)) < 0)
                return r;
        if (!watch) {
                char n[16];
                (void)snprintf(n, sizeof(n), "%u", inf->page_limit);
                r = kube_query_append(&b, "limit", n);
                if (r < 0)
                        return r;
        } else {
                char t[24];
                (void)snprintf(t, sizeof(t), "%" PRIu64,
                               kube_random_range(inf->watch_timeout_min, inf->watch_timeout_max));
                if ((r = kube_query_append(&b, "resourceVersion", inf->rv)) < 0 ||
                    (r = kube_query_append(&b, "timeoutSeconds", t)) < 0 ||
                    (r = kube_query_append(&b, "watch", "true")) < 0)
                        return r;
        }
        return kube_buf_steal(&b, ret);
}

/* ---- list ---- */

/* One list item into the cache at once, telling the consumer what changed:
 * a list is applied page by page, so that no callback handles more than one
 * page of objects whatever the size of the list. The keys seen are kept in
 * inf->listing until the last page, which removes what was not seen. */
static int apply_listed(KubeInformer *inf, CacheEntry *n)
{
        CacheEntry *old = hashmap_get(&inf->cache, n->key);
        int r;

        if (!hashmap_get(&inf->listing, n->key)) {
                char *seen = strdup(n->key);

                if (!seen || hashmap_put(&inf->listing, seen, seen) < 0) {
                        free(seen);
                        entry_free(inf, n);
                        return -ENOMEM;
                }
        }
        if (old && streq_ptr(old->uid, n->uid) && streq_ptr(old->rv, n->rv)) {
                entry_free(inf, n);
                return 0;
        }
        if (hashmap_put(&inf->cache, n->key, n) < 0) {
                entry_free(inf, n);
                return -ENOMEM;
        }
        if (!old)
                r = emit(inf, KUBE_WATCH_ADDED, NULL, n, NULL);
        else if (!streq_ptr(old->uid, n->uid)) {
                /* Deleted and recreated while we were not watching. */
                r = emit(inf, KUBE_WATCH_DELETED, old, NULL, NULL);
                if (r >= 0)
                        r = emit(inf, KUBE_WATCH_ADDED, NULL, n, NULL);
        } else
                r = emit(inf, KUBE_WATCH_MODIFIED, old, n, NULL);
        entry_free(inf, old);
        return r;
}

/* The last page is in: what the list did not have is gone. */
static int apply_list(KubeInformer *inf)
{
        _cleanup_free_ CacheEntry **gone = NULL;
        size_t n_gone = 0;
        const char *key;
        CacheEntry *e;
        int r = 0;

        /* Out of the table first, so that nothing is freed twice whatever
         * the consumer does from its callbacks. */
        gone = calloc(hashmap_size(&inf->cache) + 1, sizeof(*gone));
        if (!gone)
                return -ENOMEM;
        HASHMAP_FOREACH(&inf->cache, k, key, e)
        if (!hashmap_get(&inf->listing, e->key))
                gone[n_gone++] = e;
        keys_clear(&inf->listing);
        for (size_t j = 0; r >= 0 && j < n_gone; j++) {
                (void)hashmap_remove(&inf->cache, gone[j]->key);
                r = emit(inf, KUBE_WATCH_DELETED, gone[j], NULL, NULL);
                entry_free(inf, gone[j]);
        }
        if (r < 0)
                return r;

        r = set_str(&inf->rv, inf->list_rv);
        if (r < 0)
                return r;
        inf->synced = true;
        inf->expired_in_a_row = 0;
        kube_backoff_reset(&inf->backoff);
        log_debug("kube: %s: synced, %zu objects at resourceVersion %s", inf->res->plural,
                  hashmap_size(&inf->cache), inf->rv);
        if (inf->ops.synced) {
                inf->ops.synced(inf, inf->userdata);
                if (inf->freed)
                        return -ECANCELED;
        }
        return 0;
}

static int take_page(KubeInformer *inf, const KubeHttpResult *res)
{
        _cleanup_(json_decrefp) json_t *list = NULL;
        json_t *items = NULL, *item = NULL, *meta = NULL;
        const char *rv, *cont;
        json_error_t jerr;
        size_t i;
        int r;

        list = json_loadb(res->body, res->body_size, JSON_ALLOW_NUL, &jerr);
        if (!json_is_object(list))
                return -EBADMSG;
        meta = json_object_get(list, "metadata");
        rv = json_string_value(json_object_get(meta, "resourceVersion"));
        cont = json_string_value(json_object_get(meta, "continue"));
        items = json_object_get(list, "items");
        if (isempty(rv) || (!json_is_array(items) && !json_is_null(items)))
                return -EBADMSG;
        /* Every page carries the first page's RV. */
        if (!inf->list_rv && (r = set_str(&inf->list_rv, rv)) < 0)
                return r;

        json_array_foreach(items, i, item)
        {
                CacheEntry *e = NULL;

                if (!json_is_object(item))
                        return -EBADMSG;
                if (!meta_str(item, "name") || isempty(meta_str(item, "name"))) {
                        log_debug("kube: %s: list item %zu has no name, skipped", inf->res->plural, i);
                        continue;
                }
                /* List items of built-in types carry no kind; watch objects
                 * do. Give consumers the same shape either way. */
                if (!json_object_get(item, "kind")) {
                        char api_version[128];

                        (void)snprintf(api_version, sizeof(api_version), "%s%s%s", inf->res->group,
                                       isempty(inf->res->group) ? "" : "/", inf->res->version);
                        (void)json_object_set_new(item, "kind", json_string(inf->res->kind));
                        (void)json_object_set_new(item, "apiVersion", json_string(api_version));
                }
                r = entry_new(inf, item, &e);
                if (r < 0)
                        return r;
                r = apply_listed(inf, e);
                if (r < 0)
                        return r;
        }
        r = set_str(&inf->list_continue, isempty(cont) ? NULL : cont);
        if (r < 0)
                return r;
        return 0;
}

static void on_list_done(KubeHttp *h, const KubeHttpResult *res, void *userdata)
{
        KubeInformer *inf = userdata;
        int r;

        inf->http = NULL;
        enter(inf);
        if (res->error == 0 && res->status == 410) {
                /* The continue token expired: start over. Twice in a row means
                 * the lists are too slow for the server's token lifetime; wait. */
                log_debug("kube: %s: list continuation expired, listing from scratch", inf->res->plural);
                inf->list_continue = mfree(inf->list_continue);
                inf->list_rv = mfree(inf->list_rv);
                kube_client_stats(inf->client)->relists++;
                schedule(inf, NEXT_LIST, inf->expired_in_a_row++ > 0 ? kube_backoff_next(&inf->backoff) : 0);
        } else if (res->error < 0 || res->status != 200)
                retry_after_error(inf, res, NEXT_LIST);
        else {
                r = take_page(inf, res);
                if (r == -ECANCELED)
                        ; /* the consumer freed us */
                else if (r < 0) {
                        log_debug_errno(r, "kube: %s: bad list response: %m", inf->res->plural);
                        kube_client_stats(inf->client)->errors++;
                        schedule(inf, NEXT_LIST, kube_backoff_next(&inf->backoff));
                } else if (inf->list_continue)
                        run_next(inf);
                else {
                        r = apply_list(inf);
                        if (r == -ECANCELED)
                                ;
                        else if (r < 0)
                                schedule(inf, NEXT_LIST, kube_backoff_next(&inf->backoff));
                        else
                                schedule(inf, NEXT_WATCH, 0);
                }
        }
        (void)leave(inf);
}

static int start_list(KubeInformer *inf)
{
        static const KubeHttpOps ops = {.done = on_list_done};
        _cleanup_free_ char *path = NULL;
        int r;

        inf->next = NEXT_LIST;
        if (!inf->list_continue) {
                /* A fresh list: the keys seen so far are forgotten (the
                 * objects stay cached: they were true when listed). */
                keys_clear(&inf->listing);
                inf->list_rv = mfree(inf->list_rv);
        }
        r = build_path(inf, false, &path);
        if (r < 0)
                return r;
        r = kube_http_start(inf->client, &(KubeHttpParams){.path = path, .timeout_usec = 60 * USEC_PER_SEC},
                            &ops, inf, &inf->http);
        if (r < 0)
                return r;
        kube_client_stats(inf->client)->lists++;
        return 0;
}

/* ---- watch ---- */

static int apply_event(KubeInformer *inf, KubeWatchEventType type, json_t *obj)
{
        _cleanup_free_ char *key = NULL;
        CacheEntry *old = NULL, *e = NULL;
        const char *uid = meta_str(obj, "uid");
        int r;

        r = object_key(inf, obj, &key);
        if (r < 0)
                return r;
        old = hashmap_get(&inf->cache, key);

        if (type == KUBE_WATCH_DELETED) {
                if (!old)
                        return 0; /* already gone (seen in a relist) */
                (void)hashmap_remove(&inf->cache, key);
                r = emit(inf, KUBE_WATCH_DELETED, old, NULL, obj);
                entry_free(inf, old);
                return r;
        }

        if (old && streq_ptr(old->rv, meta_str(obj, "resourceVersion")) && streq_ptr(old->uid, uid))
                return 0; /* a replay of what we have */
        if (old && !streq_ptr(old->uid, uid)) {
                (void)hashmap_remove(&inf->cache, key);
                r = emit(inf, KUBE_WATCH_DELETED, old, NULL, NULL);
                entry_free(inf, old);
                if (r < 0)
                        return r;
                old = NULL;
        }
        r = entry_new(inf, obj, &e);
        if (r < 0)
                return r;
        if (hashmap_put(&inf->cache, e->key, e) < 0) {
                entry_free(inf, e);
                return -ENOMEM;
        }
        r = emit(inf, old ? KUBE_WATCH_MODIFIED : KUBE_WATCH_ADDED, old, e, NULL);
        entry_free(inf, old);
        return r;
}

static int on_watch_value(json_t *v, void *userdata)
{
        KubeInformer *inf = userdata;
        const char *type = json_string_value(json_object_get(v, "type"));
        json_t *obj = json_object_get(v, "object");
        const char *rv;
        KubeWatchEventType t;
        int r;

        if (!type || !json_is_object(obj))
                return -EBADMSG;
        if (streq(type, "ERROR")) {
                json_int_t code = json_integer_value(json_object_get(obj, "code"));
                const char *reason = json_string_value(json_object_get(obj, "reason"));

                log_debug("kube: %s: watch ERROR %" JSON_INTEGER_FORMAT " %s: %s", inf->res->plural, code,
                          reason ?: "", json_string_value(json_object_get(obj, "message")) ?: "");
                if (code == 410 || streq_ptr(reason, "Expired") || streq_ptr(reason, "Gone"))
                        return WATCH_EXPIRED;
                return -EPROTO;
        }

        rv = meta_str(obj, "resourceVersion");
        if (streq(type, "BOOKMARK")) {
                if (!isempty(rv) && (r = set_str(&inf->rv, rv)) < 0)
                        return r;
                inf->watch_events++;
                return 0;
        }
        if (streq(type, "ADDED"))
                t = KUBE_WATCH_ADDED;
        else if (streq(type, "MODIFIED"))
                t = KUBE_WATCH_MODIFIED;
        else if (streq(type, "DELETED"))
                t = KUBE_WATCH_DELETED;
        else
                return -EBADMSG;

        inf->watch_events++;
        kube_backoff_reset(&inf->backoff);
        if (!isempty(rv) && (r = set_str(&inf->rv, rv)) < 0)
                return r;
        r = apply_event(inf, t, obj);
        if (r == -EBADMSG) {
                log_debug("kube: %s: watch event without a name, ignored", inf->res->plural);
                return 0;
        }
        return r;
}

static int on_watch_data(KubeHttp *h, const char *p, size_t n, void *userdata)
{
        KubeInformer *inf = userdata;
        int r;

        enter(inf);
        r = kube_json_splitter_feed(&inf->splitter, p, n, on_watch_value, inf);
        if (leave(inf))
                return -ECANCELED;
        return r;
}

static bool too_large_rv(const KubeHttpResult *res)
{
        _cleanup_(json_decrefp) json_t *st = NULL;
        json_t *causes = NULL, *c = NULL;
        size_t i;

        if (res->status != 504)
                return false;
        st = json_loadb(res->body, res->body_size, 0, NULL);
        causes = json_object_get(json_object_get(st, "details"), "causes");
        json_array_foreach(causes, i, c) if (streq_ptr(json_string_value(json_object_get(c, "reason")),
                                                       "ResourceVersionTooLarge")) return true;
        return strstr(json_string_value(json_object_get(st, "message")) ?: "", "Too large resource version");
}

static void relist(KubeInformer *inf, uint64_t delay)
{
        kube_client_stats(inf->client)->relists++;
        inf->list_continue = mfree(inf->list_continue);
        schedule(inf, NEXT_LIST, delay);
}

static void on_watch_done(KubeHttp *h, const KubeHttpResult *res, void *userdata)
{
        KubeInformer *inf = userdata;

        inf->http = NULL;
        enter(inf);
        if (res->error == WATCH_EXPIRED) {
                log_debug("kube: %s: resourceVersion %s expired, relisting", inf->res->plural,
                          inf->rv ?: "");
                relist(inf, 0);
        } else if (res->error < 0) {
                log_debug_errno(res->error, "kube: %s: watch failed: %m", inf->res->plural);
                schedule(inf, NEXT_WATCH, kube_backoff_next(&inf->backoff));
        } else if (res->status == 200) {
                /* The server's timeoutSeconds ran out: carry on from the last
                 * RV. One that closes at once with nothing is a failing server. */
                bool short_lived =
                        now_usec() - inf->watch_started_usec < WATCH_SHORT_USEC && inf->watch_events == 0;

                if (kube_json_splitter_partial(&inf->splitter))
                        log_debug("kube: %s: stream ended inside an event", inf->res->plural);
                schedule(inf, NEXT_WATCH, short_lived ? kube_backoff_next(&inf->backoff) : 0);
        } else if (res->status == 410)
                relist(inf, 0);
        else if (too_large_rv(res))
                relist(inf,
                       MAX((uint64_t)res->retry_after_sec * USEC_PER_SEC, kube_backoff_next(&inf->backoff)));
        else
                retry_after_error(inf, res, NEXT_WATCH);
        (void)leave(inf);
}

static int start_watch(KubeInformer *inf)
{
        static const KubeHttpOps ops = {.data = on_watch_data, .done = on_watch_done};
        _cleanup_free_ char *path = NULL;
        int r;

        inf->next = NEXT_WATCH;
        r = build_path(inf, true, &path);
        if (r < 0)
                return r;
        kube_json_splitter_done(&inf->splitter);
        inf->watch_events = 0;
        inf->watch_started_usec = now_usec();
        r = kube_http_start(
                inf->client,
                &(KubeHttpParams){.path = path, .stream = true, .idle_timeout_usec = inf->idle_usec}, &ops,
                inf, &inf->http);
        if (r < 0)
                return r;
        kube_client_stats(inf->client)->watches++;
        return 0;
}

/* ---- public ---- */

int kube_informer_new(KubeClient *c, const KubeResource *res, const KubeInformerOptions *opts,
                      const KubeInformerOps *ops, void *userdata, KubeInformer **ret)
{
        _cleanup_(kube_informer_freep) KubeInformer *inf = NULL;
        uint64_t a, b;
        int r;

        if (!c || !res || !ret)
                return -EINVAL;
        if (opts && opts->namespace && !res->namespaced)
                return -EINVAL;

        inf = calloc(1, sizeof(*inf));
        if (!inf)
                return -ENOMEM;
        inf->client = c;
        inf->res = res;
        inf->ops = ops ? *ops : (KubeInformerOps){};
        inf->userdata = userdata;
        inf->page_limit = opts && opts->page_limit ? opts->page_limit : DEFAULT_PAGE_LIMIT;
        kube_json_splitter_init(&inf->splitter, WATCH_EVENT_MAX);
        if (opts && ((r = set_str(&inf->namespace, opts->namespace)) < 0 ||
                     (r = set_str(&inf->label_selector,
                                  isempty(opts->label_selector) ? NULL : opts->label_selector)) < 0 ||
                     (r = set_str(&inf->field_selector,
                                  isempty(opts->field_selector) ? NULL : opts->field_selector)) < 0))
                return r;

        inf->watch_timeout_min = DEFAULT_WATCH_TIMEOUT_MIN_SEC;
        inf->watch_timeout_max = DEFAULT_WATCH_TIMEOUT_MAX_SEC;
        if (opts && opts->watch_timeout_min_sec > 0) {
                inf->watch_timeout_min = opts->watch_timeout_min_sec;
                inf->watch_timeout_max = MAX(opts->watch_timeout_max_sec, opts->watch_timeout_min_sec);
        } else if (kube_env_range("KVEGRESS_WATCH_TIMEOUT_SEC", &a, &b) && a > 0) {
                inf->watch_timeout_min = a;
                inf->watch_timeout_max = b;
        }
        inf->idle_usec = DEFAULT_WATCH_IDLE_USEC;
        if (opts && opts->watch_idle_timeout_usec > 0)
                inf->idle_usec = opts->watch_idle_timeout_usec;
        else if (kube_env_range("KVEGRESS_WATCH_IDLE_SEC", &a, &b) && a > 0)
                inf->idle_usec = a * USEC_PER_SEC;
        inf->backoff.initial_usec = DEFAULT_BACKOFF_INITIAL_USEC;
        inf->backoff.max_usec = DEFAULT_BACKOFF_MAX_USEC;
        if (opts && opts->backoff_initial_usec > 0) {
                inf->backoff.initial_usec = opts->backoff_initial_usec;
                inf->backoff.max_usec = MAX(opts->backoff_max_usec, opts->backoff_initial_usec);
        } else if (kube_env_range("KVEGRESS_BACKOFF_MSEC", &a, &b) && a > 0) {
                inf->backoff.initial_usec = a * USEC_PER_MSEC;
                inf->backoff.max_usec = b * USEC_PER_MSEC;
        }

        r = start_list(inf);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(inf);
        return 0;
}

bool kube_informer_synced(const KubeInformer *inf)
{
        return inf && inf->synced;
}

static CacheEntry *lookup(KubeInformer *inf, const char *namespace, const char *name)
{
        _cleanup_free_ char *key = NULL;

        if (!inf || !name)
                return NULL;
        if (!namespace)
                return hashmap_get(&inf->cache, name);
        if (asprintf(&key, "%s/%s", namespace, name) < 0)
                return NULL;
        return hashmap_get(&inf->cache, key);
}

json_t *kube_informer_get(KubeInformer *inf, const char *namespace, const char *name)
{
        CacheEntry *e = lookup(inf, namespace, name);

        return e && !inf->ops.transform ? e->item : NULL;
}

void *kube_informer_get_item(KubeInformer *inf, const char *namespace, const char *name)
{
        CacheEntry *e = lookup(inf, namespace, name);

        return e ? e->item : NULL;
}

size_t kube_informer_size(const KubeInformer *inf)
{
        return inf ? hashmap_size(&inf->cache) : 0;
}

int kube_informer_foreach(KubeInformer *inf, int (*fn)(json_t *object, void *userdata), void *userdata)
{
        const char *key;
        CacheEntry *e;

        if (!inf || !fn || inf->ops.transform)
                return -EINVAL;
        HASHMAP_FOREACH(&inf->cache, i, key, e)
        {
                int r = fn(e->item, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

int kube_informer_foreach_item(KubeInformer *inf, int (*fn)(const char *key, void *item, void *userdata),
                               void *userdata)
{
        const char *key;
        CacheEntry *e;

        if (!inf || !fn)
                return -EINVAL;
        HASHMAP_FOREACH(&inf->cache, i, key, e)
        {
                int r = fn(key, e->item, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

const char *kube_informer_resource_version(const KubeInformer *inf)
{
        return inf ? inf->rv : NULL;
}
