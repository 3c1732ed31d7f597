/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The table of Services kvpd tracks and what it records on each: no I/O,
 * no calls into the adapters, so every file may use it. */

#include "manager.h"

Service *service_get(Manager *m, const char *key);
int service_ensure(Manager *m, const char *namespace, const char *name, Service **ret);
Service *service_free(Service *s);
/* Forget a Service kvpd holds no state for any more (out of the table and
 * its lease's list; not queued for reconciliation). */
void service_drop(Service *s);
/* The Service no longer counts in the lease's list. */
void lease_drop_service(Lease *l, Service *s);
/* Records msg as s's standing error from the daemon named from (kvctl
 * shows it). Returns true when it is news (no error stood, or another one
 * did): the caller reports news once (an Event), not every retry. */
bool service_error_set(Service *s, const char *from, const char *msg);
/* The error from that daemon no longer stands (kept as "last error"). */
void service_error_clear(Service *s, const char *from);
/* kvnetd confirmed the batch started at s->batch_change_usec: observed in
 * kvegress_change_to_snat_seconds. */
void service_note_confirmed(Service *s);
