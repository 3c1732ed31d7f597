/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The loop that runs the planner: it gathers the facts (plan.h), asks the
 * planner and hands the actions to the adapters (net.h, elect.h, status.h).
 * The adapters and the informer side report through the table they are
 * given (reports.h), never by naming a function of this file. */

#include "manager.h"

/* What manager.c gives the others as Manager.reports. */
extern const KvpdReports controller_reports;

/* SIGTERM: the stop sequence (plan_stop), bounded by stop_timeout_usec. */
int controller_stop(Manager *m);
