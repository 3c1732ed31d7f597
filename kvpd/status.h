/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The Service's adapter: plan_status()'s actions to merge patches of the
 * annotations and status.loadBalancer.ingress, and Events. A write's answer
 * goes back to the loop (controller.h). Never calls another adapter. */

#include "macros.h"
#include "manager.h"

/* What plan_status() said: write, clear, or nothing. */
void status_apply(Service *s, StatusAction action);
/* SIGTERM, while this node still holds its leases: clear what it wrote. */
void status_clear_all(Manager *m);
/* An Event on the Service (aggregated by kube_event_emit). */
void status_event(Service *s, const char *type, const char *reason, const char *fmt, ...) _printf_(4, 5);
