/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver for one-shot requests: reads one JSON command per line on
 * stdin, runs it through one KubeClient, prints one JSON result line, then
 * reads the next. Keeping one client across commands is what lets the tests
 * rotate a token or a certificate between two requests.
 *
 *   {"method":"GET","path":"/api/v1/...","body":{...},"content_type":"...","timeout_ms":N}
 *   {"op":"patch_annotations","resource":"services","namespace":"ns","name":"n",
 *    "annotations":{"k":"v","gone":null},"rv":"12"}
 *   {"op":"event","namespace":"ns","kind":"Service","name":"n","uid":"u","reason":"R","message":"M"}
 *   {"op":"cancel","path":"/..."}   start a request and cancel it at once
 *   {"op":"parallel","requests":[{...},{...}]}  all at once, results in order
 *   {"op":"reload"}                 kube_client_reload_credentials()
 *
 * Options: --kubeconfig FILE [--context C] | --in-cluster ROOT; --timeout-ms,
 * --token-reload-ms set KubeClientOptions. A config error prints
 * {"config_error":-errno,"message":...} and exits 1.
 *
 * Result: {"error":0,"errno":"","status":200,"reason":...,"message":...,
 *          "retry_after":0,"body":{...},"elapsed_ms":N}
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube-client.h"
#include "kube-internal.h"
#include "log.h"

typedef struct Manager {
        sd_event *event;
        KubeClient *client;
        sd_event_source *stdin_source, *idle;
        KubeBuf in;
        bool eof;
        unsigned pending;
        json_t *results; /* for "parallel" */
        unsigned sync_guard;
} Manager;

typedef struct Call {
        Manager *m;
        uint64_t start_usec;
        size_t index; /* in m->results, or SIZE_MAX */
} Call;

static uint64_t now_usec(void)
{
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static void print_json(json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT);
        if (s) {
                fputs(s, stdout);
                fputc('\n', stdout);
                free(s);
        }
        json_decref(j);
        (void)fflush(stdout);
}

static void next_command(Manager *m);

static void on_response(KubeClient *c, const KubeResponse *resp, void *userdata)
{
        Call *call = userdata;
        Manager *m = call->m;
        json_t *j;

        /* Callbacks must never run from inside kube_request(). */
        if (m->sync_guard)
                fprintf(stderr, "BUG: callback invoked re-entrantly\n"), abort();
        j = json_pack("{s:i, s:s, s:I, s:s?, s:s?, s:I, s:O?, s:I}", "error", resp->error, "errno",
                      resp->error < 0 ? strerrorname_np(-resp->error) ?: "" : "", "status",
                      (json_int_t)resp->http_status, "reason", resp->reason, "message", resp->message,
                      "retry_after", (json_int_t)resp->retry_after_sec, "body", resp->body, "elapsed_ms",
                      (json_int_t)((now_usec() - call->start_usec) / 1000));
        if (call->index != SIZE_MAX)
                (void)json_array_set_new(m->results, call->index, j);
        else
                print_json(j);
        free(call);
        m->pending--;
        if (m->pending == 0) {
                if (m->results) {
                        print_json(json_pack("{s:o}", "results", m->results));
                        m->results = NULL;
                }
                next_command(m);
        }
}

static void fail_line(const char *why)
{
        print_json(
                json_pack("{s:i, s:s, s:I}", "error", -EINVAL, "errno", "EINVAL", "status", (json_int_t)0));
        fprintf(stderr, "bad command: %s\n", why);
}

static int start_one(Manager *m, json_t *cmd, size_t index)
{
        const char *op = json_string_value(json_object_get(cmd, "op"));
        Call *call = calloc(1, sizeof(*call));
        KubeRequest *req = NULL;
        int r;

        if (!call)
                return -ENOMEM;
        call->m = m;
        call->start_usec = now_usec();
        call->index = index;
        m->sync_guard++;
        if (!op || streq(op, "cancel")) {
                KubeRequestOptions o = {
                        .timeout_usec =
                                (uint64_t)json_integer_value(json_object_get(cmd, "timeout_ms")) * 1000,
                        .content_type = json_string_value(json_object_get(cmd, "content_type")),
                };
                r = kube_request(m->client, json_string_value(json_object_get(cmd, "method")) ?: "GET",
                                 json_string_value(json_object_get(cmd, "path")) ?: "",
                                 json_object_get(cmd, "body"), &o, on_response, call, &req);
                if (r >= 0 && op) {
                        kube_request_cancel(req);
                        free(call);
                        m->sync_guard--;
                        print_json(json_pack("{s:s}", "cancelled", "ok"));
                        return 1; /* nothing pending */
                }
        } else if (streq(op, "patch_annotations")) {
                const KubeResource *res =
                        kube_resource_from_plural(json_string_value(json_object_get(cmd, "resource")));
                r = res ? kube_request_merge_patch_annotations(
                                  m->client, res, json_string_value(json_object_get(cmd, "namespace")),
                                  json_string_value(json_object_get(cmd, "name")),
                                  json_object_get(cmd, "annotations"),
                                  json_string_value(json_object_get(cmd, "rv")), on_response, call, NULL)
                        : -EINVAL;
        } else if (streq(op, "event")) {
                /* Fire and forget: report that it was queued. */
                r = kube_event_emit(m->client, "kvegress-test", "test-host",
                                    json_string_value(json_object_get(cmd, "kind")) ?: "Service",
                                    json_string_value(json_object_get(cmd, "namespace")),
                                    json_string_value(json_object_get(cmd, "name")),
                                    json_string_value(json_object_get(cmd, "uid")),
                                    json_string_value(json_object_get(cmd, "type")),
                                    json_string_value(json_object_get(cmd, "reason")) ?: "Test",
                                    json_string_value(json_object_get(cmd, "message")));
                free(call);
                m->sync_guard--;
                print_json(json_pack("{s:i}", "queued", r));
                return 1;
        } else if (streq(op, "reload")) {
                r = kube_client_reload_credentials(m->client);
                free(call);
                m->sync_guard--;
                print_json(json_pack("{s:i}", "reloaded", r));
                return 1;
        } else
                r = -EINVAL;
        m->sync_guard--;
        if (r < 0) {
                free(call);
                return r;
        }
        m->pending++;
        return 0;
}

/* Takes the next complete line off the input and starts it. */
static void next_command(Manager *m)
{
        for (;;) {
                char *nl = m->in.data ? memchr(m->in.data, '\n', m->in.len) : NULL;
                json_t *cmd;
                int r;

                if (!nl) {
                        if (m->eof && m->pending == 0)
                                (void)sd_event_exit(m->event, 0);
                        return;
                }
                *nl = '\0';
                cmd = json_loads(m->in.data, 0, NULL);
                kube_buf_consume(&m->in, (size_t)(nl - m->in.data) + 1);
                if (!cmd) {
                        fail_line("not JSON");
                        continue;
                }
                if (streq_ptr(json_string_value(json_object_get(cmd, "op")), "parallel")) {
                        json_t *reqs = json_object_get(cmd, "requests"), *q;
                        size_t i;

                        m->results = json_array();
                        json_array_foreach(reqs, i, q)(void) json_array_append_new(m->results, json_null());
                        json_array_foreach(reqs, i, q)
                        {
                                r = start_one(m, q, i);
                                if (r < 0)
                                        (void)json_array_set_new(m->results, i,
                                                                 json_pack("{s:i}", "error", r));
                        }
                        json_decref(cmd);
                        if (m->pending > 0)
                                return;
                        print_json(json_pack("{s:o}", "results", m->results));
                        m->results = NULL;
                        continue;
                }
                r = start_one(m, cmd, SIZE_MAX);
                json_decref(cmd);
                if (r < 0) {
                        print_json(json_pack("{s:i, s:s, s:I}", "error", r, "errno",
                                             strerrorname_np(-r) ?: "", "status", (json_int_t)0));
                        continue;
                }
                if (r == 0)
                        return; /* wait for the response */
        }
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Manager *m = userdata;
        char buf[65536];
        ssize_t n;

        n = read(fd, buf, sizeof(buf));
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : sd_event_exit(m->event, 1);
        if (n == 0) {
                m->eof = true;
                (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
        } else if (kube_buf_append(&m->in, buf, (size_t)n) < 0)
                return sd_event_exit(m->event, 1);
        if (m->pending == 0)
                next_command(m);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {{"kubeconfig", required_argument, NULL, 'k'},
                                                {"context", required_argument, NULL, 'c'},
                                                {"timeout-ms", required_argument, NULL, 't'},
                                                {"token-reload-ms", required_argument, NULL, 'r'},
                                                {"in-cluster", required_argument, NULL, 'i'},
                                                {"debug", no_argument, NULL, 'd'},
                                                {}};
        const char *kubeconfig = NULL, *context = NULL, *in_cluster = NULL;
        KubeClientOptions co = {};
        KubeConfig *cfg = NULL;
        Manager m = {};
        char *err = NULL;
        int c, r;

        log_setup("kube-request-check");
        log_set_max_level(LOG_INFO);
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        kubeconfig = optarg;
                        break;
                case 'c':
                        context = optarg;
                        break;
                case 't':
                        co.request_timeout_usec = (uint64_t)atoll(optarg) * 1000;
                        break;
                case 'r':
                        co.token_reload_usec = (uint64_t)atoll(optarg) * 1000;
                        break;
                case 'i':
                        in_cluster = optarg;
                        break;
                case 'd':
                        log_set_max_level(LOG_DEBUG);
                        break;
                default:
                        return 2;
                }
        if (in_cluster)
                r = kube_config_in_cluster(in_cluster, &cfg, &err);
        else
                r = kube_config_auto(kubeconfig, context, &cfg, &err);
        if (r < 0) {
                print_json(json_pack("{s:i, s:s}", "config_error", r, "message", err ?: ""));
                free(err);
                return 1;
        }
        if (cfg->insecure_skip_tls_verify)
                fprintf(stderr, "warning: TLS verification is disabled by %s\n", cfg->source);
        r = sd_event_default(&m.event);
        if (r < 0)
                return 1;
        r = kube_client_new(m.event, cfg, &co, &m.client);
        kube_config_free(cfg);
        if (r < 0) {
                print_json(json_pack("{s:i, s:s}", "client_error", r, "errno", strerrorname_np(-r) ?: ""));
                return 1;
        }
        (void)fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
        r = sd_event_add_io(m.event, &m.stdin_source, STDIN_FILENO, EPOLLIN, on_stdin, &m);
        if (r < 0)
                return 1;
        r = sd_event_loop(m.event);
        sd_event_source_unref(m.stdin_source);
        kube_client_free(m.client);
        sd_event_unref(m.event);
        kube_buf_done(&m.in);
        return r < 0 ? 1 : 0;
}
