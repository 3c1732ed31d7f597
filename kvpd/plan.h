/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvpd's decisions, with no I/O: no sd-bus, no HTTP, no clock (the time is
 * a fact passed in). The adapters (net.c, elect.c, status.c) turn replies
 * and signals into facts; the loop asks the planner what to do and hands
 * the actions back to the adapters. Table-tested in tests/kvpd/test-plan.c
 * through the sequences that broke before (restarts, refusals, a lease lost
 * mid-change).
 *
 *   informer caches --> ServiceFacts --plan_*()--> actions --> adapters
 *   bus connections --> StartupFacts --plan_startup()--> clean-up to run
 */

#include <stdbool.h>
#include <stdint.h>

#include "egress-policy.h"

/* Start-up, one phase for the whole daemon. */
typedef enum KvpdPhase {
        KVPD_PHASE_WAITING_FOR_SYNC, /* not every watch has listed once: the picture is incomplete */
        KVPD_PHASE_REPLAYING,        /* synced; the first reconciliation round has not run yet */
        KVPD_PHASE_CLEANING,         /* removing what kvnetd, then kvelectd, hold that no Service wants */
        KVPD_PHASE_RUNNING,          /* both clean-ups done on the current connections */
        _KVPD_PHASE_MAX,
        _KVPD_PHASE_INVALID = -EINVAL,
} KvpdPhase;

const char *kvpd_phase_to_string(KvpdPhase p);

/* The stale-state clean-up of one daemon, once per connection to it. */
typedef enum StaleClean {
        STALE_CLEAN_DUE,     /* not started on this connection */
        STALE_CLEAN_RUNNING, /* its calls are not all answered */
        STALE_CLEAN_FAILED,  /* one failed: not tried again before the next connection */
        STALE_CLEAN_DONE,
        _STALE_CLEAN_MAX,
        _STALE_CLEAN_INVALID = -EINVAL,
} StaleClean;

const char *stale_clean_to_string(StaleClean c);

typedef struct Startup {
        KvpdPhase phase;
        StaleClean kvnetd, kvelectd;
} Startup;

typedef enum StartupEvent {
        STARTUP_SYNCED,           /* every enabled watch has listed once */
        STARTUP_FIRST_ROUND_DONE, /* every Service wanted now campaigns */
        STARTUP_KVNETD_CONNECTED, /* a new connection: whatever it holds is unknown */
        STARTUP_KVNETD_GONE,
        STARTUP_KVELECTD_CONNECTED,
        STARTUP_KVELECTD_GONE,
        STARTUP_KVNETD_CLEAN_SENT,   /* ListVips and ListEgress sent */
        STARTUP_KVNETD_CLEAN_FAILED, /* one call of it failed */
        STARTUP_KVNETD_CLEAN_DONE,   /* every call answered, none failed */
        STARTUP_KVELECTD_CLEAN_SENT, /* ListCampaigns sent: what it finds is withdrawn, not retried */
        _STARTUP_EVENT_MAX,
        _STARTUP_EVENT_INVALID = -EINVAL,
} StartupEvent;

const char *startup_event_to_string(StartupEvent e);

typedef struct StartupFacts {
        bool stopping;
        bool kvnetd_connected, kvelectd_connected;
        /* A Campaign sent on the live kvelectd connection is unanswered:
         * this node's leadership of that lease is not known yet. */
        bool campaigns_pending;
} StartupFacts;

typedef enum StartupAction {
        STARTUP_ACTION_CLEAN_KVNETD = 1 << 0,   /* list kvnetd's state, remove what no Service here wants */
        STARTUP_ACTION_CLEAN_KVELECTD = 1 << 1, /* list kvelectd's campaigns, withdraw the unwanted */
} StartupAction;

Startup startup_init(void);
/* The transition; the phase goes back from running to cleaning when a
 * connection is new, and on to running when both clean-ups are done. */
void startup_apply(Startup *st, StartupEvent e);
/* What to start now (StartupAction bits). kvnetd's clean-up waits until
 * this node's leadership of every lease it wants is known (after a kvpd
 * restart a Service whose LeadershipChanged has not arrived yet is not
 * programmed yet, and removing it would flap the VIP the replay is about
 * to claim); kvelectd's waits for kvnetd's (a Lease must outlive any VIP
 * this node still has for it). */
unsigned plan_startup(const Startup *st, const StartupFacts *f);

/* What kvpd knows of one Service, gathered by the loop. */
typedef struct ServiceFacts {
        const EgressPolicy *desired; /* from the caches; NULL once the Service is gone */
        bool stopping;               /* SIGTERM: every Service is given up */

        /* kvelectd */
        bool campaigning;         /* this Service is counted in a campaign */
        bool campaign_matches;    /* ... for the lease desired names */
        bool campaign_unanswered; /* its Campaign on the live connection is not answered yet */
        bool leading;             /* this node leads the lease (maybe carried across a kvelectd restart) */
        bool held_elsewhere;      /* kvelectd named another node as its holder */
        uint64_t lease_deadline_usec; /* CLOCK_MONOTONIC, from kvelectd */

        /* kvnetd */
        bool kvnetd_connected;
        const EgressPolicy *programmed; /* the batch last sent; NULL when nothing is */
        bool net_inflight;              /* calls of that batch not answered yet */
        bool net_failed;                /* kvnetd refused a call of it (or no interface): retried */
        bool net_confirmed;             /* kvnetd accepted every call of it */
        bool removing;                  /* RemoveService sent, not answered: the lease is kept until then */
        bool net_unknown; /* kvnetd left while it may have held this: removed before the lease goes */

        /* The Service's status */
        bool status_cached;    /* the informer has the Service (status is written against it) */
        bool status_in_flight; /* a write is not answered yet: one at a time */

        uint64_t now_usec; /* CLOCK_MONOTONIC */
        uint64_t grant_margin_usec;
} ServiceFacts;

/* This node should program the Service now: it leads the lease, the Service
 * is ready here, and kvpd is not stopping. */
bool plan_leading(const ServiceFacts *f);

/* kvnetd's grant deadline: the lease's less the margin (kvnetd drops the
 * VIP before another node can hold the lease), within kvnetd's bound. 0 if
 * the lease ends within the margin. */
uint64_t plan_grant_deadline(uint64_t lease_deadline_usec, uint64_t margin_usec, uint64_t now_usec);

/* kvnetd's stale-state clean-up leaves this Service alone (f NULL: a
 * Service kvpd does not track): kvpd programs it, or this node wants its
 * lease and may lead it. Then the replay claims it, or kvnetd's grant
 * deadline removes it (all three daemons restarted: a fresh kvelectd
 * answers Campaign before it has renewed). */
bool plan_stale_keep(const ServiceFacts *f);

typedef enum NetAction {
        NET_ACTION_NONE,
        NET_ACTION_REMOVE,  /* RemoveService: not leading (any more) */
        NET_ACTION_PROGRAM, /* a new batch: GrantVip, SetEgress, ReleaseVip of gone VIPs (plan_batch) */
        NET_ACTION_WAIT_CONNECTED, /* leading, but kvnetd is not connected: replayed on connect */
        NET_ACTION_WAIT_RENEWAL,   /* leading, but the lease ends within the margin: no grant */
        NET_ACTION_RENEW,          /* RenewGrant with the new deadline */
        _NET_ACTION_MAX,
        _NET_ACTION_INVALID = -EINVAL,
} NetAction;

const char *net_action_to_string(NetAction a);

typedef struct NetPlan {
        NetAction action;
        uint64_t grant_deadline_usec; /* PROGRAM, RENEW */
        /* Not leading: what kvnetd refused, and kvpd's own error about
         * programming it (no interface), no longer stand. */
        bool clear_errors;
} NetPlan;

/* After any change of the Service, its lease or kvnetd's connection. */
NetPlan plan_net(const ServiceFacts *f);

/* One call of a batch (NET_ACTION_PROGRAM). */
typedef enum NetStepKind {
        NET_STEP_RELEASE_VIP,
        NET_STEP_GRANT_VIP,
        /* The calls so far answered, all accepted, before the next: kvnetd
         * answers GrantVip of a new IPv6 VIP only once duplicate-address
         * detection ended (it takes 1-2 s, and nothing comes back to the
         * VIP before), and the SNAT moves to it only then. */
        NET_STEP_WAIT_GRANTS,
        NET_STEP_SET_EGRESS,
        _NET_STEP_KIND_MAX,
        _NET_STEP_KIND_INVALID = -EINVAL,
} NetStepKind;

const char *net_step_kind_to_string(NetStepKind k);

typedef struct NetStep {
        NetStepKind kind;
        IpAddr vip; /* RELEASE_VIP, GRANT_VIP */
} NetStep;

/* The most steps plan_batch() returns for these policies. */
static inline size_t plan_batch_max(const EgressPolicy *programmed, const EgressPolicy *desired)
{
        return (programmed ? programmed->n_vips : 0) + desired->n_vips + 2;
}

/* The calls of a new batch, in order, so that a change never leaves a gap
 * (kvnetd answers one connection's calls in order, and a SetEgress is
 * committed before any later call touches the egress): every wanted VIP is
 * granted first (a new one is bound while the old still SNATs), then one
 * SetEgress moves the rules and the pod mappings from the old to the new in
 * one nft transaction, then the VIPs no longer wanted are released (kvnetd
 * leaves egress that SNATs to another VIP alone). When the SetEgress moves
 * a family's SNAT from one VIP to another, it waits for the grants'
 * answers (NET_STEP_WAIT_GRANTS): the old VIP works until the new one
 * does. A first batch does not wait: a tentative VIP as the source is no
 * worse than the node's address. Only when the interface changes do the
 * programmed VIPs go first: an address must never sit on two links, and
 * its egress goes with it until the SetEgress.
 * switching: the batch before still waits for its grants (superseded
 * before its switch: it waits again). programmed NULL: nothing sent yet. Fills steps (plan_batch_max() of
 * them at most), returns how many. */
size_t plan_batch(const EgressPolicy *programmed, const char *programmed_ifname, bool switching,
                  const EgressPolicy *desired, const char *ifname, NetStep *steps);
/* After kvelectd renewed a lease this node still leads. A batch kvnetd
 * refused holds no grant: the retry sends the whole batch instead. */
NetPlan plan_renew(const ServiceFacts *f);

typedef enum ElectAction {
        ELECT_ACTION_WITHDRAW = 1 << 0, /* leave the current lease (its last Service: Withdraw) */
        ELECT_ACTION_CAMPAIGN = 1 << 1, /* campaign for the lease desired names */
        /* Leave it, but not before kvnetd has dropped the VIP: the lease is
         * what lets another node bind it, and the address must never be on
         * two nodes at once. */
        ELECT_ACTION_WAIT_REMOVAL = 1 << 2,
} ElectAction;

/* ElectAction bits. Campaign while a local pod is ready (kube-vip's rule for
 * the Local policy), so the lease moves to a node that has one. */
unsigned plan_elect(const ServiceFacts *f);

typedef enum StatusAction {
        STATUS_ACTION_NONE,
        /* Not known yet whether this node holds it (campaign unanswered,
         * or leading with kvnetd's answer still to come): after a restart
         * the status is most likely ours and about to be confirmed, so it
         * is not cleared only to be written back a moment later. */
        STATUS_ACTION_WAIT,
        STATUS_ACTION_RELEASE, /* not holding: EgressReleased if reported, clear what this node wrote */
        STATUS_ACTION_HOLD,    /* holding: write vipHost, active-endpoint, ingress; EgressActive once */
        _STATUS_ACTION_MAX,
        _STATUS_ACTION_INVALID = -EINVAL,
} StatusAction;

const char *status_action_to_string(StatusAction a);

/* Written by the lease holder only, once kvnetd has accepted the VIPs and
 * the SNAT, so the annotations never claim what the kernel does not do. */
StatusAction plan_status(const ServiceFacts *f);

/* The stop sequence (SIGTERM), one phase for the whole daemon. While this
 * node still holds its leases nobody else may write the status or bind the
 * VIPs: the status is cleared and kvnetd's state removed first, and only
 * once those calls are answered are the leases withdrawn, so the next
 * holder starts from a clean slate. Bounded by a timeout. */
typedef enum StopPhase {
        STOP_PHASE_RUNNING,     /* no SIGTERM yet */
        STOP_PHASE_RELEASING,   /* status clears and RemoveService sent, not all answered */
        STOP_PHASE_WITHDRAWING, /* Withdraw sent, not all answered */
        STOP_PHASE_DONE,        /* the loop is left */
        _STOP_PHASE_MAX,
        _STOP_PHASE_INVALID = -EINVAL,
} StopPhase;

const char *stop_phase_to_string(StopPhase p);

typedef struct StopFacts {
        StopPhase phase;
        bool requested;     /* SIGTERM came */
        bool calls_pending; /* calls of the current phase not answered yet */
        bool api_client;    /* the Kubernetes client is set up (the status can be written) */
        bool timed_out;     /* the stop timeout passed */
} StopFacts;

/* In this order: the status clear asks what kvnetd had confirmed, which
 * RemoveService forgets. */
typedef enum StopAction {
        STOP_ACTION_CLEAR_STATUS = 1 << 0,    /* clear what this node wrote on every Service */
        STOP_ACTION_REMOVE_SERVICES = 1 << 1, /* RemoveService for every Service kvnetd may hold */
        STOP_ACTION_WITHDRAW = 1 << 2,        /* Withdraw every lease */
        STOP_ACTION_EXIT = 1 << 3,            /* leave the event loop */
} StopAction;

typedef struct StopPlan {
        StopPhase phase;  /* the phase after the actions */
        unsigned actions; /* StopAction bits */
} StopPlan;

/* Asked when SIGTERM comes, when a call of the stop is answered, and at the
 * timeout; asked again after its actions (they may have sent no call). */
StopPlan plan_stop(const StopFacts *f);
