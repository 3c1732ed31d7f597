/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvelectd's one context: the event loop, the API client, the bus server and
 * every campaign. A campaign is one Election (the pure state machine) plus
 * what it needs to act: its request in flight, its timer and the watch of
 * its namespace. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bus-server.h"
#include "election.h"
#include "kube-client.h"
#include "macros.h"
#include "metrics.h"

typedef struct Manager Manager;
typedef struct Campaign Campaign;
typedef struct LeaseWatch LeaseWatch;

struct Campaign {
        Manager *manager;
        char *key; /* "namespace/name" */
        Election *election;
        KubeRequest *request;
        uint64_t request_id;
        bool acquiring; /* the request in flight is an acquisition (counted in n_acquiring) */
        /* Its acquisition was refused for want of room (lease-io.c): on
         * Manager.admission_waiters, admitted in turn as room comes. */
        bool admission_waiting;
        Campaign *admission_prev, *admission_next;
        sd_event_source *timer;
        LeaseWatch *watch; /* NULL with --no-watch */
        /* Another node held the Lease, and its last renewTime (or release)
         * seen, CLOCK_REALTIME: the failover metric's start. */
        bool other_holder;
        uint64_t other_renew_real_usec;
        Campaign *next, *prev;
};

struct LeaseWatch {
        Manager *manager;
        char *namespace;
        KubeInformer *informer;
        unsigned n_campaigns;
        LeaseWatch *next, *prev;
};

typedef struct ManagerOptions {
        const char *identity;
        uint64_t lease_duration_usec;
        uint64_t renew_deadline_usec;
        uint64_t retry_period_usec;
        /* Poll like client-go instead of watching (a reference for the
         * benchmark, and a fallback). */
        bool no_watch;
} ManagerOptions;

struct Manager {
        sd_event *event;
        KubeClient *client;
        BusServer *bus;
        char *identity;
        ElectionConfig election_config;
        bool no_watch;

        void *campaign_index; /* tsearch() tree of Campaign, by key */
        Campaign *campaigns;
        unsigned n_campaigns;
        LeaseWatch *watches;

        unsigned random_state;
        bool stopping;
        sd_event_source *stop_timer;
        /* Armed while no client is connected and campaigns remain. */
        sd_event_source *orphan_timer;
        /* The last Lease request failed without an HTTP answer (or with a
         * 5xx): said once, and once more when the API answers again. */
        bool api_unreachable;
        /* Acquisitions in flight; at most LEASE_IO_ACQUISITIONS_MAX. */
        unsigned n_acquiring;
        /* Campaigns whose acquisition was refused, first refused first
         * (a FIFO), and the defer source that admits them. */
        Campaign *admission_waiters, *admission_waiters_tail;
        sd_event_source *admission_event;
        struct { /* introspect.c renders them (GetMetrics) */
                uint64_t transitions;
                MetricHistogram failover_seconds;
                LoopLag loop_lag;
        } metrics;
};

/* introspect.c */
int introspect_setup(Manager *m);
int introspect_method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error);
void introspect_note_campaign(Campaign *c, unsigned events);

/* Takes ownership of client (freed with the manager). */
int manager_new(sd_event *event, KubeClient *client, const ManagerOptions *opts, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Idempotent. -EBUSY while stopping, -E2BIG past KVELECTD_MAX_CAMPAIGNS. */
int manager_campaign(Manager *m, const char *namespace, const char *name);
int manager_withdraw(Manager *m, const char *namespace, const char *name);
Campaign *manager_find(Manager *m, const char *namespace, const char *name);
/* Withdraws every campaign (releasing held Leases) and exits the event loop
 * when all are released, or after renewDeadline at most. */
void manager_stop(Manager *m);
/* The bus server's connection count changed: the last client gone starts
 * the orphan timer (renewDeadline), after which every campaign is withdrawn;
 * a client connecting stops it. */
void manager_connections_changed(BusServer *s, unsigned n_connections, void *userdata);

ElectionTime manager_now(void);

/* manager.c: feed an input's output back into the world. */
void campaign_apply(Campaign *c, ElectionOutput *out, int r);
void campaign_observe(Campaign *c, json_t *lease);
void campaign_set_view(Campaign *c, ElectionView view, json_t *lease);
void campaign_complete(Campaign *c, const ElectionResponse *resp);

/* lease-io.c: send one request of the state machine. */
int lease_io_send(Campaign *c, const ElectionRequest *req);
void lease_io_cancel(Campaign *c);
/* Off the admission waiters (a campaign being freed). */
void lease_io_forget(Campaign *c);

/* lease-watch.c: one informer per namespace with campaigns. */
int lease_watch_ref(Manager *m, const char *namespace, LeaseWatch **ret);
void lease_watch_unref(LeaseWatch *w);
/* The watch's view for a new campaign: WATCHED with the cached object, or
 * PENDING before the first sync. */
ElectionView lease_watch_view(LeaseWatch *w, const char *name, json_t **ret_lease);

/* bus.c */
int manager_bus_setup(sd_bus *bus, void *userdata);
void bus_emit_leadership_changed(Manager *m, Campaign *c);
void bus_emit_renewed(Manager *m, Campaign *c);
