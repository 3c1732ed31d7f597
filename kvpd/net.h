/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvnetd's adapter (io.kvegress.Net1): plan_net()'s actions to calls, and
 * kvnetd's replies and GrantExpired back to facts on the Service, reported
 * to the loop (controller.h). Never calls another adapter. */

#include "manager.h"

int net_start(Manager *m);
/* What plan_net() said: a new batch (the interface resolved here), or
 * RemoveService, or nothing. */
void net_apply(Service *s, const NetPlan *plan, uint64_t now_usec);
/* What plan_renew() said: RenewGrant, or nothing. */
void net_renew(Service *s, const NetPlan *plan);
/* Remove what kvnetd holds that kvpd does not program. The planner says
 * when (plan_startup); the outcome is a start-up event. */
void net_clean_stale(Manager *m);
/* SIGTERM: RemoveService for every Service kvnetd may hold. */
void net_release_all(Manager *m);
