/* SPDX-License-Identifier: Apache-2.0 */
/* The loop that runs the planner. Whatever happens (a reconciliation, a
 * reply, a signal, a connection) ends here: the facts are gathered, the
 * planner (plan.c) decides, and the adapters act. The adapters never call
 * each other: kvnetd first, so a Service that stops being served sends
 * RemoveService before its lease is let go, and the status last, once
 * kvnetd's answer is in. */
#include <strings.h>

#include "cache.h"
#include "clock.h"
#include "controller.h"
#include "elect.h"
#include "log.h"
#include "net.h"
#include "reconcile.h"
#include "status.h"

ServiceFacts controller_service_facts(Service *s)
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

void controller_advance(Manager *m)
{
        StartupFacts f = {
                .stopping = m->stopping,
                .kvnetd_connected = bus_client_get(m->kvnetd),
                .kvelectd_connected = bus_client_get(m->kvelectd),
                .campaigns_pending = m->n_campaigns_pending > 0,
        };
        unsigned actions = plan_startup(&m->startup, &f);

        /* kvnetd's first: its outcome is an event that may make kvelectd's
         * due (it comes back through controller_startup_event). */
        if (actions & STARTUP_ACTION_CLEAN_KVNETD)
                net_clean_stale(m);
        else if (actions & STARTUP_ACTION_CLEAN_KVELECTD)
                elect_clean_stale(m);
}

void controller_startup_event(Manager *m, StartupEvent e)
{
        KvpdPhase was = m->startup.phase;

        startup_apply(&m->startup, e);
        if (m->startup.phase != was)
                log_debug("start-up: %s -> %s (%s)", kvpd_phase_to_string(was),
                          kvpd_phase_to_string(m->startup.phase), startup_event_to_string(e));
        controller_advance(m);
}

/* Each asks the planner with fresh facts: the adapter before may have
 * changed them (a batch sent, RemoveService in flight). */
static void run_net(Service *s)
{
        ServiceFacts f = controller_service_facts(s);
        NetPlan p = plan_net(&f);

        net_apply(s, &p, f.now_usec);
}

static void run_renew(Service *s)
{
        ServiceFacts f = controller_service_facts(s);
        NetPlan p = plan_renew(&f);

        net_renew(s, &p);
}

static void run_elect(Service *s)
{
        ServiceFacts f = controller_service_facts(s);

        elect_apply(s, plan_elect(&f));
}

static void run_status(Service *s)
{
        ServiceFacts f = controller_service_facts(s);

        status_apply(s, plan_status(&f));
}

void controller_service_changed(Service *s)
{
        run_net(s);
        run_elect(s);
        run_status(s);
}

void controller_lease_changed(Lease *l, bool was_leading)
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

void controller_lease_renewed(Lease *l)
{
        for (size_t i = 0; i < l->n_services; i++) {
                Service *s = l->services[i];
                ServiceFacts f = controller_service_facts(s);
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

void controller_net_removed(Service *s)
{
        run_elect(s);
}

void controller_net_confirmed(Service *s)
{
        run_status(s);
}

void controller_net_expired(Service *s)
{
        run_net(s);
        run_status(s);
}

void controller_net_retry(Service *s)
{
        run_net(s);
}

void controller_net_connected(Manager *m)
{
        for (size_t i = 0; i < m->n_services; i++)
                run_net(m->services[i]);
        controller_startup_event(m, STARTUP_KVNETD_CONNECTED);
}

void controller_refused(Service *s, const char *why)
{
        if (s->policy)
                status_event(s, "Warning", "EgressFailed", "%s", why);
}

void controller_status_written(Service *s)
{
        if (!s->manager->stopping)
                reconcile_mark(s->manager, s->namespace, s->name);
}
