/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The conntrack worker: one thread that deletes the conntrack entries of
 * the pods whose SNAT changed, so that the event loop (which serves
 * RenewGrant and runs the fence) never waits on conntrack, however large the
 * node's table. The loop hands it copies of pod addresses through a bounded,
 * coalescing queue (a set: an address queued twice is deleted once) and
 * hears back through an eventfd. The thread touches nothing of the Manager:
 * only the queue (under the lock) and its own netlink sockets. */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "macros.h"
#include "podmap.h"

/* Addresses waiting for the worker; more wait in the Manager's own set
 * (manager.c) until the worker has room. */
#define CT_WORKER_QUEUE_MAX 4096

typedef struct CtWorker CtWorker;

/* On the event loop, after each pass: entries deleted since the last call,
 * and the error of a failed pass (0 if none). */
typedef void (*CtWorkerDoneFn)(CtWorker *w, uint64_t deleted, int error, void *userdata);

/* Opens the sockets (CAP_NET_ADMIN) and starts the thread. */
int ct_worker_new(sd_event *event, CtWorkerDoneFn done, void *userdata, CtWorker **ret);
/* Aborts a pass under way (an unfinished dump is cheap to drop) and joins. */
CtWorker *ct_worker_free(CtWorker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtWorker *, ct_worker_free);

/* Moves addresses from *from to the queue, as many as fit (those already
 * queued merge); returns how many moved. Never waits for a pass. */
size_t ct_worker_take(CtWorker *w, PodMap *from);
/* Addresses queued or in the pass under way. */
size_t ct_worker_pending(CtWorker *w);
/* On exit: queues all of *from (no bound), lets the thread finish the queue
 * for up to timeout_usec, then aborts and joins it. Returns the number of
 * addresses left undone. */
size_t ct_worker_finish(CtWorker *w, PodMap *from, uint64_t timeout_usec);
