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
        /* CLOCK_MONOTONIC time the request was handed to the transport. */
        uint64_t sent_usec;
} KubeResponse;

typedef void (*KubeResponseFn)(KubeClient *c, const KubeResponse *resp, void *userdata);

typedef struct KubeRequestOptions {
        /* 0 = the client's default. */
        uint64_t timeout_usec;
        /* For PATCH: "application/merge-patch+json",
         * "application/strategic-merge-patch+json", "application/json-patch+json". */
        const char *content_type;
} KubeRequestOptions;

/* method: "GET", "POST", "PUT", "PATCH", "DELETE". path includes the query.
 * body may be NULL. The callback is always called exactly once, from the
 * event loop (never from inside kube_request()), unless the request is
 * cancelled first. ret_request may be NULL if the caller never cancels. */
int kube_request(KubeClient *c, const char *method, const char *path, json_t *body,
                 const KubeRequestOptions *opts, KubeResponseFn cb, void *userdata, KubeRequest **ret_request);
/* Cancels a pending request; its callback is not called. NULL is fine. */
void kube_request_cancel(KubeRequest *r);

/* Creates a core/v1 Event about an object (reason "EgressActive" etc.),
 * type "Normal" or "Warning". Fire and forget: failures are logged at debug. */
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
} KubeInformerOps;

typedef struct KubeInformerOptions {
        const char *namespace; /* NULL = all namespaces */
        const char *label_selector;
        const char *field_selector;
        /* Page size of lists (default 500). */
        unsigned page_limit;
} KubeInformerOptions;

int kube_informer_new(KubeClient *c, const KubeResource *res, const KubeInformerOptions *opts,
                      const KubeInformerOps *ops, void *userdata, KubeInformer **ret);
KubeInformer *kube_informer_free(KubeInformer *inf);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeInformer *, kube_informer_free);

bool kube_informer_synced(const KubeInformer *inf);
/* Borrowed; NULL if absent. namespace NULL for cluster-scoped objects. */
json_t *kube_informer_get(KubeInformer *inf, const char *namespace, const char *name);
size_t kube_informer_size(const KubeInformer *inf);
/* Calls fn for every cached object; stops early if fn returns non-zero and
 * returns that value. */
int kube_informer_foreach(KubeInformer *inf, int (*fn)(json_t *object, void *userdata), void *userdata);
/* The resourceVersion the informer has seen last. */
const char *kube_informer_resource_version(const KubeInformer *inf);

/* Counters for tests and benchmarks. */
typedef struct KubeClientStats {
        uint64_t requests;
        uint64_t lists;
        uint64_t watches;
        uint64_t relists;
        uint64_t errors;
} KubeClientStats;
void kube_client_get_stats(const KubeClient *c, KubeClientStats *ret);
