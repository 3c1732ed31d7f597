/* SPDX-License-Identifier: Apache-2.0 */
/* io.kvegress.Net1's read-only methods for kvctl, and the read-only peer
 * policy. A read-only peer's connection carries a filter (bus-server.c) that
 * answers every method not in KVNETD_READ_ONLY_METHODS with AccessDenied
 * before a handler runs, so GrantVip and friends stay the configured
 * client's (kvpd's) alone. */
#include "introspect.h"

#include <grp.h>
#include <stdio.h>

#include "bus-server.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "validate.h"

static const char *const read_only_methods[] = KVNETD_READ_ONLY_METHODS;

int introspect_setup(Manager *m)
{
        struct group *g = getgrnam(KVEGRESS_READ_ONLY_GROUP);
        gid_t gid = g ? g->gr_gid : 0;

        m->metrics.nft_seconds = (MetricHistogram)METRIC_HISTOGRAM_SECONDS;
        if (loop_lag_start(m->event, &m->metrics.loop_lag) < 0)
                log_warning("cannot measure the event loop's lag (out of memory); the metric stays empty");

        /* Root is admitted read-only unless it is the configured client
         * (then the full policy admitted it already). */
        return bus_server_set_read_only(
                m->bus, &(BusPeerPolicy){.gids = g ? &gid : NULL, .n_gids = g ? 1 : 0, .allow_root = true},
                read_only_methods);
}

int introspect_method_describe_service(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        const char *key;
        ParseError e;
        Service *s;
        int r;

        /* Validated: peer (full or read-only), signature "s". Next: the key;
         * then only reads: the chain name is ours (a hash of the key), never
         * client text. */
        r = sd_bus_message_read(msg, "s", &key);
        if (r < 0)
                return r;
        r = validate_service_key("service", key, &e);
        if (r < 0)
                return sd_bus_error_set(error, KVNETD_ERROR_INVALID_ARGS, e.message);
        manager_egress_flush(m); /* show what every earlier request made */
        s = manager_find_service(m, key);
        if (!s || !service_has_egress(s))
                return sd_bus_error_setf(error, KVNETD_ERROR_NOT_GRANTED,
                                         "service: %s has no egress on this node", key);

        r = introspect_list_nft(m, s, &text, &size);
        if (r < 0)
                return r;
        if (size > KVNETD_MAX_DESCRIBE) {
                static const char cut[] = "\n# ... cut at " STRINGIFY(KVNETD_MAX_DESCRIBE) " bytes\n";
                memcpy(text + KVNETD_MAX_DESCRIBE - sizeof(cut), cut, sizeof(cut));
        }
        return sd_bus_reply_method_return(msg, "s", text ? text : "");
}

int introspect_method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        _cleanup_free_ char *text = NULL;
        size_t size = 0, n_pods = 0, n_chains = 0;
        FILE *f;

        /* Validated: peer (full or read-only), no arguments. Only counters
         * and sizes; no address or name of any client object. */
        (void)error;
        for (Service *s = m->services; s; s = s->next) {
                n_pods += s->n_pods;
                n_chains += service_has_egress(s);
        }
        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        metrics_family(f, "kvegress_vips_bound", "gauge", "VIPs kvnetd holds on this node");
        metrics_sample(f, "kvegress_vips_bound", "", (double)m->n_vips);
        metrics_family(f, "kvegress_egress_services", "gauge", "Services with an egress chain on this node");
        metrics_sample(f, "kvegress_egress_services", "", (double)n_chains);
        metrics_family(f, "kvegress_egress_pods", "gauge", "Pod addresses SNATed on this node");
        metrics_sample(f, "kvegress_egress_pods", "", (double)n_pods);
        metrics_family(
                f, "kvegress_fences_total", "counter",
                "Services kvnetd fenced by itself (grant deadline passed, or unclaimed after a restart)");
        metrics_sample(f, "kvegress_fences_total", "", (double)m->n_fences);
        metrics_family(f, "kvegress_nft_transactions_total", "counter",
                       "Egress nft transactions (batches that change something), by result");
        metrics_sample(f, "kvegress_nft_transactions_total", "result=\"ok\"", (double)m->metrics.nft_ok);
        metrics_sample(f, "kvegress_nft_transactions_total", "result=\"failed\"",
                       (double)m->metrics.nft_failed);
        metrics_family(
                f, "kvegress_nft_transaction_duration_seconds", "histogram",
                "Time of one egress nft transaction (one netlink batch sent and acknowledged, in kvnetd)");
        metrics_histogram(f, "kvegress_nft_transaction_duration_seconds", "", &m->metrics.nft_seconds);
        metrics_family(f, "kvegress_table_reads_total", "counter",
                       "Reconciles of the nft table, by whether it was read (the ruleset generation had "
                       "changed) or skipped");
        metrics_sample(f, "kvegress_table_reads_total", "result=\"read\"", (double)m->metrics.table_reads);
        metrics_sample(f, "kvegress_table_reads_total", "result=\"skipped\"",
                       (double)m->metrics.table_reads_skipped);
        metrics_family(f, "kvegress_conntrack_entries_deleted_total", "counter",
                       "Conntrack entries deleted because a pod's SNAT changed");
        metrics_sample(f, "kvegress_conntrack_entries_deleted_total", "", (double)m->ct_deleted);
        metrics_family(f, "kvegress_conntrack_pods_pending", "gauge",
                       "Pod addresses whose conntrack entries are still to be deleted (by kvnetd's worker)");
        metrics_sample(f, "kvegress_conntrack_pods_pending", "", (double)manager_conntrack_pending(m));
        loop_lag_write(f, &m->metrics.loop_lag, "kvnetd");
        if (fclose(f) != 0)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "s", text ? text : "");
}
