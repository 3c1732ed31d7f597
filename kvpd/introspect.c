/* SPDX-License-Identifier: Apache-2.0 */
/* io.kvegress.Controller1 (shared/kvpd-bus.h): kvctl's view of what kvpd
 * wants for each Service and the last error on its way, with the daemon it
 * came from. Read-only: every method only copies kvpd's memory into the
 * reply, and the connection filter (bus-server.c) refuses anything else. No
 * credential or kubeconfig content is ever part of a reply. */
#include <systemd/sd-daemon.h>

#include "bus-netaddr.h"
#include "introspect.h"
#include "kube-metrics.h"
#include "kvpd-bus.h"
#include "log.h"

#define strempty(s) ((s) ? (s) : "")

static const char *const read_only_methods[] = {KVPD_METHOD_GET_NODE, KVPD_METHOD_LIST_SERVICES,
                                                KVPD_METHOD_GET_METRICS, NULL};

static const char *state_to_string(const EgressPolicy *p)
{
        static const char *const table[_EGRESS_STATE_MAX] = {
                [EGRESS_NONE] = "none",         [EGRESS_INVALID] = "invalid", [EGRESS_IDLE] = "idle",
                [EGRESS_YIELDING] = "yielding", [EGRESS_READY] = "ready",
        };

        if (!p || p->state < 0 || p->state >= _EGRESS_STATE_MAX)
                return "none";
        return table[p->state];
}

static int append_service(sd_bus_message *reply, const Service *s)
{
        const EgressPolicy *p = s->policy;
        const Lease *l = s->lease;
        _cleanup_free_ char *lease = NULL;
        int r;

        if (l && asprintf(&lease, "%s/%s", l->namespace, l->name) < 0)
                return -ENOMEM;
        r = sd_bus_message_open_container(reply, 'r', "sssbstsasasa(sq)asasbsstb");
        if (r >= 0)
                r = sd_bus_message_append(reply, "sssbsts", s->key, state_to_string(p), strempty(lease),
                                          (int)(l && l->leading), l ? strempty(l->holder) : "",
                                          (uint64_t)(l && l->leading ? l->deadline_usec : 0),
                                          p ? strempty(p->ifname) : "");
        if (r >= 0)
                r = bus_append_addrs(reply, p ? p->vips : NULL, p ? p->n_vips : 0);
        if (r >= 0)
                r = bus_append_addrs(reply, p ? p->pods : NULL, p ? p->n_pods : 0);
        if (r >= 0)
                r = bus_append_ports(reply, p ? p->ports : NULL, p ? p->n_ports : 0);
        if (r >= 0)
                r = bus_append_prefixes(reply, p ? p->allowed : NULL, p ? p->n_allowed : 0);
        if (r >= 0)
                r = bus_append_prefixes(reply, p ? p->denied : NULL, p ? p->n_denied : 0);
        if (r >= 0)
                r = sd_bus_message_append(reply, "bsstb", (int)(s->programmed && s->net_confirmed),
                                          strempty(s->error), strempty(s->error_from),
                                          (uint64_t)s->error_usec, (int)s->error_failing);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_list_services(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        (void)error;
        r = bus_reply_array_new(msg, KVPD_SIG_LIST_SERVICES_REPLY, &reply);
        for (size_t i = 0; r >= 0 && i < m->n_services; i++) {
                const Service *s = m->services[i];

                /* Services that never asked for egress are not ours to show. */
                if ((!s->policy || s->policy->state == EGRESS_NONE) && !s->programmed && !s->error)
                        continue;
                r = append_service(reply, s);
        }
        return r < 0 ? r : bus_reply_array_send(reply);
}

static int method_get_node(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        bool synced = m->startup.phase != KVPD_PHASE_WAITING_FOR_SYNC;

        (void)error;
        return sd_bus_reply_method_return(msg, KVPD_SIG_GET_NODE_REPLY, m->config.node_name, PROJECT_VERSION,
                                          (int)synced, (int)!!bus_client_get(m->kvnetd),
                                          (int)!!bus_client_get(m->kvelectd));
}

static int method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        _cleanup_free_ char *text = NULL;
        KubeEventStats es = {};
        size_t size = 0, holding = 0, failing = 0;
        FILE *f;

        (void)error;
        if (m->kube)
                kube_client_get_event_stats(m->kube, &es);
        for (size_t i = 0; i < m->n_services; i++) {
                holding += m->services[i]->programmed && m->services[i]->net_confirmed;
                failing += m->services[i]->error_failing;
        }
        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        metrics_family(f, "kube_vip_service_reconcile_errors_total", "counter",
                       "Errors on the way from a Service to its egress (kvpd, kvnetd or kvelectd refused)");
        metrics_sample(f, "kube_vip_service_reconcile_errors_total", "",
                       (double)m->metrics.reconcile_errors);
        metrics_family(f, "kube_vip_service_reconcile_duration_seconds", "histogram",
                       "Time kvpd takes to compute and send one Service's desired state");
        metrics_histogram(f, "kube_vip_service_reconcile_duration_seconds", "",
                          &m->metrics.reconcile_seconds);
        metrics_family(f, "kvegress_change_to_snat_seconds", "histogram",
                       "A change of a Service or its EndpointSlices seen by the watch, to kvnetd confirming "
                       "the SNAT");
        metrics_histogram(f, "kvegress_change_to_snat_seconds", "", &m->metrics.change_to_snat_seconds);
        metrics_family(f, "kvegress_services_programmed", "gauge", "Services whose egress this node holds");
        metrics_sample(f, "kvegress_services_programmed", "", (double)holding);
        metrics_family(f, "kvegress_services_failing", "gauge",
                       "Services with a standing error (kvctl status)");
        metrics_sample(f, "kvegress_services_failing", "", (double)failing);
        kube_client_write_metrics(f, m->kube, "kvpd");
        metrics_family(f, "kvegress_events_total", "counter",
                       "Kubernetes Events: posted (new objects), patched (count bumped), dropped (rate "
                       "limit), failed");
        metrics_sample(f, "kvegress_events_total", "result=\"posted\"", (double)es.posted);
        metrics_sample(f, "kvegress_events_total", "result=\"patched\"", (double)es.patched);
        metrics_sample(f, "kvegress_events_total", "result=\"dropped\"", (double)es.dropped);
        metrics_sample(f, "kvegress_events_total", "result=\"failed\"", (double)es.failed);
        metrics_family(f, "kvegress_event_writes_dropped_total", "counter",
                       "Event writes saved by aggregation (repeats folded into a count) or dropped by the "
                       "rate limit");
        metrics_sample(f, "kvegress_event_writes_dropped_total", "",
                       (double)((es.aggregated > es.patched ? es.aggregated - es.patched : 0) + es.dropped));
        loop_lag_write(f, &m->metrics.loop_lag, "kvpd");
        if (fclose(f) != 0)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "s", text ? text : "");
}

static const sd_bus_vtable controller_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES(KVPD_METHOD_GET_NODE, "", , KVPD_SIG_GET_NODE_REPLY,
                                 SD_BUS_PARAM(node) SD_BUS_PARAM(version) SD_BUS_PARAM(synced)
                                         SD_BUS_PARAM(kvnetd) SD_BUS_PARAM(kvelectd),
                                 method_get_node, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVPD_METHOD_LIST_SERVICES, "", , KVPD_SIG_LIST_SERVICES_REPLY,
                                 SD_BUS_PARAM(services), method_list_services, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVPD_METHOD_GET_METRICS, "", , "s", SD_BUS_PARAM(metrics),
                                 method_get_metrics, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int setup_connection(sd_bus *bus, void *userdata)
{
        return sd_bus_add_object_vtable(bus, NULL, KVPD_BUS_PATH, KVPD_BUS_INTERFACE, controller_vtable,
                                        userdata);
}

int introspect_start(Manager *m)
{
        int r;

        m->metrics.reconcile_seconds = (MetricHistogram)METRIC_HISTOGRAM_SECONDS;
        m->metrics.change_to_snat_seconds = (MetricHistogram)METRIC_HISTOGRAM_SECONDS;
        if (loop_lag_start(m->event, &m->metrics.loop_lag) < 0)
                log_warning("cannot measure the event loop's lag; the metric stays empty");

        /* kvpd.socket passes one socket; otherwise only a configured path. */
        if (sd_listen_fds(false) <= 0 && !m->config.kvpd_socket)
                return 0;
        /* Nobody gets the full policy (there is nothing to change); every
         * peer that can open the socket reads. */
        r = bus_server_new(m->event,
                           m->config.kvpd_socket ? m->config.kvpd_socket : KVPD_SOCKET_PATH_DEFAULT, 0660,
                           &(BusPeerPolicy){}, KVPD_MAX_CONNECTIONS, setup_connection, m, &m->introspect);
        if (r >= 0)
                r = bus_server_set_read_only(m->introspect, &(BusPeerPolicy){.allow_any = true},
                                             read_only_methods);
        if (r < 0) {
                /* Introspection is for operators: kvpd runs on without it. */
                log_warning_errno(r, "kvctl's socket (%s): cannot listen, kvctl will not reach kvpd: %m",
                                  m->config.kvpd_socket ? m->config.kvpd_socket : "socket activation");
                m->introspect = bus_server_free(m->introspect);
        }
        return 0;
}
