/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The loop that runs the planner: it gathers the facts (plan.h), asks the
 * planner and hands the actions to the adapters (net.h, elect.h, status.h).
 * The adapters report what they learn here, never to each other. */

#include "manager.h"

/* The facts the planner decides one Service from. */
ServiceFacts controller_service_facts(Service *s);

/* Start-up (plan_startup). An event happened: apply it, then start the
 * clean-up that is due now. */
void controller_startup_event(Manager *m, StartupEvent e);
/* Facts the start-up depends on may have changed (a campaign answered, a
 * connection gone): start the clean-up that is due now. */
void controller_advance(Manager *m);

/* The Service's desired state was recomputed (reconcile.c). */
void controller_service_changed(Service *s);
/* kvelectd: the lease's leadership became known or changed (a Campaign
 * answered or refused, the carried deadline passed, LeadershipChanged). */
void controller_lease_changed(Lease *l, bool was_leading);
/* kvelectd renewed the lease. */
void controller_lease_renewed(Lease *l);
/* kvnetd: RemoveService answered (or never will be): the lease may go. */
void controller_net_removed(Service *s);
/* kvnetd accepted every call of the Service's batch. */
void controller_net_confirmed(Service *s);
/* kvnetd dropped the Service's VIPs itself (GrantExpired). */
void controller_net_expired(Service *s);
/* kvnetd's refusal is retried (net.c's timer). */
void controller_net_retry(Service *s);
/* kvnetd connected: every Service is sent again. */
void controller_net_connected(Manager *m);
/* A daemon refused what the Service needs, and that is news: an Event. */
void controller_refused(Service *s, const char *why);
/* A status write was answered (or its retry is due): look again at the
 * newest object. */
void controller_status_written(Service *s);
