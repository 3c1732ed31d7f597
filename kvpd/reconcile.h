/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The queue of dirty Services and the bounded rounds that compute their
 * desired state from the caches (egress-policy.c) and report it to the
 * loop (Manager.reports). */

#include "manager.h"

void reconcile_mark(Manager *m, const char *namespace, const char *name);
/* Marks only if kvpd tracks the Service or its cached object may be an
 * egress Service: a change to any other Service costs a hash lookup. */
void reconcile_mark_if_relevant(Manager *m, const char *namespace, const char *name);
/* Every tracked Service (a cluster-network change concerns no other). */
void reconcile_mark_all(Manager *m);
/* And every cached Service that may be an egress one (after the first sync). */
void reconcile_mark_cached(Manager *m);
void reconcile_mark_cidrs(Manager *m);
