/* SPDX-License-Identifier: Apache-2.0 */
/* core/v1 Events that inform and never flood, the way client-go's
 * EventCorrelator does it:
 *  - the same Event again (same object, type, reason, message, source) is
 *    not a new object: the one already written gets count + 1 and a new
 *    lastTimestamp with a PATCH; repeats that come while its POST or PATCH is
 *    in flight are folded into the next write;
 *  - a token bucket per object (burst 25, one more every 5 minutes, as
 *    client-go's spam filter) drops what is left, and counts the drop;
 *  - at most KUBE_EVENTS_MAX records are kept, the least recently used goes.
 * An Event deleted meanwhile (the apiserver keeps them for an hour) is
 * created again. Nothing is ever retried: Events are best effort. */
#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "kube-client.h"
#include "kube-internal.h"
#include "kube-objects.h"
#include "log.h"

#define KUBE_EVENTS_MAX 4096
#define KUBE_EVENTS_BURST 25.0
#define KUBE_EVENTS_REFILL_USEC (300 * USEC_PER_SEC)

typedef struct EventRecord EventRecord;
struct EventRecord {
        char *key;    /* object + type + reason + message + source */
        char *object; /* kind/namespace/name: the spam filter's unit */
        char *ns;     /* where the Event lives */
        char *name;   /* metadata.name once created */
        /* The body first POSTed, as compact JSON text (a jansson tree of it
         * cost about 3 KiB, the text under 0.5 KiB; kvpd keeps one per
         * egress Service); count and lastTimestamp are set on each write. */
        char *event;
        unsigned count;   /* as written, or being written */
        unsigned pending; /* repeats not written yet */
        bool inflight;
        uint64_t used_usec;
        EventRecord *next;
};

typedef struct ObjectBucket ObjectBucket;
struct ObjectBucket {
        char *object;
        double tokens;
        uint64_t at_usec;
        ObjectBucket *next;
};

/* A write in flight: finds its record by key when the answer comes (the
 * record may have been evicted meanwhile). */
typedef struct EventWrite EventWrite;
struct EventWrite {
        KubeEvents *events;
        char *key;
        EventWrite *next, *prev;
};

struct KubeEvents {
        KubeClient *client;
        EventRecord *records;
        size_t n_records;
        ObjectBucket *buckets;
        size_t n_buckets;
        EventWrite *writes;
        KubeEventStats stats;
};

static EventRecord *record_free(EventRecord *r)
{
        if (!r)
                return NULL;
        free(r->key);
        free(r->object);
        free(r->ns);
        free(r->name);
        free(r->event);
        free(r);
        return NULL;
}

KubeEvents *kube_events_new(KubeClient *c)
{
        KubeEvents *e = calloc(1, sizeof(*e));

        if (e)
                e->client = c;
        return e;
}

KubeEvents *kube_events_free(KubeEvents *e)
{
        if (!e)
                return NULL;
        while (e->records) {
                EventRecord *r = e->records;
                e->records = r->next;
                record_free(r);
        }
        while (e->buckets) {
                ObjectBucket *b = e->buckets;
                e->buckets = b->next;
                free(b->object);
                free(b);
        }
        /* Their requests went with the client, unanswered. */
        while (e->writes) {
                EventWrite *w = e->writes;
                e->writes = w->next;
                free(w->key);
                free(w);
        }
        free(e);
        return NULL;
}

void kube_events_get_stats(const KubeEvents *e, KubeEventStats *ret)
{
        *ret = e ? e->stats : (KubeEventStats){};
}

static EventRecord *record_find(KubeEvents *e, const char *key)
{
        for (EventRecord *r = e->records; r; r = r->next)
                if (streq(r->key, key))
                        return r;
        return NULL;
}

static void evict_oldest(KubeEvents *e)
{
        EventRecord **oldest = NULL;

        for (EventRecord **p = &e->records; *p; p = &(*p)->next)
                if (!(*p)->inflight && (!oldest || (*p)->used_usec < (*oldest)->used_usec))
                        oldest = p;
        if (oldest) {
                EventRecord *r = *oldest;
                *oldest = r->next;
                record_free(r);
                e->n_records--;
        }
}

/* client-go's spam filter: true if object may have one more Event now. */
static bool bucket_take(KubeEvents *e, const char *object, uint64_t now)
{
        ObjectBucket *b;

        for (b = e->buckets; b; b = b->next)
                if (streq(b->object, object))
                        break;
        if (!b) {
                if (e->n_buckets >= KUBE_EVENTS_MAX) {
                        /* Forget the fullest bucket: it is the one closest
                         * to what a new bucket would be anyway. */
                        ObjectBucket **full = &e->buckets;
                        for (ObjectBucket **p = &e->buckets; *p; p = &(*p)->next)
                                if ((*p)->tokens > (*full)->tokens)
                                        full = p;
                        b = *full;
                        *full = b->next;
                        free(b->object);
                        free(b);
                        e->n_buckets--;
                }
                b = calloc(1, sizeof(*b));
                if (!b || !(b->object = strdup(object))) {
                        free(b);
                        return true; /* out of memory: do not lose the Event over it */
                }
                b->tokens = KUBE_EVENTS_BURST;
                b->at_usec = now;
                b->next = e->buckets;
                e->buckets = b;
                e->n_buckets++;
        }
        b->tokens = MIN(KUBE_EVENTS_BURST, b->tokens + (double)(now - b->at_usec) / KUBE_EVENTS_REFILL_USEC);
        b->at_usec = now;
        if (b->tokens < 1.0)
                return false;
        b->tokens -= 1.0;
        return true;
}

static void write_record(KubeEvents *e, EventRecord *r);

static void on_written(KubeClient *c, const KubeResponse *resp, void *userdata)
{
        EventWrite *w = userdata;
        KubeEvents *e = w->events;
        EventRecord *r = record_find(e, w->key);
        (void)c;

        if (w->prev)
                w->prev->next = w->next;
        else
                e->writes = w->next;
        if (w->next)
                w->next->prev = w->prev;
        free(w->key);
        free(w);
        if (!r)
                return;
        r->inflight = false;
        if (resp->error == 0 && (resp->http_status == 200 || resp->http_status == 201)) {
                const char *name =
                        json_string_value(json_object_get(json_object_get(resp->body, "metadata"), "name"));
                if (name && !streq_ptr(r->name, name)) {
                        free(r->name);
                        r->name = strdup(name);
                }
        } else {
                if (resp->error < 0)
                        log_debug_errno(resp->error, "kube: event not recorded: %m");
                else
                        log_debug("kube: event not recorded: HTTP %ld %s", resp->http_status,
                                  resp->message ?: "");
                /* Gone (deleted, expired): the next write creates it again. */
                if (resp->http_status == 404)
                        r->name = mfree(r->name);
                e->stats.failed++;
        }
        if (r->pending > 0)
                write_record(e, r);
}

/* POSTs the record (no name yet) or PATCHes its count and lastTimestamp. */
static void write_record(KubeEvents *e, EventRecord *r)
{
        _cleanup_free_ char *path = NULL;
        char now[32];
        struct timespec ts;
        EventWrite *w;
        json_t *body;
        int k;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        if (kube_time_format((uint64_t)ts.tv_sec * USEC_PER_SEC, now) < 0)
                return;
        r->count += r->pending;
        r->pending = 0;
        if (kube_resource_path(&kube_resource_events, r->ns, r->name, NULL, &path) < 0)
                return;
        w = calloc(1, sizeof(*w));
        if (!w || !(w->key = strdup(r->key))) {
                free(w);
                return;
        }
        w->events = e;
        if (r->name) {
                body = json_pack("{s:I, s:s}", "count", (json_int_t)r->count, "lastTimestamp", now);
                k = body ? kube_request(
                                   e->client, "PATCH", path, body,
                                   &(KubeRequestOptions){.content_type = "application/merge-patch+json"},
                                   on_written, w, NULL)
                         : -ENOMEM;
                json_decref(body);
                e->stats.patched++;
        } else {
                body = json_loads(r->event, JSON_ALLOW_NUL, NULL);
                k = body && json_object_set_new(body, "count", json_integer(r->count)) == 0 &&
                                    json_object_set_new(body, "lastTimestamp", json_string(now)) == 0
                            ? kube_request(e->client, "POST", path, body, NULL, on_written, w, NULL)
                            : -ENOMEM;
                json_decref(body);
                e->stats.posted++;
        }
        if (k < 0) {
                log_debug_errno(k, "kube: event not sent: %m");
                free(w->key);
                free(w);
                return;
        }
        r->inflight = true;
        w->next = e->writes;
        if (w->next)
                w->next->prev = w;
        e->writes = w;
}

int kube_events_emit(KubeEvents *e, const char *component, const char *host, const char *involved_kind,
                     const char *namespace, const char *name, const char *uid, const char *type,
                     const char *reason, const char *message)
{
        _cleanup_free_ char *key = NULL, *object = NULL, *gen = NULL;
        const char *ns = namespace ?: "default";
        uint64_t now_mono = now_usec();
        json_t *involved, *event;
        EventRecord *r;
        char now[32];
        struct timespec ts;

        if (!e || !involved_kind || !name || !reason)
                return -EINVAL;
        if (asprintf(&object, "%s/%s/%s/%s", involved_kind, ns, name, uid ?: "") < 0 ||
            asprintf(&key, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", object, type ?: "Normal", reason,
                     message ?: "", component ?: "", host ?: "") < 0)
                return -ENOMEM;
        if (!bucket_take(e, object, now_mono)) {
                e->stats.dropped++;
                log_debug("kube: event %s on %s dropped (more than %.0f for this object)", reason, object,
                          KUBE_EVENTS_BURST);
                return 0;
        }
        r = record_find(e, key);
        if (r) {
                r->used_usec = now_mono;
                r->pending++;
                e->stats.aggregated++;
                if (!r->inflight)
                        write_record(e, r);
                return 0;
        }

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        if (kube_time_format((uint64_t)ts.tv_sec * USEC_PER_SEC, now) < 0)
                return -EINVAL;
        /* Event names are "<object>.<unique suffix>"; generateName gives the suffix. */
        if (asprintf(&gen, "%s.", name) < 0)
                return -ENOMEM;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->key = TAKE_PTR(key);
        r->object = TAKE_PTR(object);
        r->ns = strdup(ns);
        r->used_usec = now_mono;
        r->pending = 1;
        involved = json_pack("{s:s, s:s}", "kind", involved_kind, "name", name);
        if (involved && namespace)
                (void)json_object_set_new(involved, "namespace", json_string(namespace));
        if (involved && uid)
                (void)json_object_set_new(involved, "uid", json_string(uid));
        event = involved
                        ? json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:s, s:{s:s?, s:s?}, s:s, s:s, "
                                    "s:i, s:s?, s:s?}",
                                    "apiVersion", "v1", "kind", "Event", "metadata", "generateName", gen,
                                    "namespace", ns, "involvedObject", involved, "reason", reason, "message",
                                    message ?: "", "type", type ?: "Normal", "source", "component",
                                    component, "host", host, "firstTimestamp", now, "lastTimestamp", now,
                                    "count", 1, "reportingComponent", component, "reportingInstance", host)
                        : NULL;
        r->event = event ? json_dumps(event, JSON_COMPACT) : NULL;
        json_decref(event);
        if (!r->event || !r->ns) {
                record_free(r);
                return -ENOMEM;
        }
        if (e->n_records >= KUBE_EVENTS_MAX)
                evict_oldest(e);
        r->next = e->records;
        e->records = r;
        e->n_records++;
        write_record(e, r);
        return 0;
}
