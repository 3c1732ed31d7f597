/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A Kubernetes API client for sd-event daemons: libcurl's multi interface
 * driven by the daemon's event loop (no threads, no blocking calls), TLS by
 * openssl, JSON by jansson. Used by kvpd and kvelectd; kvnetd never links it.
 *
 * Two services:
 *  - one-shot requests (GET/POST/PUT/PATCH/DELETE) with a per-request
 *    timeout and a completion callback;
 *  - informers: list then watch one resource (optionally one namespace and
 *    selectors), keeping a cache of objects, relisting on 410 and resuming
 *    watches from the last seen resourceVersion. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kube-config.h"
#include "macros.h"

typedef struct KubeClient KubeClient;
typedef struct KubeRequest KubeRequest;
typedef struct KubeInformer KubeInformer;

/* One API resource. group "" is the core group (/api/v1). */
typedef struct KubeResource {
        const char *group;
        const char *version;
        const char *plural;
        const char *kind;
        bool namespaced;
} KubeResource;

extern const KubeResource kube_resource_services;
extern const KubeResource kube_resource_endpointslices;
extern const KubeResource kube_resource_nodes;
extern const KubeResource kube_resource_pods;
extern const KubeResource kube_resource_configmaps;
extern const KubeResource kube_resource_leases;
extern const KubeResource kube_resource_servicecidrs;
extern const KubeResource kube_resource_events;

/* Builds "/api/v1/namespaces/NS/services/NAME/status" and the like.
 * namespace NULL means all namespaces (for lists) or a cluster-scoped object;
 * name and subresource may be NULL. Path segments are escaped. */
int kube_resource_path(const KubeResource *res, const char *namespace, const char *name,
                       const char *subresource, char **ret);

typedef struct KubeClientOptions {
        /* Default timeout of one-shot requests (default 10 s). */
        uint64_t request_timeout_usec;
        /* Sent as User-Agent (default "kvegress/<version>"). */
        const char *user_agent;
        /* Added: how often a tokenFile is re-read even without a 401
         * (default 60 s, as client-go). */
        uint64_t token_reload_usec;
} KubeClientOptions;

int kube_client_new(sd_event *event, const KubeConfig *config, const KubeClientOptions *opts,
                    KubeClient **ret);
KubeClient *kube_client_free(KubeClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeClient *, kube_client_free);

/* The outcome of a one-shot request. */
typedef struct KubeResponse {
        /* 0 with http_status set, or a negative errno for transport failures
         * (-ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EPROTO for TLS...). */
        int error;
        long http_status;
        /* Parsed JSON body, or NULL (not JSON, or empty). Borrowed: valid
         * during the callback; json_incref() to keep it. */
        json_t *body;
        /* From a Status body: reason ("Conflict", "NotFound"...), message. */
        const char *reason;
        const char *message;
        /* Retry-After header in seconds, or 0. */
        unsigned retry_after_sec;
        /* CLOCK_MONOTONIC time the request was handed to the transport:
         * after its wait, if any, for a place among those in flight, and
         * before the server can have seen it. */
        uint64_t sent_usec;
} KubeResponse;

typedef void (*KubeResponseFn)(KubeClient *c, const KubeResponse *resp, void *userdata);

typedef struct KubeRequestOptions {
        /* 0 = the client's default. */
        uint64_t timeout_usec;
        /* Order among the requests waiting for a place in flight
         * (CLOCK_MONOTONIC usec, earliest first): the time by which this
         * one is needed. 0: the time of the call (first come, first
         * served). Under a backlog, kvelectd puts the renewal of the
         * leadership that ends first ahead of the others. */
        uint64_t priority_usec;
        /* For PATCH: "application/merge-patch+json",
         * "application/strategic-merge-patch+json", "application/json-patch+json". */
        const char *content_type;
} KubeRequestOptions;

/* method: "GET", "POST", "PUT", "PATCH", "DELETE". path includes the query.
 * body may be NULL. PATCH needs opts->content_type. Returns a negative errno
 * (and never calls cb) if the request could not be queued; transport and
 * HTTP failures come through the callback. A 401 re-reads the credentials
 * and, if they changed, retries once before reporting. The callback is always called exactly once, from the
 * event loop (never from inside kube_request()), unless the request is
 * cancelled first. ret_request may be NULL if the caller never cancels; the
 * pointer is valid until the callback starts. */
int kube_request(KubeClient *c, const char *method, const char *path, json_t *body,
                 const KubeRequestOptions *opts, KubeResponseFn cb, void *userdata,
                 KubeRequest **ret_request);
/* Cancels a pending request; its callback is not called. NULL is fine. A
 * no-op from inside the request's own callback (it is finished then). */
void kube_request_cancel(KubeRequest *r);

/* Added: PATCH metadata.annotations with application/merge-patch+json.
 * annotations is an object of strings, or null to remove a key. If
 * resource_version is set it is sent in the patch, where the apiserver
 * treats it as a precondition (409 Conflict if the object moved on). */
int kube_request_merge_patch_annotations(KubeClient *c, const KubeResource *res, const char *namespace,
                                         const char *name, json_t *annotations, const char *resource_version,
                                         KubeResponseFn cb, void *userdata, KubeRequest **ret_request);

/* Added: re-reads the token file and client certificate files now (they
 * are also re-read on a 401, before each request if the certificate files
 * changed on disk, and every token_reload_usec for the token). Returns > 0
 * if a credential changed. */
int kube_client_reload_credentials(KubeClient *c);

/* Creates a core/v1 Event about an object (reason "EgressActive" etc.),
 * type "Normal" or "Warning". Fire and forget: failures are logged at debug.
 * Repeats are aggregated as client-go's EventCorrelator does (kube-events.c):
 * the same Event again bumps count and lastTimestamp of the one written
 * (PATCH), and a token bucket per object (burst 25, +1 per 5 min) drops the
 * rest. */
typedef struct KubeEventStats {
        uint64_t posted;     /* new Event objects */
        uint64_t patched;    /* count/lastTimestamp updates */
        uint64_t aggregated; /* repeats folded into an existing Event */
        uint64_t dropped;    /* over the per-object rate limit */
        uint64_t failed;     /* writes the API refused or that did not reach it */
} KubeEventStats;
void kube_client_get_event_stats(KubeClient *c, KubeEventStats *ret);
int kube_event_emit(KubeClient *c, const char *component, const char *host, const char *involved_kind,
                    const char *namespace, const char *name, const char *uid, const char *type,
                    const char *reason, const char *message);

typedef enum KubeWatchEventType {
        KUBE_WATCH_ADDED,
        KUBE_WATCH_MODIFIED,
        KUBE_WATCH_DELETED,
        _KUBE_WATCH_MAX,
        _KUBE_WATCH_INVALID = -EINVAL,
} KubeWatchEventType;

typedef struct KubeInformerOps {
        /* An object changed in the cache. object is borrowed (owned by the
         * cache; on DELETED, the last state). Events after a relist are
         * synthesised by diffing against the cache, so the consumer sees
         * each change once: no lost and no duplicated events. */
        void (*event)(KubeInformer *inf, KubeWatchEventType type, json_t *object, void *userdata);
        /* The cache is complete: after the first list, and after each relist. */
        void (*synced)(KubeInformer *inf, void *userdata);

        /* Added: keep the consumer's own form of each object instead of its
         * JSON. transform is called once per new object version (ADDED,
         * MODIFIED, and per list item); its result (NULL allowed) is the
         * cache's item, released with free_item. Then item_event replaces
         * event: old_item is what the cache held (DELETED, MODIFIED), valid
         * until the callback returns; new_item what it holds now (ADDED,
         * MODIFIED). kube_informer_get() and kube_informer_foreach() are then
         * unavailable; use the _item variants. */
        void *(*transform)(KubeInformer *inf, json_t *object, void *userdata);
        void (*free_item)(void *item);
        void (*item_event)(KubeInformer *inf, KubeWatchEventType type, const char *key, void *old_item,
                           void *new_item, void *userdata);
} KubeInformerOps;

typedef struct KubeInformerOptions {
        const char *namespace; /* NULL = all namespaces */
        const char *label_selector;
        const char *field_selector;
        /* Page size of lists (default 500). */
        unsigned page_limit;
        /* Added, for tests (0 = default; the environment variable named
         * overrides the default too):
         *  - watch timeoutSeconds, random in [min, max) (default [300, 600),
         *    KVEGRESS_WATCH_TIMEOUT_SEC="MIN,MAX" or "N");
         *  - idle timeout of a watch: no byte (event or bookmark) for this
         *    long drops and resumes it (default 150 s, longer than the
         *    apiserver's one-minute bookmarks; KVEGRESS_WATCH_IDLE_SEC);
         *  - backoff after errors, jittered and doubling (default 800 ms up to
         *    30 s, as client-go's reflector; KVEGRESS_BACKOFF_MSEC="MIN,MAX"). */
        unsigned watch_timeout_min_sec, watch_timeout_max_sec;
        uint64_t watch_idle_timeout_usec;
        uint64_t backoff_initial_usec, backoff_max_usec;
} KubeInformerOptions;

/* Starts listing at once; callbacks come from the event loop only. Informers
 * must be freed before their client. kube_informer_free() may be called from
 * the informer's own callbacks. synced() is called after the first list and
 * after every relist (410, 504 too-large RV, expired continue). */
int kube_informer_new(KubeClient *c, const KubeResource *res, const KubeInformerOptions *opts,
                      const KubeInformerOps *ops, void *userdata, KubeInformer **ret);
KubeInformer *kube_informer_free(KubeInformer *inf);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeInformer *, kube_informer_free);

bool kube_informer_synced(const KubeInformer *inf);
/* Borrowed; NULL if absent. namespace NULL for cluster-scoped objects. */
json_t *kube_informer_get(KubeInformer *inf, const char *namespace, const char *name);
/* Added: the cached item (the JSON without ops.transform); NULL if absent. */
void *kube_informer_get_item(KubeInformer *inf, const char *namespace, const char *name);
size_t kube_informer_size(const KubeInformer *inf);
/* Calls fn for every cached object; stops early if fn returns non-zero and
 * returns that value. Order is unspecified. */
int kube_informer_foreach(KubeInformer *inf, int (*fn)(json_t *object, void *userdata), void *userdata);
int kube_informer_foreach_item(KubeInformer *inf, int (*fn)(const char *key, void *item, void *userdata),
                               void *userdata);
/* The resourceVersion the informer has seen last. */
const char *kube_informer_resource_version(const KubeInformer *inf);

/* Counters for tests and benchmarks: requests started, list pages, watches
 * started, relists (incl. expired continues), failed exchanges (transport
 * errors and aborted streams; HTTP errors are not counted). */
typedef struct KubeClientStats {
        uint64_t requests;
        uint64_t lists;
        uint64_t watches;
        uint64_t relists;
        uint64_t errors;
} KubeClientStats;
void kube_client_get_stats(const KubeClient *c, KubeClientStats *ret);
/* The earliest priority (KubeRequestOptions.priority_usec) among the
 * requests waiting for a place in flight; false when none waits. How
 * little time it has left says how far behind the API is. */
bool kube_client_earliest_waiting(const KubeClient *c, uint64_t *ret_priority_usec);
