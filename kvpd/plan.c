/* SPDX-License-Identifier: Apache-2.0 */
/* kvpd's decisions from facts, with no I/O (see plan.h). */
#include "kvnetd-bus.h"
#include "plan.h"

static const char *const phase_table[_KVPD_PHASE_MAX] = {
        [KVPD_PHASE_WAITING_FOR_SYNC] = "waiting-for-sync",
        [KVPD_PHASE_REPLAYING] = "replaying",
        [KVPD_PHASE_CLEANING] = "cleaning",
        [KVPD_PHASE_RUNNING] = "running",
};

DEFINE_STRING_TABLE_TO_STRING(kvpd_phase_to_string, KvpdPhase, phase_table);

static const char *const stale_clean_table[_STALE_CLEAN_MAX] = {
        [STALE_CLEAN_DUE] = "due",
        [STALE_CLEAN_RUNNING] = "running",
        [STALE_CLEAN_FAILED] = "failed",
        [STALE_CLEAN_DONE] = "done",
};

DEFINE_STRING_TABLE_TO_STRING(stale_clean_to_string, StaleClean, stale_clean_table);

static const char *const startup_event_table[_STARTUP_EVENT_MAX] = {
        [STARTUP_SYNCED] = "synced",
        [STARTUP_FIRST_ROUND_DONE] = "first-round-done",
        [STARTUP_KVNETD_CONNECTED] = "kvnetd-connected",
        [STARTUP_KVNETD_GONE] = "kvnetd-gone",
        [STARTUP_KVELECTD_CONNECTED] = "kvelectd-connected",
        [STARTUP_KVELECTD_GONE] = "kvelectd-gone",
        [STARTUP_KVNETD_CLEAN_SENT] = "kvnetd-clean-sent",
        [STARTUP_KVNETD_CLEAN_FAILED] = "kvnetd-clean-failed",
        [STARTUP_KVNETD_CLEAN_DONE] = "kvnetd-clean-done",
        [STARTUP_KVELECTD_CLEAN_SENT] = "kvelectd-clean-sent",
};

DEFINE_STRING_TABLE_TO_STRING(startup_event_to_string, StartupEvent, startup_event_table);

static const char *const net_action_table[_NET_ACTION_MAX] = {
        [NET_ACTION_NONE] = "none",
        [NET_ACTION_REMOVE] = "remove",
        [NET_ACTION_PROGRAM] = "program",
        [NET_ACTION_WAIT_CONNECTED] = "wait-connected",
        [NET_ACTION_WAIT_RENEWAL] = "wait-renewal",
        [NET_ACTION_RENEW] = "renew",
};

DEFINE_STRING_TABLE_TO_STRING(net_action_to_string, NetAction, net_action_table);

static const char *const net_step_kind_table[_NET_STEP_KIND_MAX] = {
        [NET_STEP_RELEASE_VIP] = "release-vip",
        [NET_STEP_GRANT_VIP] = "grant-vip",
        [NET_STEP_WAIT_GRANTS] = "wait-grants",
        [NET_STEP_SET_EGRESS] = "set-egress",
};

const char *net_step_kind_to_string(NetStepKind k)
{
        return k >= 0 && k < _NET_STEP_KIND_MAX ? net_step_kind_table[k] : NULL;
}

static const char *const status_action_table[_STATUS_ACTION_MAX] = {
        [STATUS_ACTION_NONE] = "none",
        [STATUS_ACTION_WAIT] = "wait",
        [STATUS_ACTION_RELEASE] = "release",
        [STATUS_ACTION_HOLD] = "hold",
};

DEFINE_STRING_TABLE_TO_STRING(status_action_to_string, StatusAction, status_action_table);

Startup startup_init(void)
{
        return (Startup){.phase = KVPD_PHASE_WAITING_FOR_SYNC,
                         .kvnetd = STALE_CLEAN_DUE,
                         .kvelectd = STALE_CLEAN_DUE};
}

void startup_apply(Startup *st, StartupEvent e)
{
        switch (e) {
        case STARTUP_SYNCED:
                if (st->phase == KVPD_PHASE_WAITING_FOR_SYNC)
                        st->phase = KVPD_PHASE_REPLAYING;
                break;
        case STARTUP_FIRST_ROUND_DONE:
                if (st->phase == KVPD_PHASE_REPLAYING)
                        st->phase = KVPD_PHASE_CLEANING;
                break;
        case STARTUP_KVNETD_CONNECTED:
        case STARTUP_KVNETD_GONE:
                /* What the next connection holds is unknown, and kvelectd's
                 * clean-up must wait for kvnetd's again. */
                st->kvnetd = STALE_CLEAN_DUE;
                break;
        case STARTUP_KVELECTD_CONNECTED:
        case STARTUP_KVELECTD_GONE:
                st->kvelectd = STALE_CLEAN_DUE;
                break;
        case STARTUP_KVNETD_CLEAN_SENT:
                st->kvnetd = STALE_CLEAN_RUNNING;
                break;
        case STARTUP_KVNETD_CLEAN_FAILED:
                if (st->kvnetd == STALE_CLEAN_RUNNING)
                        st->kvnetd = STALE_CLEAN_FAILED;
                break;
        case STARTUP_KVNETD_CLEAN_DONE:
                if (st->kvnetd == STALE_CLEAN_RUNNING)
                        st->kvnetd = STALE_CLEAN_DONE;
                break;
        case STARTUP_KVELECTD_CLEAN_SENT:
                st->kvelectd = STALE_CLEAN_DONE;
                break;
        default:
                return;
        }
        if (st->phase >= KVPD_PHASE_CLEANING)
                st->phase = st->kvnetd == STALE_CLEAN_DONE && st->kvelectd == STALE_CLEAN_DONE
                                    ? KVPD_PHASE_RUNNING
                                    : KVPD_PHASE_CLEANING;
}

unsigned plan_startup(const Startup *st, const StartupFacts *f)
{
        unsigned actions = 0;

        if (f->stopping || st->phase < KVPD_PHASE_CLEANING)
                return 0;
        if (f->kvnetd_connected && st->kvnetd == STALE_CLEAN_DUE && !f->campaigns_pending)
                actions |= STARTUP_ACTION_CLEAN_KVNETD;
        if (f->kvelectd_connected && st->kvelectd == STALE_CLEAN_DUE && st->kvnetd == STALE_CLEAN_DONE)
                actions |= STARTUP_ACTION_CLEAN_KVELECTD;
        return actions;
}

bool plan_leading(const ServiceFacts *f)
{
        return !f->stopping && f->leading && f->desired && f->desired->state == EGRESS_READY;
}

uint64_t plan_grant_deadline(uint64_t lease_deadline_usec, uint64_t margin_usec, uint64_t now_usec)
{
        if (lease_deadline_usec <= margin_usec)
                return 0;
        /* kvnetd refuses grants past its own bound. */
        return MIN(lease_deadline_usec - margin_usec, now_usec + KVNETD_MAX_GRANT_USEC);
}

bool plan_stale_keep(const ServiceFacts *f)
{
        if (!f)
                return false;
        return f->programmed || f->net_inflight ||
               (f->campaigning && (f->campaign_unanswered || f->leading || !f->held_elsewhere));
}

NetPlan plan_net(const ServiceFacts *f)
{
        uint64_t deadline;

        if (!plan_leading(f))
                return (NetPlan){
                        .action = f->programmed || f->net_inflight ||
                                                  (f->net_unknown && f->kvnetd_connected && !f->removing)
                                          ? NET_ACTION_REMOVE
                                          : NET_ACTION_NONE,
                        .clear_errors = true,
                };
        if (!f->kvnetd_connected)
                return (NetPlan){.action = NET_ACTION_WAIT_CONNECTED};
        if (f->programmed && !f->net_failed && egress_policy_net_equal(f->programmed, f->desired))
                return (NetPlan){.action = NET_ACTION_NONE};
        deadline = plan_grant_deadline(f->lease_deadline_usec, f->grant_margin_usec, f->now_usec);
        if (deadline <= f->now_usec)
                return (NetPlan){.action = NET_ACTION_WAIT_RENEWAL};
        return (NetPlan){.action = NET_ACTION_PROGRAM, .grant_deadline_usec = deadline};
}

static bool vips_contain(const EgressPolicy *p, const IpAddr *a)
{
        for (size_t i = 0; i < p->n_vips; i++)
                if (ip_addr_equal(&p->vips[i], a))
                        return true;
        return false;
}

/* The SetEgress moves a family's SNAT from one VIP to another. */
static bool snat_moves(const EgressPolicy *from, const EgressPolicy *to)
{
        return (from->has_vip4 && to->has_vip4 && !ip_addr_equal(&from->vip4, &to->vip4)) ||
               (from->has_vip6 && to->has_vip6 && !ip_addr_equal(&from->vip6, &to->vip6));
}

size_t plan_batch(const EgressPolicy *programmed, const char *programmed_ifname, bool switching,
                  const EgressPolicy *desired, const char *ifname, NetStep *steps)
{
        bool moved = programmed && !streq_ptr(programmed_ifname, ifname);
        size_t n = 0;

        if (moved)
                for (size_t i = 0; i < programmed->n_vips; i++)
                        steps[n++] = (NetStep){.kind = NET_STEP_RELEASE_VIP, .vip = programmed->vips[i]};
        for (size_t i = 0; i < desired->n_vips; i++)
                steps[n++] = (NetStep){.kind = NET_STEP_GRANT_VIP, .vip = desired->vips[i]};
        if (programmed && !moved && (switching || snat_moves(programmed, desired)))
                steps[n++] = (NetStep){.kind = NET_STEP_WAIT_GRANTS};
        steps[n++] = (NetStep){.kind = NET_STEP_SET_EGRESS};
        if (programmed && !moved)
                for (size_t i = 0; i < programmed->n_vips; i++)
                        if (!vips_contain(desired, &programmed->vips[i]))
                                steps[n++] =
                                        (NetStep){.kind = NET_STEP_RELEASE_VIP, .vip = programmed->vips[i]};
        return n;
}

NetPlan plan_renew(const ServiceFacts *f)
{
        uint64_t deadline;

        if (!f->programmed || !plan_leading(f) || f->net_failed)
                return (NetPlan){.action = NET_ACTION_NONE};
        deadline = plan_grant_deadline(f->lease_deadline_usec, f->grant_margin_usec, f->now_usec);
        if (deadline <= f->now_usec)
                return (NetPlan){.action = NET_ACTION_NONE};
        return (NetPlan){.action = NET_ACTION_RENEW, .grant_deadline_usec = deadline};
}

unsigned plan_elect(const ServiceFacts *f)
{
        bool want = !f->stopping && f->desired && f->desired->state == EGRESS_READY;
        bool campaigning = f->campaigning;
        unsigned actions = 0;

        if (campaigning && (!want || !f->campaign_matches)) {
                /* The lease goes only once kvnetd confirmed the VIPs gone:
                 * released, it is taken by another node at once. */
                if (f->removing || f->net_unknown)
                        return ELECT_ACTION_WAIT_REMOVAL;
                actions |= ELECT_ACTION_WITHDRAW;
                campaigning = false;
        }
        if (want && !campaigning)
                actions |= ELECT_ACTION_CAMPAIGN;
        return actions;
}

StatusAction plan_status(const ServiceFacts *f)
{
        bool leading = plan_leading(f);

        if (!f->status_cached || f->status_in_flight || f->stopping)
                return STATUS_ACTION_NONE;
        if (leading && f->net_confirmed)
                return STATUS_ACTION_HOLD;
        if (f->campaign_unanswered || (leading && !f->net_failed))
                return STATUS_ACTION_WAIT;
        return STATUS_ACTION_RELEASE;
}

static const char *const stop_phase_table[_STOP_PHASE_MAX] = {
        [STOP_PHASE_RUNNING] = "running",
        [STOP_PHASE_RELEASING] = "releasing",
        [STOP_PHASE_WITHDRAWING] = "withdrawing",
        [STOP_PHASE_DONE] = "done",
};

DEFINE_STRING_TABLE_TO_STRING(stop_phase_to_string, StopPhase, stop_phase_table);

StopPlan plan_stop(const StopFacts *f)
{
        StopPlan none = {.phase = f->phase};

        if (f->phase == STOP_PHASE_DONE)
                return none;
        if (f->phase == STOP_PHASE_RUNNING) {
                if (!f->requested)
                        return none;
                return (StopPlan){
                        .phase = STOP_PHASE_RELEASING,
                        .actions =
                                (f->api_client ? STOP_ACTION_CLEAR_STATUS : 0) | STOP_ACTION_REMOVE_SERVICES,
                };
        }
        if (f->timed_out)
                return (StopPlan){.phase = STOP_PHASE_DONE, .actions = STOP_ACTION_EXIT};
        if (f->calls_pending)
                return none;
        if (f->phase == STOP_PHASE_RELEASING)
                return (StopPlan){.phase = STOP_PHASE_WITHDRAWING, .actions = STOP_ACTION_WITHDRAW};
        return (StopPlan){.phase = STOP_PHASE_DONE, .actions = STOP_ACTION_EXIT};
}
