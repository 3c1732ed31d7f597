/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the informer side (watch.c, reconcile.c) and the adapters (net.c,
 * elect.c, status.c) report to the loop, and the one question they ask it.
 * They are given this table (Manager.reports, filled in by controller.c)
 * and never name the loop's functions, so calls go one way: the loop calls
 * the planner and the adapters, the adapters call back through here
 * (tests/kvpd/check-call-cycles.py fails on any file-level call cycle). */

#include <stdbool.h>

#include "plan.h"

typedef struct Manager Manager;
typedef struct Service Service;
typedef struct Lease Lease;

typedef struct KvpdReports {
        /* Start-up (plan_startup): an event happened (watch.c: synced,
         * reconcile.c: first round done, the adapters: connections and
         * their clean-ups). */
        void (*startup_event)(Manager *m, StartupEvent e);
        /* A fact the start-up depends on may have changed (a campaign
         * answered or dropped): start the clean-up that is due now. */
        void (*startup_facts_changed)(Manager *m);

        /* reconcile.c: the Service's desired state was recomputed. */
        void (*service_changed)(Service *s);

        /* elect.c: the lease's leadership became known or changed (a
         * Campaign answered or refused, the carried deadline passed,
         * LeadershipChanged). */
        void (*lease_changed)(Lease *l, bool was_leading);
        /* elect.c: kvelectd renewed the lease. */
        void (*lease_renewed)(Lease *l);

        /* net.c: kvnetd connected: every Service is sent again. */
        void (*net_connected)(Manager *m);
        /* net.c: kvnetd accepted every call of the Service's batch. */
        void (*net_confirmed)(Service *s);
        /* net.c: RemoveService answered (or never will be): the lease may go. */
        void (*net_removed)(Service *s);
        /* net.c: kvnetd dropped the Service's VIPs itself (GrantExpired). */
        void (*net_expired)(Service *s);
        /* net.c: kvnetd's refusal is retried (the resync timer). */
        void (*net_retry)(Service *s);
        /* net.c asks: does kvnetd's stale-state clean-up leave the Service
         * of this key alone (plan_stale_keep)? */
        bool (*net_stale_keep)(Manager *m, const char *key);

        /* status.c: a status write was answered (or its retry is due). */
        void (*status_written)(Service *s);

        /* Any adapter: a daemon refused what the Service needs, and that is
         * news (an Event). */
        void (*refused)(Service *s, const char *why);
        /* Any adapter: one call of the stop sequence was answered (or
         * failed); Manager.stop_pending counts them. */
        void (*stop_call_done)(Manager *m);
} KvpdReports;
