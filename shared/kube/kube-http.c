/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl's multi interface on sd-event. curl tells us which sockets to
 * poll and when to wake it (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION); we turn
 * that into io and time sources. Nothing blocks and there are no threads.
 *
 * Callbacks into our users never run inside curl: curl's write and header
 * callbacks only buffer, and a defer source delivers data and completions
 * afterwards. That also keeps user code from calling curl_multi_* while curl
 * is on the stack, which curl forbids. */
#include <assert.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "kube-client.h"
#include "kube-diagnose.h"
#include "kube-internal.h"
#include "log.h"

#define CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define DEFAULT_REQUEST_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define DEFAULT_TOKEN_RELOAD_USEC (60 * USEC_PER_SEC)
/* Bigger than any sane list page; a runaway body fails instead of eating memory. */
#define BODY_MAX (256U * 1024U * 1024U)
#define CREDENTIAL_FILE_MAX (1024U * 1024U)
/* One-shot requests in flight at once; more wait in a queue, in order of
 * their priority (the time by which each is needed; the time of the call
 * by default, which makes it a FIFO). Over HTTP/1.1 each in-flight request
 * holds a TLS connection (~80 KiB), so 1,000 Lease renewals fired together
 * would otherwise open 1,000 of them. Watches are long-lived and not
 * counted: a queue of renewals must never hold back the watch that tells us
 * a Lease was released.
 *
 * Why an order and not a FIFO: when the API answers fewer requests per
 * second than are asked (1,000 Leases renewed every 2 s ask 500/s), a FIFO
 * makes every request wait the whole queue, all of them time out together,
 * and every leadership is lost at once. Served by deadline, each Lease is
 * renewed as often as the API allows, and none is lost while that is more
 * often than once per renew deadline. */
#define MAX_INFLIGHT_REQUESTS 8U
/* A queued request with less time than this left is failed, not sent. */
#define QUEUED_MIN_LEFT_USEC (100 * USEC_PER_MSEC)

struct KubeHttp {
        KubeClient *client;
        CURL *easy;
        struct curl_slist *headers;
        KubeHttpOps ops;
        void *userdata;
        char *body_copy;

        bool stream, in_multi, finished, cancelled, in_ready, in_callback;
        bool queued; /* waiting for a place among MAX_INFLIGHT_REQUESTS */
        bool queued_once;
        bool counted; /* holds one of those places */
        uint64_t timeout_usec;
        uint64_t made_usec;     /* kube_http_start(): the timeout counts from here */
        uint64_t priority_usec; /* queue order, earliest first */
        KubeBuf body;           /* whole body, or the error body of a stream */
        KubeBuf pending;        /* stream bytes not yet handed to ops.data */
        char *content_type;
        unsigned retry_after_sec;
        long status;
        int error;

        uint64_t sent_usec, last_data_usec, idle_timeout_usec;
        sd_event_source *idle_timer;

        char *what;                   /* "GET /api/v1/services", for kube-diagnose.c */
        char errbuf[CURL_ERROR_SIZE]; /* curl's own words for a failure */
        /* A queued request has no curl handle yet (one costs about 20 KiB,
         * its receive buffer included, and 1,000 renewals can wait at once):
         * what setup_easy() needs is kept here until it leaves the queue. */
        struct {
                char *method, *path, *body, *content_type;
                size_t body_size;
        } deferred;

        KubeHttp *prev, *next; /* all transfers of the client */
        KubeHttp *ready_next;
        KubeHttp *queue_next;
};

typedef struct FileId {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
        bool valid;
} FileId;

struct KubeClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer, *dispatch;

        KubeConfig *config;
        char *base_url;
        struct curl_slist *connect_to;
        char *user_agent;
        uint64_t request_timeout_usec, token_reload_usec;

        char *token;
        uint64_t token_read_usec;
        char *cert_pem, *key_pem;
        FileId cert_id, key_id;

        KubeHttp *transfers;
        KubeHttp *ready_head, *ready_tail;
        KubeHttp *queue_head, *queue_tail;
        unsigned n_inflight;
        bool dispatching, free_pending;

        KubeClientStats stats;
        KubeEvents *events; /* kube-events.c */
        KubeDiagnosis diagnosis;
};

bool kube_client_earliest_waiting(const KubeClient *c, uint64_t *ret_priority_usec)
{
        if (!c->queue_head)
                return false;
        *ret_priority_usec = c->queue_head->priority_usec;
        return true;
}

KubeClientStats *kube_client_stats(KubeClient *c)
{
        return &c->stats;
}

KubeEvents *kube_client_events(KubeClient *c)
{
        if (!c->events)
                c->events = kube_events_new(c);
        return c->events;
}

void kube_client_get_event_stats(KubeClient *c, KubeEventStats *ret)
{
        kube_events_get_stats(c->events, ret);
}

sd_event *kube_client_event(KubeClient *c)
{
        return c->event;
}

void kube_client_get_stats(const KubeClient *c, KubeClientStats *ret)
{
        *ret = c->stats;
}

/* ---- credentials ---- */

static void file_id(const char *path, FileId *ret)
{
        struct stat st;

        *ret = (FileId){};
        /* stat, not lstat: kubelet-client-current.pem is a symlink that the
         * kubelet re-points, and the target is what changes. */
        if (stat(path, &st) < 0)
                return;
        *ret = (FileId){
                .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim, .valid = true};
}

static bool file_id_eq(const FileId *a, const FileId *b)
{
        return a->valid == b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
               a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static int reload_token(KubeClient *c, bool force)
{
        _cleanup_free_ char *t = NULL;
        uint64_t now = now_usec();
        size_t n;
        int r;

        if (!c->config->token_file)
                return 0;
        if (!force && c->token && now < c->token_read_usec + c->token_reload_usec)
                return 0;
        c->token_read_usec = now;
        r = kube_read_file(c->config->token_file, CREDENTIAL_FILE_MAX, &t, &n);
        if (r < 0) {
                /* Keep the last good token: a rotation may be half done. */
                log_debug_errno(r, "kube: cannot read token file %s: %m", c->config->token_file);
                return c->token ? 0 : r;
        }
        while (n > 0 && strchr(" \t\r\n", t[n - 1]))
                t[--n] = '\0';
        if (n == 0)
                return c->token ? 0 : -ENODATA;
        if (streq_ptr(t, c->token))
                return 0;
        free(c->token);
        c->token = TAKE_PTR(t);
        log_debug("kube: token re-read from %s", c->config->token_file);
        return 1;
}

static int reload_certs(KubeClient *c)
{
        _cleanup_free_ char *cert = NULL, *key = NULL;
        FileId cid, kid;
        int r;

        if (!c->config->client_cert_file || c->config->client_cert_pem)
                return 0;
        file_id(c->config->client_cert_file, &cid);
        file_id(c->config->client_key_file, &kid);
        if (c->cert_pem && file_id_eq(&cid, &c->cert_id) && file_id_eq(&kid, &c->key_id))
                return 0;
        r = kube_read_file(c->config->client_cert_file, CREDENTIAL_FILE_MAX, &cert, NULL);
        if (r >= 0)
                r = kube_read_file(c->config->client_key_file, CREDENTIAL_FILE_MAX, &key, NULL);
        if (r < 0) {
                log_debug_errno(r, "kube: cannot read client certificate %s: %m",
                                c->config->client_cert_file);
                return c->cert_pem ? 0 : r;
        }
        c->cert_id = cid;
        c->key_id = kid;
        if (streq_ptr(cert, c->cert_pem) && streq_ptr(key, c->key_pem))
                return 0;
        free(c->cert_pem);
        free(c->key_pem);
        c->cert_pem = TAKE_PTR(cert);
        c->key_pem = TAKE_PTR(key);
        log_debug("kube: client certificate (re)loaded from %s", c->config->client_cert_file);
        (void)kube_diagnose_client_cert(c->cert_pem, c->config->source, c->config->client_cert_file);
        return 1;
}

int kube_client_refresh_credentials(KubeClient *c, bool force)
{
        int a, b;

        a = reload_token(c, force);
        b = reload_certs(c);
        if (a < 0)
                return a;
        if (b < 0)
                return b;
        return a > 0 || b > 0;
}

/* ---- curl <-> sd-event ---- */

static void client_schedule_dispatch(KubeClient *c)
{
        (void)sd_event_source_set_enabled(c->dispatch, SD_EVENT_ONESHOT);
}

static void ready_push(KubeHttp *h)
{
        KubeClient *c = h->client;

        if (h->in_ready)
                return;
        h->in_ready = true;
        h->ready_next = NULL;
        if (c->ready_tail)
                c->ready_tail->ready_next = h;
        else
                c->ready_head = h;
        c->ready_tail = h;
        client_schedule_dispatch(c);
}

static int curl_result_to_errno(CURLcode code)
{
        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_USE_SSL_FAILED:
                return -EPROTO;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        default:
                return -EIO;
        }
}

/* Takes h out of curl and gives its in-flight place to the next queued
 * request (started from the dispatcher, never inside curl's callbacks). */
static void http_detach(KubeHttp *h)
{
        KubeClient *c = h->client;

        if (h->in_multi) {
                (void)curl_multi_remove_handle(c->multi, h->easy);
                h->in_multi = false;
        }
        if (h->counted) {
                h->counted = false;
                c->n_inflight--;
                if (c->queue_head)
                        client_schedule_dispatch(c);
        }
}

static void queue_remove(KubeHttp *h)
{
        KubeClient *c = h->client;
        KubeHttp *prev = NULL, *i;

        if (!h->queued)
                return;
        /* Almost always the head (the dispatcher pops in order): O(1) then. */
        for (i = c->queue_head; i && i != h; i = i->queue_next)
                prev = i;
        assert(i == h); /* queued means on the list */
        if (prev)
                prev->queue_next = h->queue_next;
        else
                c->queue_head = h->queue_next;
        if (c->queue_tail == h)
                c->queue_tail = prev;
        h->queued = false;
        h->queue_next = NULL;
}

/* After the last one of no later priority: equal priorities keep their
 * order. From the tail when it is not earlier than the tail (the default
 * priority, the time of the call, always is): O(1) then, else a walk. */
static void queue_insert(KubeHttp *h)
{
        KubeClient *c = h->client;
        KubeHttp *prev = NULL;

        h->queued = h->queued_once = true;
        if (c->queue_tail && c->queue_tail->priority_usec <= h->priority_usec)
                prev = c->queue_tail;
        else
                for (KubeHttp *i = c->queue_head; i && i->priority_usec <= h->priority_usec;
                     i = i->queue_next)
                        prev = i;
        h->queue_next = prev ? prev->queue_next : c->queue_head;
        if (prev)
                prev->queue_next = h;
        else
                c->queue_head = h;
        if (!h->queue_next)
                c->queue_tail = h;
}

static void http_finish(KubeHttp *h, int error)
{
        if (h->finished)
                return;
        h->finished = true;
        if (error < 0 && h->error == 0)
                h->error = error;
        queue_remove(h);
        http_detach(h);
        h->idle_timer = sd_event_source_disable_unref(h->idle_timer);
        ready_push(h);
}

static void collect_done(KubeClient *c)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(c->multi, &left))) {
                KubeHttp *h = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                (void)curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
                if (!h)
                        continue;
                (void)curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
                http_finish(h, curl_result_to_errno(msg->data.result));
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        KubeClient *c = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                action |= CURL_CSELECT_IN;
        if (revents & (EPOLLOUT | EPOLLERR))
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;
        (void)curl_multi_socket_action(c->multi, fd, action, &running);
        collect_done(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        KubeClient *c = userdata;
        int running;

        (void)curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        collect_done(c);
        return 0;
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        KubeClient *c = userp;
        sd_event_source *io = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        (void)sd_event_source_disable_unref(io);
                        (void)curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (io) {
                r = sd_event_source_set_io_events(io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(io, SD_EVENT_ON);
        } else {
                r = sd_event_add_io(c->event, &io, fd, events, on_io, c);
                if (r >= 0) {
                        (void)sd_event_source_set_description(io, "kube-curl-io");
                        if (curl_multi_assign(c->multi, fd, io) != CURLM_OK) {
                                io = sd_event_source_disable_unref(io);
                                r = -ENOMEM;
                        }
                }
        }
        if (r < 0) {
                log_debug_errno(r, "kube: cannot watch curl socket %d: %m", (int)fd);
                return -1;
        }
        return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
        KubeClient *c = userp;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        /* 0 means "as soon as possible": the next loop iteration, since curl
         * must not be re-entered from here. */
        r = sd_event_source_set_time(c->timer, now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

/* ---- transfers ---- */

static void deferred_done(KubeHttp *h)
{
        free(h->deferred.method);
        free(h->deferred.path);
        free(h->deferred.body);
        free(h->deferred.content_type);
        h->deferred = (typeof(h->deferred)){};
}

static int deferred_save(KubeHttp *h, const KubeHttpParams *p)
{
        if ((p->method && !(h->deferred.method = strdup(p->method))) ||
            !(h->deferred.path = strdup(p->path)) ||
            (p->content_type && !(h->deferred.content_type = strdup(p->content_type))))
                return -ENOMEM;
        if (p->body) {
                h->deferred.body = malloc(p->body_size + 1);
                if (!h->deferred.body)
                        return -ENOMEM;
                memcpy(h->deferred.body, p->body, p->body_size);
                h->deferred.body[p->body_size] = '\0';
                h->deferred.body_size = p->body_size;
        }
        return 0;
}

static int setup_easy(KubeHttp *h, const KubeHttpParams *p);

/* The curl handle, now (a request about to be sent) or from what was
 * deferred when it was queued. */
static int easy_create(KubeHttp *h, const KubeHttpParams *p)
{
        KubeHttpParams d;
        int r;

        h->easy = curl_easy_init();
        if (!h->easy)
                return -ENOMEM;
        if (p)
                return setup_easy(h, p);
        d = (KubeHttpParams){
                .method = h->deferred.method,
                .path = h->deferred.path,
                .body = h->deferred.body,
                .body_size = h->deferred.body_size,
                .content_type = h->deferred.content_type,
                .timeout_usec = h->timeout_usec,
        };
        r = setup_easy(h, &d);
        deferred_done(h);
        return r;
}

static void http_free(KubeHttp *h)
{
        KubeClient *c = h->client;

        queue_remove(h);
        http_detach(h);
        h->idle_timer = sd_event_source_disable_unref(h->idle_timer);
        if (h->easy)
                curl_easy_cleanup(h->easy);
        curl_slist_free_all(h->headers);
        deferred_done(h);
        free(h->body_copy);
        free(h->content_type);
        free(h->what);
        kube_buf_done(&h->body);
        kube_buf_done(&h->pending);
        if (h->prev)
                h->prev->next = h->next;
        else if (c->transfers == h)
                c->transfers = h->next;
        if (h->next)
                h->next->prev = h->prev;
        free(h);
}

void kube_http_cancel(KubeHttp *h)
{
        if (!h || h->cancelled)
                return;
        h->cancelled = true;
        queue_remove(h);
        http_detach(h);
        h->idle_timer = sd_event_source_disable_unref(h->idle_timer);
        /* The dispatcher frees it when it is on the ready list or running
         * its callback. */
        if (!h->in_ready && !h->in_callback)
                http_free(h);
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *userdata)
{
        KubeHttp *h = userdata;
        size_t n = size * nmemb;
        long status = 0;
        KubeBuf *b;

        (void)curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
        h->last_data_usec = now_usec();
        b = h->stream && status >= 200 && status < 300 ? &h->pending : &h->body;
        if (b->len + n > BODY_MAX || kube_buf_append(b, p, n) < 0) {
                h->error = -EFBIG;
                return 0; /* makes curl fail with CURLE_WRITE_ERROR */
        }
        if (b == &h->pending)
                ready_push(h);
        return n;
}

static size_t on_header(char *p, size_t size, size_t nitems, void *userdata)
{
        KubeHttp *h = userdata;
        size_t n = size * nitems, k;
        const char *v;

        h->last_data_usec = now_usec();
        /* A new status line (after a 100 Continue, say) starts over. */
        if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
                h->retry_after_sec = 0;
                h->content_type = mfree(h->content_type);
                return n;
        }
        v = memchr(p, ':', n);
        if (!v)
                return n;
        k = (size_t)(v - p);
        v++;
        while (v < p + n && (*v == ' ' || *v == '\t'))
                v++;
        if (k == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
                unsigned long s = 0;
                const char *i = v;

                /* Seconds only; the HTTP-date form is not used by the apiserver. */
                while (i < p + n && *i >= '0' && *i <= '9' && s < 86400)
                        s = s * 10 + (unsigned long)(*i++ - '0');
                h->retry_after_sec = (unsigned)MIN(s, 86400UL);
        } else if (k == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
                size_t m = (size_t)(p + n - v);
                while (m > 0 && (v[m - 1] == '\r' || v[m - 1] == '\n' || v[m - 1] == ' '))
                        m--;
                free(h->content_type);
                h->content_type = strndup(v, m);
        }
        return n;
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        KubeHttp *h = userdata;
        uint64_t deadline = h->last_data_usec + h->idle_timeout_usec;

        if (now_usec() < deadline)
                return sd_event_source_set_time(s, deadline) < 0
                               ? 0
                               : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        log_debug("kube: no data for %" PRIu64 " ms, dropping the stream",
                  (uint64_t)(h->idle_timeout_usec / USEC_PER_MSEC));
        http_finish(h, -ETIMEDOUT);
        return 0;
}

static int add_header(KubeHttp *h, const char *name, const char *value)
{
        _cleanup_free_ char *line = NULL;
        struct curl_slist *l;

        /* "Name:" with nothing after it removes a header curl would add. */
        if (asprintf(&line, "%s:%s%s", name, isempty(value) ? "" : " ", value ?: "") < 0)
                return -ENOMEM;
        l = curl_slist_append(h->headers, line);
        if (!l)
                return -ENOMEM;
        h->headers = l;
        return 0;
}

#define SETOPT(easy, opt, val)                                                                              \
        do {                                                                                                \
                if (curl_easy_setopt(easy, opt, val) != CURLE_OK)                                           \
                        return -EIO;                                                                        \
        } while (0)

static int setup_easy(KubeHttp *h, const KubeHttpParams *p)
{
        KubeClient *c = h->client;
        const KubeConfig *cfg = c->config;
        _cleanup_free_ char *url = NULL;
        const char *method = p->method ?: "GET";
        int r;

        if (asprintf(&url, "%s%s", c->base_url, p->path) < 0)
                return -ENOMEM;
        if (asprintf(&h->what, "%s %.*s", method, (int)strcspn(p->path, "?"), p->path) < 0) {
                h->what = NULL;
                return -ENOMEM;
        }
        SETOPT(h->easy, CURLOPT_ERRORBUFFER, h->errbuf);
        SETOPT(h->easy, CURLOPT_URL, url);
        SETOPT(h->easy, CURLOPT_PRIVATE, h);
        SETOPT(h->easy, CURLOPT_NOSIGNAL, 1L);
        SETOPT(h->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        /* HTTP/2 has no chunks; the watch code is tested against HTTP/1.1
         * chunked streams, which is also what the apiserver documents. */
        SETOPT(h->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        SETOPT(h->easy, CURLOPT_WRITEFUNCTION, on_write);
        SETOPT(h->easy, CURLOPT_WRITEDATA, h);
        SETOPT(h->easy, CURLOPT_HEADERFUNCTION, on_header);
        SETOPT(h->easy, CURLOPT_HEADERDATA, h);
        SETOPT(h->easy, CURLOPT_USERAGENT, c->user_agent);
        SETOPT(h->easy, CURLOPT_CONNECTTIMEOUT_MS,
               (long)(MIN(CONNECT_TIMEOUT_USEC, p->timeout_usec ?: CONNECT_TIMEOUT_USEC) / USEC_PER_MSEC));
        SETOPT(h->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        SETOPT(h->easy, CURLOPT_TCP_KEEPIDLE, 30L);
        SETOPT(h->easy, CURLOPT_TCP_KEEPINTVL, 10L);
        if (p->timeout_usec > 0)
                SETOPT(h->easy, CURLOPT_TIMEOUT_MS, (long)MAX(p->timeout_usec / USEC_PER_MSEC, 1ULL));
        /* Big lists come gzipped; a curl without zlib just does without. */
        if (!p->stream)
                (void)curl_easy_setopt(h->easy, CURLOPT_ACCEPT_ENCODING, "gzip");
        if (c->connect_to)
                SETOPT(h->easy, CURLOPT_CONNECT_TO, c->connect_to);
        if (cfg->proxy_url)
                SETOPT(h->easy, CURLOPT_PROXY, cfg->proxy_url);

        if (cfg->insecure_skip_tls_verify) {
                SETOPT(h->easy, CURLOPT_SSL_VERIFYPEER, 0L);
                SETOPT(h->easy, CURLOPT_SSL_VERIFYHOST, 0L);
        } else if (cfg->ca_pem) {
                struct curl_blob blob = {
                        .data = cfg->ca_pem, .len = strlen(cfg->ca_pem), .flags = CURL_BLOB_NOCOPY};
                SETOPT(h->easy, CURLOPT_CAINFO_BLOB, &blob);
        } else if (cfg->ca_file)
                SETOPT(h->easy, CURLOPT_CAINFO, cfg->ca_file);

        {
                const char *cert = cfg->client_cert_pem ?: c->cert_pem;
                const char *key = cfg->client_key_pem ?: c->key_pem;

                if (cert && key) {
                        /* Copied: a rotation may replace c->cert_pem while this
                         * transfer is still connecting. */
                        struct curl_blob cb = {
                                .data = (void *)cert, .len = strlen(cert), .flags = CURL_BLOB_COPY};
                        struct curl_blob kb = {
                                .data = (void *)key, .len = strlen(key), .flags = CURL_BLOB_COPY};
                        SETOPT(h->easy, CURLOPT_SSLCERT_BLOB, &cb);
                        SETOPT(h->easy, CURLOPT_SSLCERTTYPE, "PEM");
                        SETOPT(h->easy, CURLOPT_SSLKEY_BLOB, &kb);
                        SETOPT(h->easy, CURLOPT_SSLKEYTYPE, "PEM");
                }
        }

        if ((r = add_header(h, "Accept", "application/json")) < 0 || (r = add_header(h, "Expect", NULL)) < 0)
                return r;
        if (c->token || cfg->token) {
                _cleanup_free_ char *v = NULL;

                if (asprintf(&v, "Bearer %s", c->token ?: cfg->token) < 0)
                        return -ENOMEM;
                r = add_header(h, "Authorization", v);
                if (r < 0)
                        return r;
        }
        if (p->body) {
                r = add_header(h, "Content-Type", p->content_type ?: "application/json");
                if (r < 0)
                        return r;
                h->body_copy = malloc(p->body_size + 1);
                if (!h->body_copy)
                        return -ENOMEM;
                memcpy(h->body_copy, p->body, p->body_size);
                h->body_copy[p->body_size] = '\0';
                SETOPT(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->body_size);
                SETOPT(h->easy, CURLOPT_POSTFIELDS, h->body_copy);
        }
        SETOPT(h->easy, CURLOPT_HTTPHEADER, h->headers);

        if (streq(method, "GET"))
                SETOPT(h->easy, CURLOPT_HTTPGET, 1L);
        else if (streq(method, "POST")) {
                if (!p->body)
                        SETOPT(h->easy, CURLOPT_POSTFIELDS, "");
        } else
                SETOPT(h->easy, CURLOPT_CUSTOMREQUEST, method);
        return 0;
}

/* Hands h to curl. A request that waited in the queue keeps its deadline:
 * its timeout counts from when it was made (made_usec), as its caller's
 * safety margins do. sent_usec is now: the server cannot have seen it
 * before. */
static void http_add(KubeHttp *h)
{
        KubeClient *c = h->client;
        uint64_t waited;
        int r;

        h->sent_usec = now_usec();
        waited = h->sent_usec - h->made_usec;
        /* One that waited in the queue until almost nothing is left would
         * most likely time out on the wire, and a transfer cut by its
         * timeout costs its connection (a new TLS handshake for the next
         * request) just when the API is slow. */
        if (h->timeout_usec > 0 && (waited >= h->timeout_usec ||
                                    (h->queued_once && h->timeout_usec - waited < QUEUED_MIN_LEFT_USEC))) {
                http_finish(h, -ETIMEDOUT);
                return;
        }
        if (!h->easy) {
                r = easy_create(h, NULL);
                if (r < 0) {
                        http_finish(h, r);
                        return;
                }
        }
        if (h->timeout_usec > 0) {
                (void)curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS,
                                       (long)MAX((h->timeout_usec - waited) / USEC_PER_MSEC, 1ULL));
        }
        if (curl_multi_add_handle(c->multi, h->easy) != CURLM_OK) {
                /* Reported like any transport failure: asynchronously. */
                h->error = -EIO;
                h->finished = true;
                ready_push(h);
                return;
        }
        h->in_multi = true;
        if (!h->stream) {
                h->counted = true;
                c->n_inflight++;
        }
}

int kube_http_start(KubeClient *c, const KubeHttpParams *p, const KubeHttpOps *ops, void *userdata,
                    KubeHttp **ret)
{
        KubeHttp *h;
        int r;

        if (!c || !p || !p->path || p->path[0] != '/' || !ops || !ops->done)
                return -EINVAL;
        if (c->free_pending)
                return -ESHUTDOWN;
        (void)kube_client_refresh_credentials(c, false);

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->client = c;
        h->ops = *ops;
        h->userdata = userdata;
        h->stream = p->stream;
        h->idle_timeout_usec = p->idle_timeout_usec;
        h->next = c->transfers;
        if (c->transfers)
                c->transfers->prev = h;
        c->transfers = h;

        h->timeout_usec = p->timeout_usec;
        if (!h->stream && c->n_inflight >= MAX_INFLIGHT_REQUESTS)
                r = deferred_save(h, p);
        else
                r = easy_create(h, p);
        if (r < 0) {
                http_free(h);
                return r;
        }
        h->made_usec = h->sent_usec = h->last_data_usec = now_usec();
        h->priority_usec = p->priority_usec ?: h->made_usec;
        c->stats.requests++;

        if (h->stream && h->idle_timeout_usec > 0) {
                r = sd_event_add_time(c->event, &h->idle_timer, CLOCK_MONOTONIC,
                                      h->sent_usec + h->idle_timeout_usec, USEC_PER_SEC / 10, on_idle_timer,
                                      h);
                if (r < 0) {
                        http_free(h);
                        return r;
                }
        }
        if (!h->easy)
                queue_insert(h);
        else
                http_add(h);
        if (ret)
                *ret = h;
        return 0;
}

/* Delivers buffered stream data and completions, outside curl. */
static void dispatch_one(KubeHttp *h)
{
        KubeClient *c = h->client;

        h->in_callback = true;
        if (!h->cancelled && h->pending.len > 0 && h->ops.data) {
                _cleanup_(kube_buf_done) KubeBuf data = h->pending;
                int r;

                h->pending = (KubeBuf){};
                r = h->ops.data(h, data.data, data.len, h->userdata);
                if (r < 0 && !h->cancelled) {
                        /* The data decides how the stream ended, even if curl
                         * already saw the end (an ERROR event and the EOF
                         * after it often arrive in one read). */
                        h->error = r;
                        if (!h->finished) {
                                h->finished = true;
                                http_detach(h);
                                h->idle_timer = sd_event_source_disable_unref(h->idle_timer);
                        }
                }
        }
        if (!h->cancelled && h->finished) {
                KubeHttpResult res = {
                        .error = h->error,
                        .status = h->status,
                        .body = h->body.data ?: "",
                        .body_size = h->body.len,
                        .content_type = h->content_type,
                        .retry_after_sec = h->retry_after_sec,
                        .sent_usec = h->sent_usec,
                };

                if (h->error < 0)
                        c->stats.errors++;
                kube_diagnose_result(&c->diagnosis, c->config, h->what ?: "a request", h->error, h->status,
                                     res.body, res.body_size, h->errbuf);
                h->ops.done(h, &res, h->userdata);
                h->cancelled = true; /* done: nothing more is delivered */
        }
        h->in_callback = false;
        if (h->cancelled)
                http_free(h);
}

static void client_free_now(KubeClient *c);

static int on_dispatch(sd_event_source *s, void *userdata)
{
        KubeClient *c = userdata;

        c->dispatching = true;
        while (c->ready_head && !c->free_pending) {
                KubeHttp *h = c->ready_head;

                c->ready_head = h->ready_next;
                if (!c->ready_head)
                        c->ready_tail = NULL;
                h->in_ready = false;
                dispatch_one(h);
        }
        while (c->queue_head && c->n_inflight < MAX_INFLIGHT_REQUESTS && !c->free_pending) {
                KubeHttp *h = c->queue_head;

                queue_remove(h);
                http_add(h);
        }
        c->dispatching = false;
        if (c->free_pending)
                client_free_now(c);
        return 0;
}

/* ---- the client ---- */

/* tls-server-name: curl has no separate SNI/verify name, so connect to the
 * real address while the URL carries the name to verify. */
static int setup_url(KubeClient *c)
{
        _cleanup_free_ char *host = NULL, *port = NULL, *path = NULL, *scheme = NULL;
        CURLU *u;
        int r = 0;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, c->config->server, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
                r = -EINVAL;
                goto finish;
        }
        {
                size_t n = strlen(path);
                while (n > 0 && path[n - 1] == '/')
                        path[--n] = '\0';
        }
        if (c->config->tls_server_name && !streq(c->config->tls_server_name, host)) {
                _cleanup_free_ char *line = NULL;
                struct curl_slist *l;

                if (asprintf(&line, "%s:%s:%s:%s", c->config->tls_server_name, port, host, port) < 0 ||
                    asprintf(&c->base_url, "%s://%s:%s%s", scheme, c->config->tls_server_name, port, path) <
                            0) {
                        r = -ENOMEM;
                        goto finish;
                }
                l = curl_slist_append(NULL, line);
                if (!l) {
                        r = -ENOMEM;
                        goto finish;
                }
                c->connect_to = l;
        } else {
                /* curl hands back IPv6 hosts with their brackets already. */
                bool brackets = strchr(host, ':') && host[0] != '[';

                if (asprintf(&c->base_url, "%s://%s%s%s:%s%s", scheme, brackets ? "[" : "", host,
                             brackets ? "]" : "", port, path) < 0) {
                        c->base_url = NULL;
                        r = -ENOMEM;
                }
        }
finish:
        if (host)
                curl_free(TAKE_PTR(host));
        if (port)
                curl_free(TAKE_PTR(port));
        if (path)
                curl_free(TAKE_PTR(path));
        if (scheme)
                curl_free(TAKE_PTR(scheme));
        curl_url_cleanup(u);
        return r;
}

int kube_client_new(sd_event *event, const KubeConfig *config, const KubeClientOptions *opts,
                    KubeClient **ret)
{
        _cleanup_(kube_client_freep) KubeClient *c = NULL;
        int r;

        if (!event || !config || !config->server || !ret)
                return -EINVAL;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->config = kube_config_dup(config);
        if (!c->config)
                return -ENOMEM;
        c->request_timeout_usec = opts && opts->request_timeout_usec ? opts->request_timeout_usec
                                                                     : DEFAULT_REQUEST_TIMEOUT_USEC;
        c->token_reload_usec =
                opts && opts->token_reload_usec ? opts->token_reload_usec : DEFAULT_TOKEN_RELOAD_USEC;
        if (opts && opts->user_agent)
                c->user_agent = strdup(opts->user_agent);
        else
                c->user_agent = strdup("kvegress/" PROJECT_VERSION);
        if (!c->user_agent)
                return -ENOMEM;
        r = setup_url(c);
        if (r < 0)
                return r;

        /* Fail early on credentials that cannot be read at all; later
         * failures keep the last good ones. */
        r = kube_client_refresh_credentials(c, true);
        if (r < 0)
                return r;
        (void)kube_diagnose_client_cert(c->config->client_cert_pem, c->config->source,
                                        "client-certificate-data");

        c->multi = curl_multi_init();
        if (!c->multi)
                return -ENOMEM;
        if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK)
                return -EIO;

        r = sd_event_add_time(event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, c);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(c->timer, "kube-curl-timer");
        r = sd_event_add_defer(event, &c->dispatch, on_dispatch, c);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(c->dispatch, SD_EVENT_OFF);
        (void)sd_event_source_set_description(c->dispatch, "kube-dispatch");

        *ret = TAKE_PTR(c);
        return 0;
}

static void client_free_now(KubeClient *c)
{
        c->queue_head = c->queue_tail = NULL;
        while (c->transfers) {
                c->transfers->in_ready = false;
                c->transfers->in_callback = false;
                http_free(c->transfers);
        }
        c->ready_head = c->ready_tail = NULL;
        c->events = kube_events_free(c->events); /* after the transfers: none will answer now */
        if (c->multi)
                (void)curl_multi_cleanup(c->multi);
        (void)sd_event_source_disable_unref(c->timer);
        (void)sd_event_source_disable_unref(c->dispatch);
        sd_event_unref(c->event);
        curl_slist_free_all(c->connect_to);
        kube_config_free(c->config);
        free(c->base_url);
        free(c->user_agent);
        free(c->token);
        free(c->cert_pem);
        free(c->key_pem);
        free(c);
}

KubeClient *kube_client_free(KubeClient *c)
{
        if (!c)
                return NULL;
        /* Freed from one of our own callbacks: finish when it returns. */
        if (c->dispatching) {
                c->free_pending = true;
                return NULL;
        }
        client_free_now(c);
        return NULL;
}

uint64_t kube_client_request_timeout(KubeClient *c)
{
        return c->request_timeout_usec;
}

int kube_client_reload_credentials(KubeClient *c)
{
        if (!c)
                return -EINVAL;
        return kube_client_refresh_credentials(c, true);
}
