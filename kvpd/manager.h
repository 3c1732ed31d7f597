/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvpd's one context: the event loop, the API client and its informers, the
 * two bus clients, and what kvpd knows about each egress Service. The
 * functions live with their jobs (kvpd/README.md):
 *
 *   informer caches (watch.c, cache.c) --reconcile.c--> desired state
 *   facts --plan.c--> actions --controller.c--> net.c (kvnetd), elect.c
 *   (kvelectd), status.c (the Service); their replies come back as facts.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-client.h"
#include "bus-server.h"
#include "hashmap.h"
#include "cluster-cidrs.h"
#include "config.h"
#include "egress-policy.h"
#include "kube-client.h"
#include "metrics.h"
#include "plan.h"
#include "reports.h"

typedef struct Manager Manager;
typedef struct Service Service;
typedef struct Lease Lease;

typedef enum WatchKind {
        WATCH_SERVICES,
        WATCH_ENDPOINTSLICES,
        WATCH_NODES,
        WATCH_SERVICECIDRS,
        WATCH_CONTROLLER_MANAGERS,
        WATCH_KUBEADM_CONFIG,
        _WATCH_KIND_MAX,
        _WATCH_KIND_INVALID = -EINVAL,
} WatchKind;

typedef struct WatchCtx {
        Manager *manager;
        WatchKind kind;
} WatchCtx;

/* What the Services cache keeps of one Service (watch.c). A Service with
 * neither the egress annotation nor vipHost costs only the informer's entry
 * (key, uid, resourceVersion) and points to the shared stub; the others are
 * parsed once per version, and keep their JSON for status.c. */
typedef struct ServiceItem {
        KubeService *service; /* NULL if it did not parse: error says why */
        /* The fields status.c reads, as compact JSON text: a jansson tree
         * of them cost about 3.5 KiB per egress Service, the text about
         * 0.4 KiB; status.c parses it when it looks (cache.h). */
        char *json;
        char *error;
} ServiceItem;
extern ServiceItem service_item_stub;

/* The EndpointSlices of one Service (label kubernetes.io/service-name), as
 * cached: only their endpoints on this node are kept. */
typedef struct SliceGroup {
        char *key; /* "namespace/service" */
        KubeEndpointSlice **slices;
        size_t n, cap;
} SliceGroup;

/* A Lease kvpd campaigns for, shared by every Service naming it (the
 * leaseName annotation lets several Services share one election). */
struct Lease {
        Manager *manager;
        char *key; /* "namespace/name" */
        char *namespace;
        char *name;
        size_t index;       /* in Manager.leases */
        Service **services; /* those whose s->lease is this one */
        size_t n_services, cap_services;
        unsigned n_wanted;          /* Services that want this lease now */
        bool campaign_sent;         /* Campaign() sent on the current kvelectd connection */
        sd_bus_slot *campaign_slot; /* its reply, not in yet: leadership not known yet */
        bool leading;
        /* leading was learnt from a kvelectd connection that is gone. It is
         * kept (kvnetd's grant deadline makes that safe) until the deadline,
         * unless the kvelectd connected now confirms it first. */
        bool carried;
        uint64_t deadline_usec; /* CLOCK_MONOTONIC, from kvelectd */
        char *holder;
        bool refused; /* kvelectd refused the Campaign for a cause that can go away: retried */
};

struct Service {
        Manager *manager;
        char *key; /* "namespace/name" */
        char *namespace;
        char *name;

        size_t index;         /* in Manager.services */
        EgressPolicy *policy; /* last computed; NULL once the Service is gone */
        bool dirty;
        bool queued;                      /* in the reconciliation queue */
        Service *dirty_next, *dirty_prev; /* the queue's links, while queued */

        Lease *lease; /* non-NULL while this Service wants its lease */
        bool want_lease;

        /* kvnetd: what was last sent (a reference), NULL when nothing is. */
        EgressPolicy *programmed;
        char *programmed_ifname; /* resolved ("auto" looked up) */
        uint64_t net_gen;        /* bumped per batch of calls; stale replies are ignored */
        uint64_t remove_gen;     /* net_gen of the last RemoveService sent: only its answer confirms */
        unsigned net_inflight;
        bool net_failed;    /* a call of the current batch failed; retried by the resync timer */
        bool net_confirmed; /* kvnetd accepted every call of the current batch */
        bool removing;      /* RemoveService sent, no answer yet: the lease is kept until then */
        bool net_unknown;   /* kvnetd went away while it may have held this: the lease is kept until a
                             * RemoveService (or a new batch) is answered, for kvnetd's dead or stopped
                             * process fences nothing meanwhile */
        /* The batch's calls after a NET_STEP_WAIT_GRANTS, sent once every
         * call before it is answered and none refused (plan_batch()). */
        NetStep *net_pending;
        size_t n_net_pending;

        /* Status on the Service. */
        KubeRequest *status_request;
        void *status_call;      /* its context, freed if the request is cancelled */
        bool clear_at_stop;     /* stopping: clear once the write in flight is answered */
        char *status_last_body; /* last patch that succeeded, and the RV it was based on */
        char *status_last_rv;
        bool active_reported; /* EgressActive sent for the current holding */

        char *last_error_logged; /* EgressInvalid message last logged */
        char *last_error_event;  /* ... and last sent as an Event */
        char *last_warning_event;

        IpAddr prev_active4, prev_active6;
        bool has_prev_active4, has_prev_active6;

        /* The last error, for kvctl (introspect.c): from "kvpd", "kvnetd" or
         * "kvelectd", when (CLOCK_REALTIME), and whether it still stands. */
        char *error;
        const char *error_from;
        uint64_t error_usec;
        bool error_failing;

        /* kvegress_change_to_snat_seconds: when the watch first showed a
         * change not yet acted on, and the start of the batch in flight. */
        uint64_t change_usec, batch_change_usec;
};

struct Manager {
        Config config;
        sd_event *event;
        /* How watch.c, reconcile.c and the adapters report to the loop
         * (controller.c's table). */
        const KvpdReports *reports;

        KubeConfig *kube_config;
        KubeClient *kube;
        KubeInformer *informers[_WATCH_KIND_MAX];
        bool watch_enabled[_WATCH_KIND_MAX];
        WatchCtx watch_ctx[_WATCH_KIND_MAX];
        unsigned probes_pending;
        /* Start-up and the stale-state clean-up of each connection
         * (plan.h); the loop (controller.c) advances it. */
        Startup startup;

        ClusterCidrs cidrs;
        bool cidrs_valid;

        /* The Services kvpd tracks: those with the egress annotation or
         * vipHost, and those it still holds state for. */
        Service **services;
        size_t n_services, cap_services;
        Hashmap services_by_key;
        Service *dirty_head, *dirty_tail;
        Lease **leases;
        size_t n_leases, cap_leases;
        Hashmap leases_by_key;
        Hashmap slice_groups;         /* "namespace/service" -> SliceGroup */
        json_t *empty_object;         /* what status.c sees of a stub Service */
        unsigned n_campaigns_pending; /* leases with a campaign_slot */

        /* Event-loop lag, measured with a periodic timer at debug level. */
        sd_event_source *lag_source;
        uint64_t lag_max_usec, lag_window_start_usec;
        uint64_t lag_max_total_usec;
        uint64_t lag_cpu_usec, busy_max_usec, busy_max_total_usec;

        sd_event_source *debounce_source;
        sd_event_source *resync_source;
        bool cidrs_dirty;

        BusClient *kvnetd;
        sd_bus_slot *kvnetd_expired_slot;
        unsigned kvnetd_clean_calls; /* calls of the stale-state clean-up not answered yet */
        bool kvnetd_clean_failed;    /* ... and whether one of them failed */
        struct {                     /* carry.c: kvnetd's grants renewed before the first sync */
                Hashmap keys;        /* service key -> the same string (owned) */
                sd_bus_slot *list_slot;
        } carry;

        BusClient *kvelectd;
        sd_bus_slot *kvelectd_leadership_slot;
        sd_bus_slot *kvelectd_renewed_slot;
        sd_event_source *lease_deadline_source; /* ends carried leadership at its deadline */
        sd_event_source *campaign_retry_source; /* re-sends refused campaigns */

        BusServer *introspect; /* read-only, for kvctl; NULL when not configured */
        struct {               /* introspect.c renders them (GetMetrics) */
                uint64_t reconcile_errors;
                MetricHistogram reconcile_seconds, change_to_snat_seconds;
                LoopLag loop_lag;
        } metrics;

        /* SIGTERM: the stop sequence (plan_stop), run by controller.c. */
        bool stopping;
        StopPhase stop_phase;
        unsigned stop_pending; /* calls of the current phase not answered yet */
        bool stop_timed_out;
        sd_event_source *stop_timeout_source;
};

int manager_new(Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
int manager_start(Manager *m);
