/* SPDX-License-Identifier: Apache-2.0 */
/* One-shot requests: a JSON body out, a parsed JSON body (and the Status
 * fields of errors) back, through a callback that always runs from the event
 * loop. A 401 re-reads the credentials and, if they changed, tries once more,
 * since a rotated token or certificate is the usual cause. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube-client.h"
#include "kube-internal.h"
#include "kube-objects.h"
#include "log.h"

struct KubeRequest {
        KubeClient *client;
        KubeHttp *http;
        KubeResponseFn cb;
        void *userdata;
        char *method, *path, *body, *content_type;
        uint64_t timeout_usec, priority_usec;
        bool retried_auth, in_callback;
};

static KubeRequest *request_free(KubeRequest *r)
{
        if (!r)
                return NULL;
        free(r->method);
        free(r->path);
        free(r->body);
        free(r->content_type);
        return mfree(r);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeRequest *, request_free);

static int request_send(KubeRequest *r);

static void on_done(KubeHttp *h, const KubeHttpResult *res, void *userdata)
{
        KubeRequest *r = userdata;
        _cleanup_free_ char *text = NULL;
        KubeResponse resp = {
                .error = res->error,
                .http_status = res->status,
                .retry_after_sec = res->retry_after_sec,
                .sent_usec = res->sent_usec,
        };
        json_t *body = NULL;

        r->http = NULL;
        if (res->error == 0 && res->status == 401 && !r->retried_auth &&
            kube_client_refresh_credentials(r->client, true) > 0) {
                r->retried_auth = true;
                if (request_send(r) >= 0)
                        return;
        }

        if (res->body_size > 0) {
                json_error_t jerr;

                body = json_loadb(res->body, res->body_size, JSON_ALLOW_NUL, &jerr);
                if (!body) {
                        /* Plain-text errors (a 429 from priority and fairness,
                         * "404 page not found") still say something useful. */
                        text = strndup(res->body, MIN(res->body_size, (size_t)1024));
                        if (text) {
                                size_t n = strlen(text);
                                while (n > 0 && strchr(" \r\n", text[n - 1]))
                                        text[--n] = '\0';
                        }
                        resp.message = text;
                }
        }
        resp.body = body;
        if (json_is_object(body) && streq_ptr(json_string_value(json_object_get(body, "kind")), "Status")) {
                json_t *details = json_object_get(body, "details");
                json_int_t ra = json_integer_value(json_object_get(details, "retryAfterSeconds"));

                resp.reason = json_string_value(json_object_get(body, "reason"));
                resp.message = json_string_value(json_object_get(body, "message"));
                if (resp.retry_after_sec == 0 && ra > 0)
                        resp.retry_after_sec = (unsigned)MIN(ra, (json_int_t)86400);
        }

        r->in_callback = true;
        r->cb(r->client, &resp, r->userdata);
        json_decref(body);
        request_free(r);
}

static int request_send(KubeRequest *r)
{
        KubeHttpParams p = {
                .method = r->method,
                .path = r->path,
                .body = r->body,
                .body_size = r->body ? strlen(r->body) : 0,
                .content_type = r->content_type,
                .timeout_usec = r->timeout_usec,
                .priority_usec = r->priority_usec,
        };
        static const KubeHttpOps ops = {.done = on_done};

        return kube_http_start(r->client, &p, &ops, r, &r->http);
}

static bool method_valid(const char *m)
{
        return m && (streq(m, "GET") || streq(m, "POST") || streq(m, "PUT") || streq(m, "PATCH") ||
                     streq(m, "DELETE"));
}

int kube_request(KubeClient *c, const char *method, const char *path, json_t *body,
                 const KubeRequestOptions *opts, KubeResponseFn cb, void *userdata,
                 KubeRequest **ret_request)
{
        _cleanup_(request_freep) KubeRequest *r = NULL;
        int k;

        if (!c || !method_valid(method) || !path || path[0] != '/' || !cb)
                return -EINVAL;
        if (streq(method, "PATCH") && !(opts && opts->content_type))
                return -EINVAL;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->client = c;
        r->cb = cb;
        r->userdata = userdata;
        r->timeout_usec = opts && opts->timeout_usec ? opts->timeout_usec : kube_client_request_timeout(c);
        r->priority_usec = opts ? opts->priority_usec : 0;
        r->method = strdup(method);
        r->path = strdup(path);
        if (!r->method || !r->path)
                return -ENOMEM;
        if (opts && opts->content_type) {
                r->content_type = strdup(opts->content_type);
                if (!r->content_type)
                        return -ENOMEM;
        }
        if (body) {
                r->body = json_dumps(body, JSON_COMPACT);
                if (!r->body)
                        return -ENOMEM;
        }
        k = request_send(r);
        if (k < 0)
                return k;
        if (ret_request)
                *ret_request = r;
        TAKE_PTR(r);
        return 0;
}

void kube_request_cancel(KubeRequest *r)
{
        if (!r || r->in_callback)
                return;
        kube_http_cancel(r->http);
        request_free(r);
}

int kube_event_emit(KubeClient *c, const char *component, const char *host, const char *involved_kind,
                    const char *namespace, const char *name, const char *uid, const char *type,
                    const char *reason, const char *message)
{
        if (!c)
                return -EINVAL;
        return kube_events_emit(kube_client_events(c), component, host, involved_kind, namespace, name, uid,
                                type, reason, message);
}

int kube_request_merge_patch_annotations(KubeClient *c, const KubeResource *res, const char *namespace,
                                         const char *name, json_t *annotations, const char *resource_version,
                                         KubeResponseFn cb, void *userdata, KubeRequest **ret_request)
{
        _cleanup_free_ char *path = NULL;
        json_t *patch = NULL, *meta = NULL;
        int r;

        if (!json_is_object(annotations) || !name)
                return -EINVAL;
        r = kube_resource_path(res, namespace, name, NULL, &path);
        if (r < 0)
                return r;
        meta = json_pack("{s:O}", "annotations", annotations);
        if (!meta)
                return -ENOMEM;
        if (resource_version)
                (void)json_object_set_new(meta, "resourceVersion", json_string(resource_version));
        patch = json_pack("{s:o}", "metadata", meta);
        if (!patch)
                return -ENOMEM;
        r = kube_request(c, "PATCH", path, patch,
                         &(KubeRequestOptions){.content_type = "application/merge-patch+json"}, cb, userdata,
                         ret_request);
        json_decref(patch);
        return r;
}
