/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvelectd's adapter (io.kvegress.Elect1): plan_elect()'s actions to
 * Campaign and Withdraw, shared Leases, and leadership (LeadershipChanged,
 * Renewed, carried across a kvelectd restart) back to facts on the Lease,
 * reported to the loop (controller.h). Never calls another adapter. */

#include "manager.h"

int elect_start(Manager *m);
/* What plan_elect() said (ElectAction bits): campaign, withdraw. */
void elect_apply(Service *s, unsigned actions);
/* SIGTERM, once kvnetd and the status are done: Withdraw every lease. */
void elect_release_all(Manager *m);
/* Withdraw the campaigns kvelectd has that kvpd does not want (a Service
 * deleted while kvpd was down). The planner says when (plan_startup). */
void elect_clean_stale(Manager *m);
