/* SPDX-License-Identifier: Apache-2.0 */
/* The Manager: owns everything, starts the watches and both bus clients,
 * and frees it all; the SIGTERM sequence is the loop's (controller.c). */
#include <stdio.h>
#include <time.h>

#include "array.h"
#include "carry.h"
#include "clock.h"
#include "controller.h"
#include "elect.h"
#include "introspect.h"
#include "kvelectd-bus.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "manager.h"
#include "net.h"
#include "service.h"
#include "watch.h"

int manager_new(Manager **ret)
{
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->startup = startup_init();
        m->reports = &controller_reports;
        m->empty_object = json_object();
        if (!m->empty_object)
                return -ENOMEM;
        r = config_load(&m->config);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m)
{
        if (!m)
                return NULL;
        /* First: no kvctl call may see a half-freed manager. */
        m->introspect = bus_server_free(m->introspect);
        loop_lag_stop(&m->metrics.loop_lag);
        for (size_t i = 0; i < m->n_services; i++)
                service_free(m->services[i]);
        free(m->services);
        hashmap_done(&m->services_by_key);
        for (size_t i = 0; i < m->n_leases; i++) {
                sd_bus_slot_unref(m->leases[i]->campaign_slot);
                free(m->leases[i]->key);
                free(m->leases[i]->namespace);
                free(m->leases[i]->name);
                free(m->leases[i]->holder);
                free(m->leases[i]->services);
                free(m->leases[i]);
        }
        free(m->leases);
        hashmap_done(&m->leases_by_key);
        for (WatchKind k = 0; k < _WATCH_KIND_MAX; k++)
                kube_informer_free(m->informers[k]);
        watch_done(m);
        json_decref(m->empty_object);
        sd_event_source_disable_unref(m->lag_source);
        kube_client_free(m->kube);
        kube_config_free(m->kube_config);
        m->kvnetd_expired_slot = sd_bus_slot_unref(m->kvnetd_expired_slot);
        carry_forget(m);
        m->kvelectd_leadership_slot = sd_bus_slot_unref(m->kvelectd_leadership_slot);
        m->kvelectd_renewed_slot = sd_bus_slot_unref(m->kvelectd_renewed_slot);
        bus_client_free(m->kvnetd);
        bus_client_free(m->kvelectd);
        sd_event_source_disable_unref(m->debounce_source);
        sd_event_source_disable_unref(m->resync_source);
        sd_event_source_disable_unref(m->lease_deadline_source);
        sd_event_source_disable_unref(m->campaign_retry_source);
        sd_event_source_disable_unref(m->stop_timeout_source);
        cluster_cidrs_done(&m->cidrs);
        config_done(&m->config);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

/* egress-detect-api-server also denies the address the kubeconfig points
 * at, when it is a literal (a pod may reach the API there, not only via the
 * kubernetes Service). */
static void add_kubeconfig_server(Manager *m)
{
        const char *s = m->kube_config ? m->kube_config->server : NULL, *b, *e;
        char host[INET6_ADDRSTRLEN + 2];
        IpAddr a;

        if (!s || !(b = strstr(s, "://")))
                return;
        b += 3;
        if (*b == '[') {
                e = strchr(++b, ']');
        } else {
                e = strchr(b, ':');
                if (!e)
                        e = strchr(b, '/');
                if (!e)
                        e = b + strlen(b);
        }
        if (!e || (size_t)(e - b) >= sizeof(host))
                return;
        memcpy(host, b, (size_t)(e - b));
        host[e - b] = '\0';
        if (ip_addr_parse(host, AF_UNSPEC, &a, NULL) < 0)
                return;
        for (size_t i = 0; i < m->config.n_api_servers; i++)
                if (ip_addr_equal(&m->config.api_servers[i], &a))
                        return;
        if (ARRAY_RESERVE(m->config.api_servers, m->config.cap_api_servers, m->config.n_api_servers + 1) < 0)
                return;
        m->config.api_servers[m->config.n_api_servers++] = a;
}

/* Event-loop lag: how late a 10 ms timer fires is how long the loop was
 * busy with something else (one callback, or a batch of them). Measured only
 * at debug level, where it is logged every 10 s: the timer wakes the daemon
 * 100 times a second. */
#define LAG_PERIOD_USEC (10 * USEC_PER_MSEC)
#define LAG_REPORT_USEC (10 * USEC_PER_SEC)

static uint64_t cpu_usec(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

/* Two figures: how late the timer fired (wall clock: on a loaded machine
 * this includes waiting for a CPU), and how much CPU kvpd used between two
 * ticks (what its own callbacks took without yielding, whatever the load). */
static int on_lag_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        uint64_t now = now_usec(), cpu = cpu_usec(), late = now > usec ? now - usec : 0, busy;

        /* The first tick waited for the start-up (TLS set-up, connects),
         * which runs before the loop: not a callback's doing. */
        if (m->lag_window_start_usec == 0) {
                m->lag_window_start_usec = now;
                m->lag_cpu_usec = cpu;
                late = 0;
        }
        busy = cpu - m->lag_cpu_usec;
        m->lag_cpu_usec = cpu;

        m->lag_max_usec = MAX(m->lag_max_usec, late);
        m->lag_max_total_usec = MAX(m->lag_max_total_usec, late);
        m->busy_max_usec = MAX(m->busy_max_usec, busy);
        m->busy_max_total_usec = MAX(m->busy_max_total_usec, busy);
        if (now - m->lag_window_start_usec >= LAG_REPORT_USEC) {
                log_debug("event loop lag: max %.1f ms in the last %.0f s, max %.1f ms since start; "
                          "longest busy stretch %.1f ms of CPU, %.1f ms since start",
                          (double)m->lag_max_usec / USEC_PER_MSEC,
                          (double)(now - m->lag_window_start_usec) / USEC_PER_SEC,
                          (double)m->lag_max_total_usec / USEC_PER_MSEC,
                          (double)m->busy_max_usec / USEC_PER_MSEC,
                          (double)m->busy_max_total_usec / USEC_PER_MSEC);
                m->lag_max_usec = m->busy_max_usec = 0;
                m->lag_window_start_usec = now;
        }
        (void)sd_event_source_set_time(es, now + LAG_PERIOD_USEC);
        return 0;
}

static void lag_probe_start(Manager *m)
{
        int r;

        if (log_get_max_level() < LOG_DEBUG)
                return;
        r = sd_event_add_time(m->event, &m->lag_source, CLOCK_MONOTONIC, now_usec() + LAG_PERIOD_USEC, 1,
                              on_lag_timer, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->lag_source, SD_EVENT_ON);
        if (r < 0)
                log_debug_errno(r, "cannot measure the event loop's lag: %m");
}

int manager_start(Manager *m)
{
        _cleanup_free_ char *error = NULL;
        KubeClientOptions opts = {.user_agent = "kvpd/" PROJECT_VERSION};
        int r;

        r = kube_config_auto(m->config.kubeconfig, m->config.kube_context, &m->kube_config, &error);
        if (r < 0)
                return log_error_errno(r,
                                       "no usable Kubernetes API credentials%s%s (set KVEGRESS_KUBECONFIG)",
                                       error ? ": " : "", error ? error : "");
        if (m->kube_config->insecure_skip_tls_verify)
                log_warning("%s: insecure-skip-tls-verify is set: the API server is not authenticated",
                            m->kube_config->source ? m->kube_config->source : "kubeconfig");
        add_kubeconfig_server(m);
        r = kube_client_new(m->event, m->kube_config, &opts, &m->kube);
        if (r < 0) {
                _cleanup_free_ char *what = kube_config_describe(m->kube_config);
                return log_error_errno(r, "cannot set up the Kubernetes client from %s: %m",
                                       what ? what : "kubeconfig");
        }
        log_info("node %s, API %s, VIP interface %s, watching %s", m->config.node_name,
                 m->kube_config->server, m->config.service_interface,
                 m->config.namespace ? m->config.namespace : "all namespaces");

        lag_probe_start(m);
        r = net_start(m);
        if (r < 0)
                return r;
        (void)introspect_start(m);
        r = elect_start(m);
        if (r < 0)
                return r;
        return watch_start(m);
}
