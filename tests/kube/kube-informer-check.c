/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver: runs informers against a kubeconfig and reports, as JSON
 * lines on stdout, every event the consumer sees, each sync, and (on
 * SIGUSR1, and at exit on SIGTERM/SIGINT) the whole cache. The Python
 * integration tests compare that with the test API server's objects.
 *
 *   kube-informer-check --kubeconfig FILE [--context C] [--namespace NS]
 *       [--label-selector S] [--field-selector S] [--page-limit N]
 *       [--quiet] [--exit-after-sync] [--objects] RESOURCE...
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube-client.h"
#include "kube-internal.h"
#include "log.h"

#define MAX_INFORMERS 8

typedef struct Watch {
        const KubeResource *res;
        KubeInformer *inf;
        uint64_t events;
        bool reported_sync;
} Watch;

typedef struct Manager {
        sd_event *event;
        KubeClient *client;
        Watch watches[MAX_INFORMERS];
        size_t n_watches;
        bool quiet, exit_after_sync, objects;
        uint64_t start_usec;
        unsigned dumps;
} Manager;

static uint64_t now_usec(void)
{
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static const char *meta(json_t *o, const char *k)
{
        return json_string_value(json_object_get(json_object_get(o, "metadata"), k));
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

static Watch *watch_of(Manager *m, KubeInformer *inf)
{
        for (size_t i = 0; i < m->n_watches; i++)
                if (m->watches[i].inf == inf)
                        return &m->watches[i];
        return NULL;
}

static void on_event(KubeInformer *inf, KubeWatchEventType type, json_t *obj, void *userdata)
{
        static const char *const names[] = {"ADDED", "MODIFIED", "DELETED"};
        Manager *m = userdata;
        Watch *w = watch_of(m, inf);
        json_t *j;

        if (w)
                w->events++;
        if (m->quiet)
                return;
        j = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?}", "op", "event", "resource",
                      w ? w->res->plural : "?", "type", names[type], "namespace", meta(obj, "namespace"),
                      "name", meta(obj, "name"), "uid", meta(obj, "uid"), "rv",
                      meta(obj, "resourceVersion"));
        if (j && m->objects)
                (void)json_object_set(j, "object", obj);
        print_json(j);
}

static void check_all_synced(Manager *m)
{
        for (size_t i = 0; i < m->n_watches; i++)
                if (!kube_informer_synced(m->watches[i].inf))
                        return;
        if (m->exit_after_sync)
                (void)sd_event_exit(m->event, 0);
}

static void on_synced(KubeInformer *inf, void *userdata)
{
        Manager *m = userdata;
        Watch *w = watch_of(m, inf);

        print_json(json_pack("{s:s, s:s, s:I, s:s?, s:I, s:I}", "op", "synced", "resource",
                             w ? w->res->plural : "?", "size", (json_int_t)kube_informer_size(inf), "rv",
                             kube_informer_resource_version(inf), "elapsed_ms",
                             (json_int_t)((now_usec() - m->start_usec) / 1000), "events",
                             (json_int_t)(w ? w->events : 0)));
        check_all_synced(m);
}

typedef struct DumpCtx {
        Manager *m;
        Watch *w;
} DumpCtx;

static int dump_one(json_t *obj, void *userdata)
{
        DumpCtx *d = userdata;
        json_t *j =
                json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?}", "op", "cache", "resource", d->w->res->plural,
                          "namespace", meta(obj, "namespace"), "name", meta(obj, "name"), "uid",
                          meta(obj, "uid"), "rv", meta(obj, "resourceVersion"));

        if (j && d->m->objects)
                (void)json_object_set(j, "object", obj);
        print_json(j);
        return 0;
}

static void dump(Manager *m)
{
        KubeClientStats st;
        json_t *rvs = json_object(), *sizes = json_object();

        for (size_t i = 0; i < m->n_watches; i++) {
                DumpCtx d = {m, &m->watches[i]};
                (void)kube_informer_foreach(m->watches[i].inf, dump_one, &d);
                (void)json_object_set_new(
                        rvs, m->watches[i].res->plural,
                        json_string(kube_informer_resource_version(m->watches[i].inf) ?: ""));
                (void)json_object_set_new(sizes, m->watches[i].res->plural,
                                          json_integer((json_int_t)kube_informer_size(m->watches[i].inf)));
        }
        kube_client_get_stats(m->client, &st);
        print_json(json_pack("{s:s, s:I, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I}}", "op", "dump_end", "seq",
                             (json_int_t)++m->dumps, "rv", rvs, "size", sizes, "stats", "requests",
                             (json_int_t)st.requests, "lists", (json_int_t)st.lists, "watches",
                             (json_int_t)st.watches, "relists", (json_int_t)st.relists, "errors",
                             (json_int_t)st.errors));
}

static int on_sigusr1(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        dump(userdata);
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        Manager *m = userdata;
        dump(m);
        return sd_event_exit(m->event, 0);
}

int main(int argc, char **argv)
{
        static const struct option options[] = {{"kubeconfig", required_argument, NULL, 'k'},
                                                {"context", required_argument, NULL, 'c'},
                                                {"namespace", required_argument, NULL, 'n'},
                                                {"label-selector", required_argument, NULL, 'l'},
                                                {"field-selector", required_argument, NULL, 'f'},
                                                {"page-limit", required_argument, NULL, 'p'},
                                                {"quiet", no_argument, NULL, 'q'},
                                                {"exit-after-sync", no_argument, NULL, 'x'},
                                                {"objects", no_argument, NULL, 'o'},
                                                {"debug", no_argument, NULL, 'd'},
                                                {}};
        const char *kubeconfig = NULL, *context = NULL;
        KubeInformerOptions io = {};
        KubeConfig *cfg = NULL;
        Manager m = {};
        char *err = NULL;
        sigset_t mask;
        int c, r;

        log_setup("kube-informer-check");
        log_set_max_level(LOG_INFO);
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        kubeconfig = optarg;
                        break;
                case 'c':
                        context = optarg;
                        break;
                case 'n':
                        io.namespace = optarg;
                        break;
                case 'l':
                        io.label_selector = optarg;
                        break;
                case 'f':
                        io.field_selector = optarg;
                        break;
                case 'p':
                        io.page_limit = (unsigned)atoi(optarg);
                        break;
                case 'q':
                        m.quiet = true;
                        break;
                case 'x':
                        m.exit_after_sync = true;
                        break;
                case 'o':
                        m.objects = true;
                        break;
                case 'd':
                        log_set_max_level(LOG_DEBUG);
                        break;
                default:
                        return 2;
                }
        if (optind >= argc || argc - optind > MAX_INFORMERS) {
                fprintf(stderr, "usage: %s --kubeconfig FILE RESOURCE...\n", argv[0]);
                return 2;
        }

        r = kube_config_auto(kubeconfig, context, &cfg, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", err ?: strerror(-r));
                free(err);
                return 1;
        }
        (void)sigemptyset(&mask);
        (void)sigaddset(&mask, SIGUSR1);
        (void)sigaddset(&mask, SIGTERM);
        (void)sigaddset(&mask, SIGINT);
        (void)sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&m.event);
        if (r < 0)
                return 1;
        (void)sd_event_add_signal(m.event, NULL, SIGUSR1, on_sigusr1, &m);
        (void)sd_event_add_signal(m.event, NULL, SIGTERM, on_sigterm, &m);
        (void)sd_event_add_signal(m.event, NULL, SIGINT, on_sigterm, &m);

        r = kube_client_new(m.event, cfg, NULL, &m.client);
        kube_config_free(cfg);
        if (r < 0) {
                fprintf(stderr, "kube_client_new: %s\n", strerror(-r));
                return 1;
        }
        m.start_usec = now_usec();
        for (int i = optind; i < argc; i++) {
                Watch *w = &m.watches[m.n_watches];
                static const KubeInformerOps ops = {.event = on_event, .synced = on_synced};
                KubeInformerOptions o = io;

                w->res = kube_resource_from_plural(argv[i]);
                if (!w->res) {
                        fprintf(stderr, "unknown resource %s\n", argv[i]);
                        return 2;
                }
                if (!w->res->namespaced)
                        o.namespace = NULL;
                r = kube_informer_new(m.client, w->res, &o, &ops, &m, &w->inf);
                if (r < 0) {
                        fprintf(stderr, "kube_informer_new(%s): %s\n", argv[i], strerror(-r));
                        return 1;
                }
                m.n_watches++;
        }
        print_json(json_pack("{s:s}", "op", "started"));

        r = sd_event_loop(m.event);
        for (size_t i = 0; i < m.n_watches; i++)
                kube_informer_free(m.watches[i].inf);
        kube_client_free(m.client);
        sd_event_unref(m.event);
        return r < 0 ? 1 : 0;
}
