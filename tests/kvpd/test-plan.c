/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvpd/plan.c: the planner driven through the sequences that
 * broke before (a daemon restarted alone, all three at once, refusals, the
 * API down, a Service deleted while kvpd was down, pods moving, a lease lost
 * mid-change).
 *
 * A small simulator plays the loop and the adapters for one Service: each
 * step is something that happens (an event, a reply, a signal); the
 * simulator asks the planners the loop asks on that occasion (NET_ON etc.
 * below, as the adapters do), applies the actions as the adapters would,
 * and the step's row says what each planner must have answered (X: not
 * asked on that occasion). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvnetd-bus.h"
#include "plan.h"

#define S USEC_PER_SEC
#define T0 (1000 * S)
#define LEASE (15 * S)
#define MARGIN (2 * S)

static IpAddr pods_a[] = {{.family = AF_INET, .addr.in.s_addr = 0x0a00010aU}};
static IpAddr pods_b[] = {{.family = AF_INET, .addr.in.s_addr = 0x0b00010aU}};
static IpAddr vips[] = {{.family = AF_INET, .addr.in.s_addr = 0x6400a8c0U}};

/* Desired states as egress_policy_compute() returns them. */
static EgressPolicy policy_ready_a = {.state = EGRESS_READY,
                                      .ifname = (char *)"eth0",
                                      .has_vip4 = true,
                                      .vips = vips,
                                      .n_vips = 1,
                                      .pods = pods_a,
                                      .n_pods = 1,
                                      .lease_namespace = (char *)"default",
                                      .lease_name = (char *)"kubevip-demo"};
static EgressPolicy policy_ready_b = {.state = EGRESS_READY,
                                      .ifname = (char *)"eth0",
                                      .has_vip4 = true,
                                      .vips = vips,
                                      .n_vips = 1,
                                      .pods = pods_b,
                                      .n_pods = 1,
                                      .lease_namespace = (char *)"default",
                                      .lease_name = (char *)"kubevip-demo"};
static EgressPolicy policy_idle = {.state = EGRESS_IDLE,
                                   .ifname = (char *)"eth0",
                                   .has_vip4 = true,
                                   .vips = vips,
                                   .n_vips = 1,
                                   .lease_namespace = (char *)"default",
                                   .lease_name = (char *)"kubevip-demo"};

/* A local pod that is not ready while another node has one: handled as
 * idle (the holder releases the VIP, then withdraws). */
static EgressPolicy policy_yielding = {.state = EGRESS_YIELDING,
                                       .ifname = (char *)"eth0",
                                       .has_vip4 = true,
                                       .vips = vips,
                                       .n_vips = 1,
                                       .pods = pods_a,
                                       .n_pods = 1,
                                       .lease_namespace = (char *)"default",
                                       .lease_name = (char *)"kubevip-demo"};

typedef enum Op {
        OP_END,
        OP_KVNETD_UP,
        OP_KVNETD_DOWN,
        OP_KVELECTD_UP, /* the campaigns are replayed */
        OP_KVELECTD_DOWN,
        OP_SYNCED,             /* every watch listed: the Service is ready here */
        OP_FIRST_ROUND,        /* the first reconciliation round */
        OP_ANSWER_LEADING,     /* LeadershipChanged(leading) + the Campaign's answer */
        OP_ANSWER_NOT_LEADING, /* ... not leading, holder another node */
        OP_ANSWER_UNHELD,      /* ... not leading, the Lease names this node (a fresh kvelectd) */
        OP_ANSWER_REFUSED,     /* kvelectd refused the Campaign */
        OP_CAMPAIGN_RETRY,     /* the retry timer re-sends a refused Campaign */
        OP_CONFIRMED,          /* LeadershipChanged(leading) again: a restarted kvelectd renewed our Lease */
        OP_RENEWED,            /* Renewed */
        OP_LEASE_LOST,         /* LeadershipChanged(not leading, holder another node) */
        OP_CARRIED_EXPIRED,    /* kvelectd gone and the carried lease's deadline passed */
        OP_NET_ACCEPTED,       /* kvnetd accepted every call of the batch in flight */
        OP_NET_REFUSED,        /* kvnetd refused GrantVip or SetEgress: the batch is removed */
        OP_REMOVE_ANSWERED,    /* kvnetd answered RemoveService */
        OP_RETRY,              /* the resync timer */
        OP_CLEAN_OK,           /* kvnetd's stale-state clean-up answered, all well */
        OP_CLEAN_FAILED,
        OP_PODS_MOVED, /* another local pod: the Service changed */
        OP_PODS_GONE,  /* no local ready pod any more */
        OP_PODS_BACK,
        OP_DELETED, /* the Service is deleted */
        OP_TIME,    /* 5 s pass */
        _OP_MAX,
} Op;

enum {
        NET_ON = 1 << 0,
        RENEW_ON = 1 << 1,
        ELECT_ON = 1 << 2,
        STATUS_ON = 1 << 3,
        STARTUP_ON = 1 << 4,
        ALL_ON = NET_ON | ELECT_ON | STATUS_ON | STARTUP_ON,
};

/* Which planners the loop asks after each occasion (what the adapters
 * call today). */
static const unsigned asked[_OP_MAX] = {
        [OP_KVNETD_UP] = NET_ON | STARTUP_ON,
        [OP_KVNETD_DOWN] = ELECT_ON,
        [OP_KVELECTD_UP] = STARTUP_ON,
        [OP_KVELECTD_DOWN] = STARTUP_ON,
        [OP_SYNCED] = STARTUP_ON,
        [OP_FIRST_ROUND] = ALL_ON,
        [OP_ANSWER_LEADING] = NET_ON | STATUS_ON | STARTUP_ON,
        [OP_ANSWER_NOT_LEADING] = NET_ON | STATUS_ON | STARTUP_ON,
        [OP_ANSWER_UNHELD] = NET_ON | STATUS_ON | STARTUP_ON,
        [OP_ANSWER_REFUSED] = NET_ON | STATUS_ON | STARTUP_ON,
        [OP_CAMPAIGN_RETRY] = 0,
        [OP_CONFIRMED] = NET_ON | STATUS_ON,
        [OP_RENEWED] = RENEW_ON,
        [OP_LEASE_LOST] = NET_ON | STATUS_ON,
        [OP_CARRIED_EXPIRED] = NET_ON | STATUS_ON,
        [OP_NET_ACCEPTED] = STATUS_ON,
        [OP_NET_REFUSED] = 0,
        [OP_REMOVE_ANSWERED] = ELECT_ON,
        [OP_RETRY] = NET_ON,
        [OP_CLEAN_OK] = STARTUP_ON,
        [OP_CLEAN_FAILED] = STARTUP_ON,
        [OP_PODS_MOVED] = NET_ON | ELECT_ON | STATUS_ON,
        [OP_PODS_GONE] = NET_ON | ELECT_ON | STATUS_ON,
        [OP_PODS_BACK] = NET_ON | ELECT_ON | STATUS_ON,
        [OP_DELETED] = NET_ON | ELECT_ON | STATUS_ON,
        [OP_TIME] = 0,
};

#define X (-1)
/* Short names for the rows. */
#define N_NONE NET_ACTION_NONE
#define N_REMOVE NET_ACTION_REMOVE
#define N_PROGRAM NET_ACTION_PROGRAM
#define N_WAITCONN NET_ACTION_WAIT_CONNECTED
#define N_WAITREN NET_ACTION_WAIT_RENEWAL
#define N_RENEW NET_ACTION_RENEW
#define E_WITHDRAW ELECT_ACTION_WITHDRAW
#define E_CAMPAIGN ELECT_ACTION_CAMPAIGN
#define E_WAIT ELECT_ACTION_WAIT_REMOVAL
#define ST_NONE STATUS_ACTION_NONE
#define ST_WAIT STATUS_ACTION_WAIT
#define ST_RELEASE STATUS_ACTION_RELEASE
#define ST_HOLD STATUS_ACTION_HOLD
#define C_NET STARTUP_ACTION_CLEAN_KVNETD
#define C_ELECT STARTUP_ACTION_CLEAN_KVELECTD
#define P_SYNC KVPD_PHASE_WAITING_FOR_SYNC
#define P_REPLAY KVPD_PHASE_REPLAYING
#define P_CLEAN KVPD_PHASE_CLEANING
#define P_RUN KVPD_PHASE_RUNNING

typedef struct Step {
        Op op;
        int net;     /* NetAction (plan_net, or plan_renew where RENEW_ON) */
        int elect;   /* ElectAction bits */
        int status;  /* StatusAction */
        int startup; /* StartupAction bits */
        int phase;   /* KvpdPhase after the step */
        int keep;    /* plan_stale_keep() after the step: X unchecked */
} Step;

/* The loop and the adapters for one Service, as kvpd runs them. */
typedef struct Sim {
        Startup st;
        ServiceFacts f;
        bool kvelectd_connected;
} Sim;

static void sim_init(Sim *sim)
{
        *sim = (Sim){.st = startup_init(),
                     .f = {.now_usec = T0, .grant_margin_usec = MARGIN, .status_cached = true}};
}

static void apply_net(Sim *sim, NetPlan p)
{
        ServiceFacts *f = &sim->f;

        switch (p.action) {
        case NET_ACTION_PROGRAM: /* net_apply: a new batch */
                ck_assert_uint_gt(p.grant_deadline_usec, f->now_usec);
                ck_assert_uint_le(p.grant_deadline_usec, f->lease_deadline_usec - f->grant_margin_usec);
                f->programmed = f->desired;
                f->net_inflight = true;
                f->net_failed = f->net_confirmed = f->removing = f->net_unknown = false;
                break;
        case NET_ACTION_REMOVE: /* net_remove */
                f->programmed = NULL;
                f->net_inflight = f->net_failed = f->net_confirmed = false;
                f->removing = f->kvnetd_connected;
                break;
        case NET_ACTION_RENEW:
                ck_assert_uint_gt(p.grant_deadline_usec, f->now_usec);
                break;
        default:
                break;
        }
}

static void apply_elect(Sim *sim, unsigned a)
{
        ServiceFacts *f = &sim->f;

        if (a & ELECT_ACTION_WITHDRAW) { /* lease_unwant: the Lease record goes */
                f->campaigning = f->campaign_matches = f->campaign_unanswered = false;
                f->leading = f->held_elsewhere = false;
                f->lease_deadline_usec = 0;
        }
        if (a & ELECT_ACTION_CAMPAIGN) {
                f->campaigning = f->campaign_matches = true;
                f->campaign_unanswered = sim->kvelectd_connected;
        }
}

static void leadership(Sim *sim, bool leading, bool held_elsewhere)
{
        sim->f.leading = leading;
        sim->f.held_elsewhere = held_elsewhere;
        sim->f.lease_deadline_usec = leading ? sim->f.now_usec + LEASE : 0;
}

/* The event itself: what the adapter records as facts. Returns false for
 * an event the adapter ignores (a stale reply). */
static bool sim_event(Sim *sim, Op op)
{
        ServiceFacts *f = &sim->f;

        switch (op) {
        case OP_KVNETD_UP:
        case OP_KVNETD_DOWN: /* on_state: net_forget() for every Service */
                f->kvnetd_connected = op == OP_KVNETD_UP;
                if (f->programmed || f->net_inflight || f->removing)
                        f->net_unknown = true; /* kvnetd may still hold it */
                f->programmed = NULL;
                f->net_inflight = f->net_confirmed = false;
                if (op == OP_KVNETD_DOWN)
                        f->removing = false; /* no answer will come */
                startup_apply(&sim->st, op == OP_KVNETD_UP ? STARTUP_KVNETD_CONNECTED : STARTUP_KVNETD_GONE);
                break;
        case OP_KVELECTD_UP:
                sim->kvelectd_connected = true;
                f->campaign_unanswered = f->campaigning;
                startup_apply(&sim->st, STARTUP_KVELECTD_CONNECTED);
                break;
        case OP_KVELECTD_DOWN: /* leadership carried until its deadline */
                sim->kvelectd_connected = false;
                f->campaign_unanswered = false;
                startup_apply(&sim->st, STARTUP_KVELECTD_GONE);
                break;
        case OP_SYNCED:
                f->desired = &policy_ready_a;
                startup_apply(&sim->st, STARTUP_SYNCED);
                break;
        case OP_FIRST_ROUND:
                break; /* the event is applied after the round, below */
        case OP_ANSWER_LEADING:
        case OP_CONFIRMED:
                leadership(sim, true, false);
                f->campaign_unanswered = false;
                break;
        case OP_ANSWER_NOT_LEADING:
        case OP_LEASE_LOST:
                leadership(sim, false, true);
                f->campaign_unanswered = false;
                break;
        case OP_ANSWER_UNHELD:
                leadership(sim, false, false);
                f->campaign_unanswered = false;
                break;
        case OP_ANSWER_REFUSED:
                f->campaign_unanswered = false;
                break;
        case OP_CAMPAIGN_RETRY:
                f->campaign_unanswered = sim->kvelectd_connected && f->campaigning;
                break;
        case OP_RENEWED:
                f->lease_deadline_usec = f->now_usec + LEASE;
                break;
        case OP_CARRIED_EXPIRED:
                leadership(sim, false, false);
                break;
        case OP_NET_ACCEPTED:
                if (!f->net_inflight)
                        return false; /* a reply to a superseded batch */
                f->net_inflight = false;
                f->net_confirmed = true;
                break;
        case OP_NET_REFUSED: /* on_reply: net_remove(), the failure stands */
                if (!f->net_inflight)
                        return false;
                apply_net(sim, (NetPlan){.action = NET_ACTION_REMOVE});
                f->net_failed = true;
                break;
        case OP_REMOVE_ANSWERED:
                if (!f->removing)
                        return false;
                f->removing = f->net_unknown = false;
                break;
        case OP_RETRY:
                if (!f->net_failed)
                        return false;
                break;
        case OP_CLEAN_OK:
                startup_apply(&sim->st, STARTUP_KVNETD_CLEAN_DONE);
                break;
        case OP_CLEAN_FAILED:
                startup_apply(&sim->st, STARTUP_KVNETD_CLEAN_FAILED);
                break;
        case OP_PODS_MOVED:
                f->desired = &policy_ready_b;
                break;
        case OP_PODS_GONE:
                f->desired = &policy_idle;
                break;
        case OP_PODS_BACK:
                f->desired = &policy_ready_a;
                break;
        case OP_DELETED:
                f->desired = NULL;
                break;
        case OP_TIME:
                f->now_usec += 5 * S;
                break;
        default:
                ck_abort_msg("unknown op %d", op);
        }
        return true;
}

static void sim_step(Sim *sim, const Step *step, const char *name, size_t i)
{
        unsigned on = asked[step->op];
        int net = X, elect = X, status = X, startup = X;
        bool was_leading = sim->f.leading;

        if (!sim_event(sim, step->op))
                on = 0;
        /* on_leadership: still leading (a restarted kvelectd renewed the
         * Lease) only moves the grant's deadline. */
        if ((on & NET_ON) && was_leading && sim->f.leading && sim->f.programmed &&
            (step->op == OP_CONFIRMED || step->op == OP_ANSWER_LEADING))
                on = (on & ~NET_ON) | RENEW_ON;
        /* reconcile_service: kvnetd first, so a Service that stops being
         * served sends RemoveService before its lease is let go. */
        if (on & NET_ON) {
                NetPlan p = plan_net(&sim->f);
                net = (int)p.action;
                apply_net(sim, p);
        }
        if (on & RENEW_ON) {
                NetPlan p = plan_renew(&sim->f);
                net = (int)p.action;
                apply_net(sim, p);
        }
        if (on & ELECT_ON) {
                elect = (int)plan_elect(&sim->f);
                apply_elect(sim, (unsigned)elect);
        }
        if (on & STATUS_ON)
                status = (int)plan_status(&sim->f);
        if (step->op == OP_FIRST_ROUND)
                startup_apply(&sim->st, STARTUP_FIRST_ROUND_DONE);
        if (on & STARTUP_ON) {
                StartupFacts sf = {
                        .kvnetd_connected = sim->f.kvnetd_connected,
                        .kvelectd_connected = sim->kvelectd_connected,
                        .campaigns_pending = sim->f.campaign_unanswered,
                };
                startup = (int)plan_startup(&sim->st, &sf);
                /* net_clean_stale / elect_clean_stale */
                if (startup & STARTUP_ACTION_CLEAN_KVNETD)
                        startup_apply(&sim->st, STARTUP_KVNETD_CLEAN_SENT);
                if (startup & STARTUP_ACTION_CLEAN_KVELECTD)
                        startup_apply(&sim->st, STARTUP_KVELECTD_CLEAN_SENT);
        }

        ck_assert_msg(net == step->net, "%s, step %zu: net %s, expected %s", name, i,
                      net == X ? "not asked" : net_action_to_string(net),
                      step->net == X ? "not asked" : net_action_to_string(step->net));
        ck_assert_msg(elect == step->elect, "%s, step %zu: elect %d, expected %d", name, i, elect,
                      step->elect);
        ck_assert_msg(status == step->status, "%s, step %zu: status %s, expected %s", name, i,
                      status == X ? "not asked" : status_action_to_string(status),
                      step->status == X ? "not asked" : status_action_to_string(step->status));
        ck_assert_msg(startup == step->startup, "%s, step %zu: startup %d, expected %d", name, i, startup,
                      step->startup);
        ck_assert_msg((int)sim->st.phase == step->phase, "%s, step %zu: phase %s, expected %s", name, i,
                      kvpd_phase_to_string(sim->st.phase), kvpd_phase_to_string(step->phase));
        if (step->keep != X)
                ck_assert_msg(plan_stale_keep(&sim->f) == (bool)step->keep, "%s, step %zu: stale keep %d",
                              name, i, !step->keep);
}

// clang-format off (one row per step reads as a table)
/* Every sequence but the first starts from STEADY: kvpd started with both
 * daemons up, leads the lease, kvnetd confirmed, both clean-ups done. */
#define STEADY                                                                                              \
        {OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X}, {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},                \
                {OP_SYNCED, X, X, X, 0, P_REPLAY, X},                                                       \
                {OP_FIRST_ROUND, N_NONE, E_CAMPAIGN, ST_WAIT, 0, P_CLEAN, X},                               \
                {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, C_NET, P_CLEAN, 1},                              \
                {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_CLEAN, X},                                            \
        {                                                                                                   \
                OP_CLEAN_OK, X, X, X, C_ELECT, P_RUN, X                                                     \
        }

typedef struct Sequence {
        const char *name;
        Step steps[24];
} Sequence;

static const Sequence sequences[] = {
        {"cold start: status waits for kvelectd, then for kvnetd; clean-ups in order", {STEADY}},
        {"kvnetd restarted alone: reprogrammed, status not cleared meanwhile, cleaned again",
         {STEADY,
          {OP_KVNETD_DOWN, X, 0, X, X, P_CLEAN, X},
          {OP_TIME, X, X, X, X, P_CLEAN, X},
          {OP_RENEWED, N_NONE, X, X, X, P_CLEAN, X}, /* nothing programmed to renew */
          {OP_KVNETD_UP, N_PROGRAM, X, X, C_NET, P_CLEAN, 1},
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_CLEAN, X},
          {OP_CLEAN_OK, X, X, X, 0, P_RUN, X}, /* kvelectd's was done on its connection */
          {OP_END}}},
        {"kvelectd restarted alone: leadership carried, no VIP change, confirmed, renewed",
         {STEADY,
          {OP_KVELECTD_DOWN, X, X, X, 0, P_CLEAN, 1},
          {OP_TIME, X, X, X, X, P_CLEAN, X},
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_CLEAN, X}, /* still leading: carried */
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_CLEAN, X},
          {OP_KVELECTD_UP, X, X, X, C_ELECT, P_RUN, X}, /* kvnetd's clean-up stands */
          {OP_CONFIRMED, N_RENEW, X, ST_HOLD, X, P_RUN, X},
          {OP_RENEWED, N_RENEW, X, X, X, P_RUN, X},
          {OP_END}}},
        {"kvelectd gone past the deadline: the carried lease ends, the VIP goes",
         {STEADY,
          {OP_KVELECTD_DOWN, X, X, X, 0, P_CLEAN, X},
          {OP_CARRIED_EXPIRED, N_REMOVE, X, ST_RELEASE, X, P_CLEAN, X},
          {OP_REMOVE_ANSWERED, X, 0, X, X, P_CLEAN, X}, /* still wanted: the campaign stays */
          {OP_KVELECTD_UP, X, X, X, C_ELECT, P_RUN, X}, /* replayed; kvnetd's clean-up stands */
          {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, 0, P_RUN, X},
          {OP_END}}},
        {"all three restarted: a fresh kvelectd answers before it renewed; the VIP is kept",
         {{OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},
          {OP_TIME, X, X, X, X, P_SYNC, X},
          {OP_SYNCED, X, X, X, 0, P_REPLAY, X},
          {OP_FIRST_ROUND, N_NONE, E_CAMPAIGN, ST_WAIT, 0, P_CLEAN, 1},
          /* Not leading yet, but the Lease names this node: kvnetd's VIP
           * for it stays (the replay claims it or its deadline ends it). */
          {OP_ANSWER_UNHELD, N_NONE, X, ST_RELEASE, C_NET, P_CLEAN, 1},
          {OP_CLEAN_OK, X, X, X, C_ELECT, P_RUN, X},
          {OP_CONFIRMED, N_PROGRAM, X, ST_WAIT, X, P_RUN, X},  /* nothing programmed yet: a batch */
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_RUN, X}, /* before kvnetd answered: another */
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_RUN, X},
          {OP_END}}},
        {"kvpd restarted: clean-ups wait for the sync, the first round and kvelectd's answers",
         {{OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},
          {OP_SYNCED, X, X, X, 0, P_REPLAY, X},
          {OP_TIME, X, X, X, X, P_REPLAY, X},
          {OP_FIRST_ROUND, N_NONE, E_CAMPAIGN, ST_WAIT, 0, P_CLEAN, 1},
          {OP_KVELECTD_DOWN, X, X, X, C_NET, P_CLEAN, X}, /* the answers it owed will not come */
          {OP_CLEAN_OK, X, X, X, 0, P_CLEAN, X},
          {OP_KVELECTD_UP, X, X, X, C_ELECT, P_RUN, X},
          {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, 0, P_RUN, X},
          {OP_END}}},
        {"kvnetd refusing: the batch is removed, the lease kept, retried until accepted",
         {STEADY,
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_RUN, X},
          {OP_NET_REFUSED, X, X, X, X, P_RUN, 1}, /* still leading: left to the retry */
          {OP_REMOVE_ANSWERED, X, 0, X, X, P_RUN, X},
          {OP_TIME, X, X, X, X, P_RUN, X},
          {OP_RENEWED, N_NONE, X, X, X, P_RUN, X}, /* a refused batch holds no grant */
          {OP_RETRY, N_PROGRAM, X, X, X, P_RUN, X},
          {OP_NET_REFUSED, X, X, X, X, P_RUN, X},
          {OP_PODS_BACK, N_PROGRAM, 0, ST_WAIT, X, P_RUN, X},
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_RUN, X},
          {OP_RETRY, X, X, X, X, P_RUN, X}, /* nothing failed: the timer does nothing */
          {OP_END}}},
        {"kvnetd refusing the first batch: status released, not claimed",
         {{OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},
          {OP_SYNCED, X, X, X, 0, P_REPLAY, X},
          {OP_FIRST_ROUND, N_NONE, E_CAMPAIGN, ST_WAIT, 0, P_CLEAN, X},
          {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, C_NET, P_CLEAN, X},
          {OP_NET_REFUSED, X, X, X, X, P_CLEAN, 1}, /* RemoveService in flight */
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_CLEAN, X},
          {OP_NET_REFUSED, X, X, X, X, P_CLEAN, X},
          {OP_LEASE_LOST, N_NONE, X, ST_RELEASE, X, P_CLEAN, X},
          {OP_END}}},
        {"kvelectd refusing: no programming, status released, retried",
         {{OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},
          {OP_SYNCED, X, X, X, 0, P_REPLAY, X},
          {OP_FIRST_ROUND, N_NONE, E_CAMPAIGN, ST_WAIT, 0, P_CLEAN, X},
          {OP_ANSWER_REFUSED, N_NONE, X, ST_RELEASE, C_NET, P_CLEAN, 1},
          {OP_CAMPAIGN_RETRY, X, X, X, X, P_CLEAN, X},
          {OP_CLEAN_OK, X, X, X, C_ELECT, P_RUN, X},
          {OP_ANSWER_REFUSED, N_NONE, X, ST_RELEASE, 0, P_RUN, X},
          {OP_CAMPAIGN_RETRY, X, X, X, X, P_RUN, X},
          {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, 0, P_RUN, X},
          {OP_END}}},
        {"API down at start: nothing is cleaned while the picture is incomplete",
         {{OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},
          {OP_TIME, X, X, X, X, P_SYNC, X},
          {OP_KVNETD_DOWN, X, 0, X, X, P_SYNC, X},
          {OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_TIME, X, X, X, X, P_SYNC, X},
          {OP_SYNCED, X, X, X, 0, P_REPLAY, X},
          {OP_FIRST_ROUND, N_NONE, E_CAMPAIGN, ST_WAIT, 0, P_CLEAN, X},
          {OP_END}}},
        {"API down while leading: kvelectd cannot renew, the lease is lost, the VIP goes first",
         {STEADY,
          {OP_TIME, X, X, X, X, P_RUN, X},
          {OP_LEASE_LOST, N_REMOVE, X, ST_RELEASE, X, P_RUN, 0},
          {OP_NET_ACCEPTED, X, X, X, X, P_RUN, X}, /* superseded: ignored */
          {OP_REMOVE_ANSWERED, X, 0, X, X, P_RUN, X},
          {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, 0, P_RUN, X}, /* API back, lease regained */
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_RUN, X},
          {OP_END}}},
        {"Service deleted while kvpd was down: kvnetd's and kvelectd's state removed",
         {{OP_KVNETD_UP, N_NONE, X, X, 0, P_SYNC, X},
          {OP_KVELECTD_UP, X, X, X, 0, P_SYNC, X},
          {OP_SYNCED, X, X, X, 0, P_REPLAY, X},
          {OP_DELETED, N_NONE, 0, ST_RELEASE, X, P_REPLAY, 0},
          {OP_FIRST_ROUND, N_NONE, 0, ST_RELEASE, C_NET, P_CLEAN, 0},
          {OP_CLEAN_OK, X, X, X, C_ELECT, P_RUN, X},
          {OP_END}}},
        {"Service deleted while leading: RemoveService before the lease goes",
         {STEADY,
          {OP_DELETED, N_REMOVE, E_WAIT, ST_RELEASE, X, P_RUN, 1},
          {OP_REMOVE_ANSWERED, X, E_WITHDRAW, X, X, P_RUN, 0},
          {OP_END}}},
        {"pods moving: a new batch; the last pod leaves: VIP removed, then the lease",
         {STEADY,
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_RUN, X},
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_RUN, X},
          {OP_PODS_MOVED, N_NONE, 0, ST_HOLD, X, P_RUN, X}, /* the same again: nothing */
          {OP_PODS_GONE, N_REMOVE, E_WAIT, ST_RELEASE, X, P_RUN, X},
          /* Back before kvnetd answered: the lease was kept, so this
           * node still leads and programs again at once. */
          {OP_PODS_BACK, N_PROGRAM, 0, ST_WAIT, X, P_RUN, X},
          {OP_REMOVE_ANSWERED, X, X, X, X, P_RUN, X}, /* superseded */
          {OP_NET_ACCEPTED, X, X, ST_HOLD, X, P_RUN, X},
          {OP_LEASE_LOST, N_REMOVE, X, ST_RELEASE, X, P_RUN, X},
          {OP_REMOVE_ANSWERED, X, 0, X, X, P_RUN, X}, /* pods still here: the campaign stays */
          {OP_ANSWER_LEADING, N_PROGRAM, X, ST_WAIT, 0, P_RUN, X},
          {OP_PODS_GONE, N_REMOVE, E_WAIT, ST_RELEASE, X, P_RUN, X},
          {OP_REMOVE_ANSWERED, X, E_WITHDRAW, X, X, P_RUN, 0},
          {OP_PODS_BACK, N_NONE, E_CAMPAIGN, ST_WAIT, X, P_RUN, 1},
          {OP_END}}},
        {"lease lost mid-change: the batch in flight is removed, its late answer ignored",
         {STEADY,
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_RUN, X},
          {OP_LEASE_LOST, N_REMOVE, X, ST_RELEASE, X, P_RUN, 0},
          {OP_NET_ACCEPTED, X, X, X, X, P_RUN, X},
          {OP_NET_REFUSED, X, X, X, X, P_RUN, X},
          {OP_REMOVE_ANSWERED, X, 0, X, X, P_RUN, X},
          {OP_END}}},
        /* A dead (or stopped) kvnetd fences nothing: the VIP stays bound until a kvnetd removes it, so
         * the lease, which another node would take at once, waits for that. */
        {"kvnetd gone with RemoveService unanswered: the lease waits for a kvnetd to remove it",
         {STEADY,
          {OP_PODS_GONE, N_REMOVE, E_WAIT, ST_RELEASE, X, P_RUN, X},
          {OP_KVNETD_DOWN, X, E_WAIT, X, X, P_CLEAN, 1},
          {OP_KVNETD_UP, N_REMOVE, X, X, C_NET, P_CLEAN, 1},
          {OP_CLEAN_FAILED, X, X, X, 0, P_CLEAN, X}, /* not before the next connection */
          {OP_KVNETD_DOWN, X, E_WAIT, X, X, P_CLEAN, X},
          {OP_KVNETD_UP, N_REMOVE, X, X, C_NET, P_CLEAN, X},
          {OP_REMOVE_ANSWERED, X, E_WITHDRAW, X, X, P_CLEAN, X},
          {OP_CLEAN_OK, X, X, X, 0, P_RUN, 0},
          {OP_END}}},
        {"kvnetd gone while programmed, then the pods go: the lease waits for a kvnetd to remove it",
         {STEADY,
          {OP_KVNETD_DOWN, X, 0, X, X, P_CLEAN, X},
          {OP_PODS_GONE, N_NONE, E_WAIT, ST_RELEASE, X, P_CLEAN, 1},
          {OP_KVNETD_UP, N_REMOVE, X, X, C_NET, P_CLEAN, X},
          {OP_REMOVE_ANSWERED, X, E_WITHDRAW, X, X, P_CLEAN, X},
          {OP_CLEAN_OK, X, X, X, 0, P_RUN, 0},
          {OP_END}}},
        {"deadline within the margin: no grant until a renewal",
         {STEADY,
          {OP_KVNETD_DOWN, X, 0, X, X, P_CLEAN, X},
          {OP_TIME, X, X, X, X, P_CLEAN, X},
          {OP_TIME, X, X, X, X, P_CLEAN, X},
          {OP_TIME, X, X, X, X, P_CLEAN, X},
          {OP_KVNETD_UP, N_WAITREN, X, X, C_NET, P_CLEAN, 1},
          {OP_RENEWED, N_NONE, X, X, X, P_CLEAN, X},
          {OP_RETRY, X, X, X, X, P_CLEAN, X},
          {OP_PODS_MOVED, N_PROGRAM, 0, ST_WAIT, X, P_CLEAN, X},
          {OP_END}}},
};

// clang-format on

START_TEST(test_sequence)
{
        const Sequence *seq = &sequences[_i];
        Sim sim;

        sim_init(&sim);
        for (size_t i = 0; i < ELEMENTSOF(seq->steps) && seq->steps[i].op != OP_END; i++)
                sim_step(&sim, &seq->steps[i], seq->name, i);
}
END_TEST

/* The grant deadline: the lease's less the margin, within kvnetd's bound. */
static const struct {
        uint64_t lease, margin, now, want;
} grant_deadlines[] = {
        {0, 0, T0, 0},
        {MARGIN, MARGIN, T0, 0},
        {MARGIN - 1, MARGIN, T0, 0},
        {T0 + LEASE, MARGIN, T0, T0 + LEASE - MARGIN},
        {T0 + LEASE, 0, T0, T0 + LEASE},
        {T0 + KVNETD_MAX_GRANT_USEC + MARGIN, MARGIN, T0, T0 + KVNETD_MAX_GRANT_USEC},
        {T0 + 10 * KVNETD_MAX_GRANT_USEC, MARGIN, T0, T0 + KVNETD_MAX_GRANT_USEC},
        {T0 + 1 * S, 2 * S, T0, T0 - 1 * S}, /* already past: the caller waits */
};

START_TEST(test_grant_deadline)
{
        ck_assert_uint_eq(plan_grant_deadline(grant_deadlines[_i].lease, grant_deadlines[_i].margin,
                                              grant_deadlines[_i].now),
                          grant_deadlines[_i].want);
}
END_TEST

/* plan_elect: the rule and the lease name. */
static const struct {
        const EgressPolicy *desired;
        bool stopping, campaigning, matches, removing;
        unsigned want;
} elect_cases[] = {
        {NULL, false, false, false, false, 0},
        {&policy_idle, false, false, false, false, 0},
        {&policy_ready_a, false, false, false, false, ELECT_ACTION_CAMPAIGN},
        {&policy_ready_a, false, true, true, false, 0},
        {&policy_ready_a, false, true, false, false, ELECT_ACTION_WITHDRAW | ELECT_ACTION_CAMPAIGN},
        {&policy_ready_a, false, true, false, true, ELECT_ACTION_WAIT_REMOVAL},
        {&policy_ready_a, true, true, true, false, ELECT_ACTION_WITHDRAW},
        {&policy_ready_a, true, false, false, false, 0},
        {&policy_idle, false, true, true, false, ELECT_ACTION_WITHDRAW},
        {&policy_idle, false, true, true, true, ELECT_ACTION_WAIT_REMOVAL},
        {NULL, false, true, false, false, ELECT_ACTION_WITHDRAW},
        {&policy_yielding, false, false, false, false, 0},
        {&policy_yielding, false, true, true, false, ELECT_ACTION_WITHDRAW},
        {&policy_yielding, false, true, true, true, ELECT_ACTION_WAIT_REMOVAL},
};

START_TEST(test_elect)
{
        ServiceFacts f = {
                .desired = elect_cases[_i].desired,
                .stopping = elect_cases[_i].stopping,
                .campaigning = elect_cases[_i].campaigning,
                .campaign_matches = elect_cases[_i].matches,
                .removing = elect_cases[_i].removing,
        };

        ck_assert_uint_eq(plan_elect(&f), elect_cases[_i].want);
}
END_TEST

/* Stopping: nothing is programmed or written through the planner (the stop
 * sequence releases everything itself). */
START_TEST(test_stopping)
{
        ServiceFacts f = {.desired = &policy_ready_a,
                          .stopping = true,
                          .campaigning = true,
                          .campaign_matches = true,
                          .leading = true,
                          .lease_deadline_usec = T0 + LEASE,
                          .kvnetd_connected = true,
                          .programmed = &policy_ready_a,
                          .net_confirmed = true,
                          .status_cached = true,
                          .now_usec = T0,
                          .grant_margin_usec = MARGIN};
        Startup st = {.phase = KVPD_PHASE_CLEANING, .kvnetd = STALE_CLEAN_DUE, .kvelectd = STALE_CLEAN_DUE};
        StartupFacts sf = {.stopping = true, .kvnetd_connected = true, .kvelectd_connected = true};

        ck_assert(!plan_leading(&f));
        ck_assert_int_eq(plan_net(&f).action, NET_ACTION_REMOVE);
        ck_assert_int_eq(plan_renew(&f).action, NET_ACTION_NONE);
        ck_assert_int_eq(plan_status(&f), STATUS_ACTION_NONE);
        ck_assert_uint_eq(plan_startup(&st, &sf), 0);
        ck_assert(!plan_stale_keep(NULL));
}
END_TEST

/* Yielding (a local pod not ready, a ready one elsewhere) while leading:
 * the VIP goes first, the lease after. */
START_TEST(test_yielding)
{
        ServiceFacts f = {.desired = &policy_yielding,
                          .campaigning = true,
                          .campaign_matches = true,
                          .leading = true,
                          .lease_deadline_usec = T0 + LEASE,
                          .kvnetd_connected = true,
                          .programmed = &policy_ready_a,
                          .net_confirmed = true,
                          .status_cached = true,
                          .now_usec = T0,
                          .grant_margin_usec = MARGIN};

        ck_assert(!plan_leading(&f));
        ck_assert_int_eq(plan_net(&f).action, NET_ACTION_REMOVE);
        f.programmed = NULL;
        f.net_confirmed = false;
        f.removing = true;
        ck_assert_uint_eq(plan_elect(&f), ELECT_ACTION_WAIT_REMOVAL);
        ck_assert_int_eq(plan_status(&f), STATUS_ACTION_RELEASE);
        ck_assert(plan_stale_keep(&f)); /* still leading the lease: left to it */
        f.removing = false;
        ck_assert_uint_eq(plan_elect(&f), ELECT_ACTION_WITHDRAW);
}
END_TEST

/* The order of a batch's calls (plan_batch): grant, switch, release. VIPs
 * by letter (a, b: IPv4; 6, 7: IPv6); steps "Gx" GrantVip, "W" wait for the
 * answers, "E" SetEgress, "Rx" ReleaseVip. */
static const struct {
        const char *name;
        const char *old_vips; /* NULL: nothing programmed yet */
        const char *new_vips;
        const char *old_if, *new_if;
        const char *want;
        bool switching;
} batches[] = {
        {"first batch: grant, then the egress", NULL, "a", NULL, "eth1", "Ga E"},
        {"pods, ports or networks changed: the egress only (GrantVip is idempotent)", "a", "a", "eth1",
         "eth1", "Ga E"},
        /* The gap the issue found: ReleaseVip (which removed the egress),
         * GrantVip, SetEgress. Now the new VIP is bound while the old one
         * still SNATs, one SetEgress switches, the old one goes last. */
        {"VIP changed: grant the new, wait for it, switch, release the old", "a", "b", "eth1", "eth1",
         "Gb W E Ra"},
        /* kvnetd answers GrantVip of a new IPv6 VIP once DAD ended. */
        {"IPv6 VIP changed: the switch waits for the new one", "a6", "a7", "eth1", "eth1", "Ga G7 W E R6"},
        {"an IPv6 VIP added: nothing to wait for (no IPv6 SNAT before)", "a", "a6", "eth1", "eth1",
         "Ga G6 E"},
        {"the IPv6 VIP dropped: the egress without it first", "a6", "a", "eth1", "eth1", "Ga E R6"},
        {"both VIPs changed", "a6", "b", "eth1", "eth1", "Gb W E Ra R6"},
        /* The same address on another link: it leaves the old one first
         * (never on two links), its egress with it. */
        /* Superseded while it waited for a new VIP (a pod changed): the
         * SNAT still uses the VIP before, so the new batch waits too. */
        {"pods changed during a switch: wait again", "b", "b", "eth1", "eth1", "Gb W E", true},
        {"interface changed: release first", "a", "a", "eth1", "eth2", "Ra Ga E"},
};

static IpAddr batch_vip(char c)
{
        const char *text = c == 'a'   ? "192.168.0.240"
                           : c == 'b' ? "192.168.0.241"
                           : c == '6' ? "fd00:192:168::240"
                                      : "fd00:192:168::241";
        IpAddr a = {};

        ck_assert_int_eq(ip_addr_parse(text, AF_UNSPEC, &a, NULL), 0);
        return a;
}

/* The VIPs named, the first of each family its SNAT source. */
static void batch_vips(const char *letters, EgressPolicy *p)
{
        for (; letters && *letters; letters++) {
                IpAddr a = batch_vip(*letters);

                p->vips[p->n_vips++] = a;
                if (a.family == AF_INET && !p->has_vip4) {
                        p->has_vip4 = true;
                        p->vip4 = a;
                } else if (a.family == AF_INET6 && !p->has_vip6) {
                        p->has_vip6 = true;
                        p->vip6 = a;
                }
        }
}

/* "Gx", "Rx" or "E" */
static void batch_step_name(const NetStep *step, char ret[static 3])
{
        ret[0] = step->kind == NET_STEP_GRANT_VIP     ? 'G'
                 : step->kind == NET_STEP_RELEASE_VIP ? 'R'
                 : step->kind == NET_STEP_WAIT_GRANTS ? 'W'
                                                      : 'E';
        ret[1] = ret[2] = 0;
        if (step->kind != NET_STEP_GRANT_VIP && step->kind != NET_STEP_RELEASE_VIP)
                return;
        ret[1] = '?';
        for (const char *c = "ab67"; *c; c++) {
                IpAddr a = batch_vip(*c);
                if (ip_addr_equal(&step->vip, &a))
                        ret[1] = *c;
        }
}

START_TEST(test_batch)
{
        IpAddr old_vips[4], new_vips[4];
        EgressPolicy old = {.state = EGRESS_READY, .vips = old_vips};
        EgressPolicy new = {.state = EGRESS_READY, .vips = new_vips};
        const EgressPolicy *programmed = batches[_i].old_vips ? &old : NULL;
        char got[64] = "";
        NetStep steps[8];
        size_t n;

        batch_vips(batches[_i].old_vips, &old);
        batch_vips(batches[_i].new_vips, &new);
        ck_assert_uint_le(plan_batch_max(programmed, &new), ELEMENTSOF(steps));
        n = plan_batch(programmed, batches[_i].old_if, batches[_i].switching, &new, batches[_i].new_if,
                       steps);
        ck_assert_uint_le(n, plan_batch_max(programmed, &new));
        for (size_t i = 0; i < n; i++) {
                char name[3];

                batch_step_name(&steps[i], name);
                if (i > 0)
                        strcat(got, " ");
                strcat(got, name);
        }
        ck_assert_msg(streq(got, batches[_i].want), "%s: got \"%s\", want \"%s\"", batches[_i].name, got,
                      batches[_i].want);
}
END_TEST

/* The stop sequence, played as the loop plays it (controller.c run_stop):
 * plan_stop() is asked until it has nothing more to do now; each action
 * that sends calls leaves that many pending; the steps are what happens
 * next. Each row's trace lists, run by run, the actions taken. */
typedef enum StopStep {
        STOP_STEP_SIGTERM,
        STOP_STEP_ANSWER, /* one pending call answered (or failed) */
        STOP_STEP_TIMEOUT,
} StopStep;

#define CLEAR STOP_ACTION_CLEAR_STATUS
#define REMOVE STOP_ACTION_REMOVE_SERVICES
#define WITHDRAW STOP_ACTION_WITHDRAW
#define EXIT STOP_ACTION_EXIT

static const struct {
        const char *name;
        bool api_client;
        unsigned release_calls, withdraw_calls; /* what the actions send */
        StopStep steps[8];
        size_t n_steps;
        unsigned trace[8]; /* the actions of each step, in order */
        StopPhase end;
} stop_cases[] = {
        {"calls answered: status and kvnetd first, the leases after, then exit",
         true,
         2,
         1,
         {STOP_STEP_SIGTERM, STOP_STEP_ANSWER, STOP_STEP_ANSWER, STOP_STEP_ANSWER},
         4,
         {CLEAR | REMOVE, 0, WITHDRAW, EXIT},
         STOP_PHASE_DONE},
        {"nothing to release: every phase at once",
         true,
         0,
         0,
         {STOP_STEP_SIGTERM},
         1,
         {CLEAR | REMOVE | WITHDRAW | EXIT},
         STOP_PHASE_DONE},
        {"no API client: no status clear",
         false,
         1,
         0,
         {STOP_STEP_SIGTERM, STOP_STEP_ANSWER},
         2,
         {REMOVE, WITHDRAW | EXIT},
         STOP_PHASE_DONE},
        {"kvnetd never answers: the timeout exits without withdrawing",
         true,
         1,
         1,
         {STOP_STEP_SIGTERM, STOP_STEP_TIMEOUT, STOP_STEP_ANSWER},
         3,
         {CLEAR | REMOVE, EXIT, 0},
         STOP_PHASE_DONE},
        {"kvelectd never answers: the timeout exits",
         true,
         1,
         1,
         {STOP_STEP_SIGTERM, STOP_STEP_ANSWER, STOP_STEP_TIMEOUT},
         3,
         {CLEAR | REMOVE, WITHDRAW, EXIT},
         STOP_PHASE_DONE},
        {"a second SIGTERM changes nothing",
         true,
         1,
         1,
         {STOP_STEP_SIGTERM, STOP_STEP_SIGTERM},
         2,
         {CLEAR | REMOVE, 0},
         STOP_PHASE_RELEASING},
        {"no SIGTERM: nothing", true, 1, 1, {STOP_STEP_ANSWER}, 1, {0}, STOP_PHASE_RUNNING},
};

START_TEST(test_stop_sequence)
{
        StopFacts f = {.phase = STOP_PHASE_RUNNING, .api_client = stop_cases[_i].api_client};
        unsigned pending = 0;

        for (size_t i = 0; i < stop_cases[_i].n_steps; i++) {
                unsigned trace = 0;

                switch (stop_cases[_i].steps[i]) {
                case STOP_STEP_SIGTERM:
                        f.requested = true;
                        break;
                case STOP_STEP_ANSWER:
                        if (pending > 0)
                                pending--;
                        break;
                case STOP_STEP_TIMEOUT:
                        f.timed_out = true;
                        break;
                }
                for (;;) {
                        StopPlan p;

                        f.calls_pending = pending > 0;
                        p = plan_stop(&f);
                        if (p.phase == f.phase && p.actions == 0)
                                break;
                        /* Never twice in one run; never anything after exit. */
                        ck_assert_msg((trace & p.actions) == 0, "%s: step %zu repeats an action",
                                      stop_cases[_i].name, i);
                        ck_assert_msg(!(trace & EXIT), "%s: step %zu acts after exit", stop_cases[_i].name,
                                      i);
                        trace |= p.actions;
                        f.phase = p.phase;
                        if (p.actions & (CLEAR | REMOVE))
                                pending += stop_cases[_i].release_calls;
                        if (p.actions & WITHDRAW)
                                pending += stop_cases[_i].withdraw_calls;
                }
                ck_assert_msg(trace == stop_cases[_i].trace[i], "%s: step %zu: actions %#x, want %#x",
                              stop_cases[_i].name, i, trace, stop_cases[_i].trace[i]);
        }
        ck_assert_msg(f.phase == stop_cases[_i].end, "%s: phase %s, want %s", stop_cases[_i].name,
                      stop_phase_to_string(f.phase), stop_phase_to_string(stop_cases[_i].end));
}
END_TEST

/* The order inside one answer: the status clear asks what kvnetd had
 * confirmed, so it comes with (and the loop runs it before) RemoveService;
 * Withdraw never comes with either, nor before every call of theirs is
 * answered. */
START_TEST(test_stop_order)
{
        StopFacts f = {.phase = STOP_PHASE_RUNNING, .requested = true, .api_client = true};
        StopPlan p = plan_stop(&f);

        ck_assert_int_eq(p.phase, STOP_PHASE_RELEASING);
        ck_assert_uint_eq(p.actions, CLEAR | REMOVE);
        ck_assert_uint_lt(CLEAR, REMOVE);
        f.phase = p.phase;
        f.calls_pending = true;
        p = plan_stop(&f);
        ck_assert_int_eq(p.phase, STOP_PHASE_RELEASING);
        ck_assert_uint_eq(p.actions, 0);
        f.calls_pending = false;
        p = plan_stop(&f);
        ck_assert_int_eq(p.phase, STOP_PHASE_WITHDRAWING);
        ck_assert_uint_eq(p.actions, WITHDRAW);
        f.phase = STOP_PHASE_DONE;
        f.timed_out = true;
        p = plan_stop(&f);
        ck_assert_int_eq(p.phase, STOP_PHASE_DONE);
        ck_assert_uint_eq(p.actions, 0);
}
END_TEST

START_TEST(test_names)
{
        for (int i = 0; i < _KVPD_PHASE_MAX; i++)
                ck_assert_ptr_nonnull(kvpd_phase_to_string(i));
        for (int i = 0; i < _STALE_CLEAN_MAX; i++)
                ck_assert_ptr_nonnull(stale_clean_to_string(i));
        for (int i = 0; i < _STARTUP_EVENT_MAX; i++)
                ck_assert_ptr_nonnull(startup_event_to_string(i));
        for (int i = 0; i < _NET_ACTION_MAX; i++)
                ck_assert_ptr_nonnull(net_action_to_string(i));
        for (int i = 0; i < _STATUS_ACTION_MAX; i++)
                ck_assert_ptr_nonnull(status_action_to_string(i));
        for (int i = 0; i < _NET_STEP_KIND_MAX; i++)
                ck_assert_ptr_nonnull(net_step_kind_to_string(i));
        for (int i = 0; i < _STOP_PHASE_MAX; i++)
                ck_assert_ptr_nonnull(stop_phase_to_string(i));
        ck_assert_ptr_null(kvpd_phase_to_string(_KVPD_PHASE_MAX));
        ck_assert_ptr_null(net_action_to_string(-1));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("plan");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_loop_test(tc, test_sequence, 0, ELEMENTSOF(sequences));
        tcase_add_loop_test(tc, test_grant_deadline, 0, ELEMENTSOF(grant_deadlines));
        tcase_add_loop_test(tc, test_elect, 0, ELEMENTSOF(elect_cases));
        tcase_add_test(tc, test_stopping);
        tcase_add_test(tc, test_yielding);
        tcase_add_loop_test(tc, test_batch, 0, ELEMENTSOF(batches));
        tcase_add_loop_test(tc, test_stop_sequence, 0, ELEMENTSOF(stop_cases));
        tcase_add_test(tc, test_stop_order);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
