/* SPDX-License-Identifier: Apache-2.0 */
/* kvelectd's metrics for `kvctl metrics` (GetMetrics, read-only), in
 * kube-vip's names where the meaning is the same. */
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "kube-metrics.h"
#include "kube-objects.h"
#include "kvelectd-bus.h"
#include "log.h"
#include "manager.h"

int introspect_setup(Manager *m)
{
        m->metrics.failover_seconds = (MetricHistogram)METRIC_HISTOGRAM_SECONDS;
        return loop_lag_start(m->event, &m->metrics.loop_lag);
}

/* Called with every batch of election events, before they are acted on.
 * Failover as the new holder sees it: from the previous holder's last
 * renewTime in the Lease (for a release, the release) to this node leading.
 * Wall clocks of two nodes: as exact as their synchronisation. */
void introspect_note_campaign(Campaign *c, unsigned events)
{
        Manager *m = c->manager;
        Election *e = c->election;
        const LeaseRecord *rec = election_observed(e, NULL);
        uint64_t renew = 0, now = realtime_usec();

        if ((events & ELECTION_EVENT_LEADING) && election_is_leading(e)) {
                m->metrics.transitions++;
                if (c->other_holder && now > c->other_renew_real_usec)
                        metric_histogram_observe(&m->metrics.failover_seconds,
                                                 (double)(now - c->other_renew_real_usec) / USEC_PER_SEC);
                c->other_holder = false;
                return;
        }
        if (election_is_leading(e) || !rec || kube_time_parse(rec->renew_time, &renew) < 0)
                return;
        if (!isempty(rec->holder) && strcasecmp(rec->holder, m->identity) != 0)
                c->other_holder = true; /* another node held it */
        else if (!isempty(rec->holder))
                return; /* our own, from before a restart */
        if (c->other_holder)
                c->other_renew_real_usec = renew; /* its last renewal, or its release */
}

int introspect_method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        (void)error;
        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        metrics_family(f, "kube_vip_is_leader", "gauge", "1 while this node leads the Lease (per campaign)");
        for (Campaign *c = m->campaigns; c; c = c->next) {
                char labels[600], esc[520];

                if (!election_is_campaigning(c->election))
                        continue;
                (void)snprintf(labels, sizeof(labels), "lease=\"%s\"",
                               metrics_label_escape(c->key, esc, sizeof(esc)));
                metrics_sample(f, "kube_vip_is_leader", labels, election_is_leading(c->election) ? 1 : 0);
        }
        metrics_family(f, "kube_vip_leader_election_transitions_total", "counter",
                       "Times this node became leader of a Lease");
        metrics_sample(f, "kube_vip_leader_election_transitions_total", "", (double)m->metrics.transitions);
        metrics_family(
                f, "kvegress_failover_duration_seconds", "histogram",
                "Failover as the new holder sees it: the previous holder's last renewal seen to leading");
        metrics_histogram(f, "kvegress_failover_duration_seconds", "", &m->metrics.failover_seconds);
        metrics_family(f, "kvegress_campaigns", "gauge", "Leases kvelectd campaigns for");
        metrics_sample(f, "kvegress_campaigns", "", (double)m->n_campaigns);
        metrics_family(f, "kvegress_api_unreachable", "gauge",
                       "1 while kvelectd's last Lease request found the Kubernetes API unreachable");
        metrics_sample(f, "kvegress_api_unreachable", "daemon=\"kvelectd\"", m->api_unreachable ? 1 : 0);
        kube_client_write_metrics(f, m->client, "kvelectd");
        loop_lag_write(f, &m->metrics.loop_lag, "kvelectd");
        if (fclose(f) != 0)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "s", text ? text : "");
}
