/* SPDX-License-Identifier: Apache-2.0 */
#include "kube-metrics.h"
#include "metrics.h"

void kube_client_write_metrics(FILE *f, const KubeClient *c, const char *daemon)
{
        KubeClientStats ks = {};
        char labels[128];

        if (c)
                kube_client_get_stats(c, &ks);
        (void)snprintf(labels, sizeof(labels), "daemon=\"%s\"", daemon);
        metrics_family(f, "kvegress_api_requests_total", "counter", "Kubernetes API requests sent");
        metrics_sample(f, "kvegress_api_requests_total", labels, (double)ks.requests);
        metrics_family(f, "kvegress_api_watch_restarts_total", "counter",
                       "Watch requests started (the first of each and every restart)");
        metrics_sample(f, "kvegress_api_watch_restarts_total", labels, (double)ks.watches);
        metrics_family(f, "kvegress_api_relists_total", "counter",
                       "Lists started again after a watch ended with 410 Gone or an expired continue");
        metrics_sample(f, "kvegress_api_relists_total", labels, (double)ks.relists);
}
