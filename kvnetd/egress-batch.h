/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* SetEgress requests coalesced into one nft transaction per event-loop
 * iteration. Each request is validated and diffed against the record when
 * it arrives, queued with its bus message, and answered only after the
 * transaction that carries it: a client never hears "done" before the
 * kernel holds it. The queue is flushed by a defer source that runs after
 * every request already received (so a cold replay of N Services costs a
 * few transactions, not N: each transaction costs the kernel a fixed
 * overhead, and one that creates or removes a class rewrites the base
 * chain), when it is full, and before anything that reads
 * or changes the egress record otherwise (manager_egress_flush()).
 *
 * The changes of one transaction share its class bookkeeping (a class two
 * services join is created once; one emptied is removed after the base
 * chain stops referring to it: egress-batch.c, ClassPlan).
 *
 * Queued changes never overlap: one per service, and no pod touched by two
 * (a request that would overlap flushes the queue first and is then diffed
 * again), so committing them together or one by one gives what committing
 * them in arrival order would. If the combined transaction fails, each
 * change is retried in a transaction of its own, so only the bad one fails
 * (manager.h: a failed change leaves neither the kernel nor the record
 * changed). */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "podmap.h"
#include "service.h"

/* Changes per transaction: bounds the time one commit holds the event
 * loop (renewals wait behind it) and the size of the netlink batch. */
#define EGRESS_BATCH_MAX 1024

typedef struct EgressChange EgressChange;

typedef struct EgressQueue {
        EgressChange *changes;
        size_t n, cap;
        PodMap pods;       /* every pod a queued change adds, removes or takes over */
        size_t pods_added; /* pods the queued changes add to the record's pod index */
        size_t pods_freed; /* and remove from it (or take over, already in it) */
        sd_event_source *source;
        uint64_t transactions, fallbacks; /* for the metrics and the benchmark */
} EgressQueue;

/* Queues policy (taken; NULL removes the egress) for s, to be answered on
 * msg after the commit. Returns 0 when queued, or a negative errno with
 * *ret_error for a refusal found by the diff (the caller answers that at
 * once). */
int egress_queue_set(Manager *m, Service *s, EgressPolicy *policy, sd_bus_message *msg, char **ret_error);
/* Commits every queued change now and answers each request. */
void manager_egress_flush(Manager *m);
/* One change now, without a bus message (fences, releases, the grace
 * period): flushes the queue first, so changes keep their order. */
int egress_apply_now(Manager *m, Service *s, EgressPolicy *policy, char **ret_error);
void egress_queue_done(Manager *m);
