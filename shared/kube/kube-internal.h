/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared by the files of libkvkube and its unit tests; not for
 * the daemons. */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "kube-client.h"
#include "macros.h"

/* A growable byte buffer, always NUL-terminated so text helpers can read it. */
typedef struct KubeBuf {
        char *data;
        size_t len;
        size_t cap;
} KubeBuf;

int kube_buf_reserve(KubeBuf *b, size_t extra);
int kube_buf_append(KubeBuf *b, const void *p, size_t n);
int kube_buf_printf(KubeBuf *b, const char *fmt, ...) _printf_(2, 3);
/* Drops the first n bytes. */
void kube_buf_consume(KubeBuf *b, size_t n);
/* Hands the contents (or "" if empty) to *ret and resets b. */
int kube_buf_steal(KubeBuf *b, char **ret);
void kube_buf_done(KubeBuf *b);

int kube_url_escape(const char *s, char **ret);
/* Appends "?key=value" or "&key=value" with value escaped. */
int kube_query_append(KubeBuf *b, const char *key, const char *value);

/* Reads a whole (small) file, rejecting anything over max bytes. */
int kube_read_file(const char *path, size_t max, char **ret, size_t *ret_size);
int kube_base64_decode(const char *in, char **ret, size_t *ret_size);

/* YAML (libyaml) to jansson: mappings become objects, sequences arrays, plain
 * null-ish scalars null, YAML 1.1 booleans true/false, everything else a
 * string. On error, *ret_error says where (caller frees). */
int kube_yaml_parse(const char *text, size_t size, json_t **ret, char **ret_error);

KubeConfig *kube_config_dup(const KubeConfig *c);

/* The resource for a plural name ("services"), or NULL. */
const KubeResource *kube_resource_from_plural(const char *plural);

/* Jittered exponential backoff: first call gives about initial, each later
 * one doubles up to max; a random factor in [1, 2) is applied. */
typedef struct KubeBackoff {
        uint64_t initial_usec;
        uint64_t max_usec;
        uint64_t current_usec;
} KubeBackoff;
uint64_t kube_backoff_next(KubeBackoff *b);
void kube_backoff_reset(KubeBackoff *b);
/* Uniform in [min, max). */
uint64_t kube_random_range(uint64_t min, uint64_t max);

/* Reads an unsigned integer (or "MIN,MAX" pair) from the environment, for
 * tests that need short watch timeouts and backoffs. */
bool kube_env_range(const char *name, uint64_t *ret_min, uint64_t *ret_max);

/* Splits a byte stream into complete top-level JSON values (objects or
 * arrays), whatever the chunk boundaries: a scanner that tracks depth and
 * strings finds where each value ends, then json_loadb() parses exactly that
 * span. Watch streams are "JSON\n" per event, but client-go reads them as a
 * JSON stream, not lines, and so do we. */
typedef struct KubeJsonSplitter {
        KubeBuf buf;
        size_t start; /* offset of the value being scanned (or of unscanned data) */
        size_t scan;  /* offset of the next byte to scan */
        unsigned depth;
        bool in_string, escape;
        size_t max_value;
} KubeJsonSplitter;

#define KUBE_JSON_DEPTH_MAX 1000U

/* Called for each value; the value is borrowed. A negative return stops the
 * feed and is returned by it. */
typedef int (*KubeJsonValueFn)(json_t *v, void *userdata);

void kube_json_splitter_init(KubeJsonSplitter *s, size_t max_value);
void kube_json_splitter_done(KubeJsonSplitter *s);
/* -EBADMSG for bytes that are not a JSON stream, -E2BIG for a value over
 * max_value. */
int kube_json_splitter_feed(KubeJsonSplitter *s, const void *p, size_t n, KubeJsonValueFn fn,
                            void *userdata);
/* True if a value has begun but not ended. */
bool kube_json_splitter_partial(const KubeJsonSplitter *s);

/* One HTTP exchange on the client's curl multi handle (kube-http.c). The
 * one-shot requests and the informers are built on it. */
typedef struct KubeHttp KubeHttp;

typedef struct KubeHttpResult {
        /* 0, or a negative errno: a transport failure, or what the data
         * callback returned to abort a stream. */
        int error;
        long status;
        /* The buffered body (for streams: only of non-2xx answers). */
        const char *body;
        size_t body_size;
        const char *content_type;
        unsigned retry_after_sec;
        uint64_t sent_usec; /* handed to curl (after the queue) */
} KubeHttpResult;

typedef struct KubeHttpOps {
        /* Streams only: body bytes of a 2xx answer, in order, from the event
         * loop. A negative return aborts the transfer with that error. */
        int (*data)(KubeHttp *h, const char *p, size_t n, void *userdata);
        /* Exactly once unless cancelled; h is freed right after it returns. */
        void (*done)(KubeHttp *h, const KubeHttpResult *res, void *userdata);
} KubeHttpOps;

typedef struct KubeHttpParams {
        const char *method; /* NULL = GET */
        const char *path;   /* with query */
        const char *body;
        size_t body_size;
        const char *content_type;
        uint64_t timeout_usec;      /* whole exchange; 0 = none (streams) */
        uint64_t priority_usec;     /* queue order, earliest first; 0 = now */
        uint64_t idle_timeout_usec; /* streams: no byte for this long fails */
        bool stream;
} KubeHttpParams;

int kube_http_start(KubeClient *c, const KubeHttpParams *p, const KubeHttpOps *ops, void *userdata,
                    KubeHttp **ret);
/* No callback is called after this; safe from inside h's own callbacks. */
void kube_http_cancel(KubeHttp *h);

/* Re-reads the token file and the client certificate files if they changed
 * (force: the token file even if read recently). Returns > 0 if a credential
 * changed, 0 if not. */
int kube_client_refresh_credentials(KubeClient *c, bool force);
KubeClientStats *kube_client_stats(KubeClient *c);
sd_event *kube_client_event(KubeClient *c);
uint64_t kube_client_request_timeout(KubeClient *c);

/* kube-events.c: the Event correlator of one client. */
typedef struct KubeEvents KubeEvents;
KubeEvents *kube_events_new(KubeClient *c);
KubeEvents *kube_events_free(KubeEvents *e);
void kube_events_get_stats(const KubeEvents *e, KubeEventStats *ret);
int kube_events_emit(KubeEvents *e, const char *component, const char *host, const char *involved_kind,
                     const char *namespace, const char *name, const char *uid, const char *type,
                     const char *reason, const char *message);
/* The client's correlator, created on first use (NULL: out of memory). */
KubeEvents *kube_client_events(KubeClient *c);
