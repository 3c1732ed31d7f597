/* SPDX-License-Identifier: Apache-2.0 */
/* The loop that runs the planner. Whatever happens (a reconciliation, a
 * reply, a signal, a connection) ends here, reported through the table
 * the others are given (controller_reports, reports.h): the facts are
 * gathered, the planner (plan.c) decides, and the adapters act. The
 * adapters never call each other, nor this file: kvnetd first, so a
 * Service that stops being served sends RemoveService before its lease is
 * let go, and the status last, once kvnetd's answer is in. */
#include <strings.h>

#include "cache.h"
#include "clock.h"
#include "controller.h"
#include "elect.h"
#include "log.h"
#include "net.h"
#include "reconcile.h"
#include "service.h"
#include "status.h"

static ServiceFacts service_facts(Service *s)
{
        Manager *m = s->manager;
        const Lease *l = s->lease;
        const EgressPolicy *p = s->policy;

        return (ServiceFacts){
                .desired = p,
                .stopping = m->stopping,
                .campaigning = l,
                .campaign_matches = l && p && streq_ptr(l->namespace, p->lease_namespace) &&
                                    streq_ptr(l->name, p->lease_name),
                .campaign_unanswered = l && l->campaign_slot,
                .leading = l && l->leading,
                /* kvelectd lowercases the holder's name */
                .held_elsewhere =
                        l && !isempty(l->holder) && strcasecmp(l->holder, m->config.node_name) != 0,
                .lease_deadline_usec = l ? l->deadline_usec : 0,
                .kvnetd_connected = bus_client_get(m->kvnetd),
                .programmed = s->programmed,
                .net_inflight = s->net_inflight > 0,
                .net_failed = s->net_failed,
                .net_confirmed = s->net_confirmed,
                .removing = s->removing,
                .net_unknown = s->net_unknown,
                .status_cached = cache_service_item(m, s->namespace, s->name),
                .status_in_flight = s->status_request,
                .now_usec = now_usec(),
                .grant_margin_usec = m->config.grant_margin_usec,
        };
}

static void advance(Manager *m)
{
        StartupFacts f = {
                .stopping = m->stopping,
                .kvnetd_connected = bus_client_get(m->kvnetd),
                .kvelectd_connected = bus_client_get(m->kvelectd),
                .campaigns_pending = m->n_campaigns_pending > 0,
        };
        unsigned actions = plan_startup(&m->startup, &f);

        /* kvnetd's first: its outcome is an event that may make kvelectd's
         * due (it comes back through startup_event). */
        if (actions & STARTUP_ACTION_CLEAN_KVNETD)
                net_clean_stale(m);
        else if (actions & STARTUP_ACTION_CLEAN_KVELECTD)
                elect_clean_stale(m);
}

static void startup_event(Manager *m, StartupEvent e)
{
        KvpdPhase was = m->startup.phase;

        startup_apply(&m->startup, e);
        if (m->startup.phase != was)
                log_debug("start-up: %s -> %s (%s)", kvpd_phase_to_string(was),
                          kvpd_phase_to_string(m->startup.phase), startup_event_to_string(e));
        advance(m);
}

/* Each asks the planner with fresh facts: the adapter before may have
 * changed them (a batch sent, RemoveService in flight). */
static void run_net(Service *s)
{
        ServiceFacts f = service_facts(s);
        NetPlan p = plan_net(&f);

        net_apply(s, &p, f.now_usec);
}

static void run_renew(Service *s)
{
        ServiceFacts f = service_facts(s);
        NetPlan p = plan_renew(&f);

        net_renew(s, &p);
}

static void run_elect(Service *s)
{
        ServiceFacts f = service_facts(s);

        elect_apply(s, plan_elect(&f));
}

static void run_status(Service *s)
{
        ServiceFacts f = service_facts(s);

        status_apply(s, plan_status(&f));
}

static void service_changed(Service *s)
{
        run_net(s);
        run_elect(s);
        run_status(s);
}

static void lease_changed(Lease *l, bool was_leading)
{
        for (size_t i = 0; i < l->n_services; i++) {
                Service *s = l->services[i];

                /* Still leading (a restarted kvelectd renewed the Lease):
                 * only the grant's deadline moves. */
                if (was_leading && l->leading && s->programmed)
                        run_renew(s);
                else
                        run_net(s);
                run_status(s);
        }
}

static void lease_renewed(Lease *l)
{
        for (size_t i = 0; i < l->n_services; i++) {
                Service *s = l->services[i];
                ServiceFacts f = service_facts(s);
                NetPlan p = plan_net(&f);

                /* A grant put off because the deadline was too close
                 * (NET_ACTION_WAIT_RENEWAL: kvpd learnt of its leadership
                 * late) is made now with the renewed deadline; nothing else
                 * would make it while the leadership lasts. A refused one
                 * waits for its retry. Otherwise only the deadline moves. */
                if (p.action == NET_ACTION_PROGRAM && !f.net_failed)
                        net_apply(s, &p, f.now_usec);
                else
                        run_renew(s);
        }
}

static void net_removed(Service *s)
{
        run_elect(s);
}

static void net_confirmed(Service *s)
{
        run_status(s);
}

static void net_expired(Service *s)
{
        ServiceFacts f = service_facts(s);

        log_warning("kvnetd: the grant of %s expired before a renewal reached it%s", s->key,
                    plan_leading(&f) ? "; granting again" : "");
        run_net(s);
        run_status(s);
}

static void net_retry(Service *s)
{
        run_net(s);
}

static bool net_stale_keep(Manager *m, const char *key)
{
        Service *s = service_get(m, key);
        ServiceFacts f;

        if (!s)
                return plan_stale_keep(NULL);
        f = service_facts(s);
        return plan_stale_keep(&f);
}

static void net_connected(Manager *m)
{
        for (size_t i = 0; i < m->n_services; i++)
                run_net(m->services[i]);
        startup_event(m, STARTUP_KVNETD_CONNECTED);
}

static void refused(Service *s, const char *why)
{
        if (s->policy)
                status_event(s, "Warning", "EgressFailed", "%s", why);
}

static void status_written(Service *s)
{
        if (!s->manager->stopping)
                reconcile_mark(s->manager, s->namespace, s->name);
}

/* The stop sequence: ask plan_stop() until it has nothing more to do now
 * (an action may send no call, and then the next phase is due at once). */
static void run_stop(Manager *m)
{
        for (;;) {
                StopFacts f = {
                        .phase = m->stop_phase,
                        .requested = m->stopping,
                        .calls_pending = m->stop_pending > 0,
                        .api_client = m->kube,
                        .timed_out = m->stop_timed_out,
                };
                StopPlan p = plan_stop(&f);

                if (p.phase == m->stop_phase && p.actions == 0)
                        return;
                if (p.phase != m->stop_phase)
                        log_debug("stop: %s -> %s", stop_phase_to_string(m->stop_phase),
                                  stop_phase_to_string(p.phase));
                m->stop_phase = p.phase;
                if (p.actions & STOP_ACTION_CLEAR_STATUS)
                        status_clear_all(m);
                if (p.actions & STOP_ACTION_REMOVE_SERVICES)
                        net_release_all(m);
                if (p.actions & STOP_ACTION_WITHDRAW)
                        elect_release_all(m);
                if (p.actions & STOP_ACTION_EXIT) {
                        (void)sd_event_exit(m->event, 0);
                        return;
                }
        }
}

static void stop_call_done(Manager *m)
{
        if (m->stop_pending > 0)
                m->stop_pending--;
        run_stop(m);
}

static int on_stop_timeout(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        (void)es;
        (void)usec;

        log_warning("clean-up at stop did not finish in time (%u calls outstanding); exiting anyway",
                    m->stop_pending);
        m->stop_timed_out = true;
        run_stop(m);
        return 0;
}

int controller_stop(Manager *m)
{
        int r;

        if (m->stopping)
                return 0;
        log_info("stopping: removing egress, clearing status, withdrawing from leases");
        m->stopping = true;
        r = sd_event_add_time_relative(m->event, &m->stop_timeout_source, CLOCK_MONOTONIC,
                                       m->config.stop_timeout_usec, 0, on_stop_timeout, m);
        if (r < 0)
                return sd_event_exit(m->event, 0);
        run_stop(m);
        return 0;
}

const KvpdReports controller_reports = {
        .startup_event = startup_event,
        .startup_facts_changed = advance,
        .service_changed = service_changed,
        .lease_changed = lease_changed,
        .lease_renewed = lease_renewed,
        .net_connected = net_connected,
        .net_confirmed = net_confirmed,
        .net_removed = net_removed,
        .net_expired = net_expired,
        .net_retry = net_retry,
        .net_stale_keep = net_stale_keep,
        .status_written = status_written,
        .refused = refused,
        .stop_call_done = stop_call_done,
};
