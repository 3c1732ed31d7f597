/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One campaign for one Lease: client-go's leader election (tryAcquireOrRenew,
 * the renew loop, release on cancel) as a pure state machine. It reads no
 * clock and does no I/O: every input carries the time, and every output is
 * returned to the caller, which sends the requests (lease-io.c), arms the
 * timer and tells kvpd. That keeps the whole algorithm testable with fake
 * time (tests/kvelectd/test-election.c).
 *
 * Time: all decisions use CLOCK_MONOTONIC ("mono"). CLOCK_REALTIME ("real")
 * only fills the MicroTime fields written to the API, so a wall-clock jump
 * changes nothing but those strings.
 *
 * Differences from client-go, each on the safe side or for scale:
 *  - Renew validity is counted from when the successful request was sent,
 *    and every request made while leading has a timeout below the remaining
 *    renew deadline (kubernetes #44887).
 *  - A leader that learns from the API that someone else holds the lease
 *    stops leading at once instead of at the renew deadline.
 *  - When the Lease is watched (election_set_view(ELECTION_VIEW_WATCHED)),
 *    the watch replaces the GET of each attempt: a non-holder sends nothing
 *    while the holder renews, attempts when the record expires by local
 *    time, and attempts at once when the watch shows a released or deleted
 *    Lease, even with a GET in flight (the GET is cancelled: its answer may
 *    have been read before the change, and would undo it). Every write
 *    stays conditional on resourceVersion, so a stale watch costs a 409 and
 *    a GET, never safety.
 *
 * Invariant (tests/kvelectd/test-election.c checks it after every input):
 * a campaigning non-leader always has a wakeup, at most leaseDuration
 * away, so no sequence of inputs leaves it waiting for an event. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lease-record.h"
#include "macros.h"

typedef struct Election Election;

typedef struct ElectionTime {
        uint64_t mono; /* CLOCK_MONOTONIC, usec */
        uint64_t real; /* CLOCK_REALTIME, usec: only for the MicroTime fields */
} ElectionTime;

typedef struct ElectionConfig {
        const char *identity; /* copied */
        uint64_t lease_duration_usec;
        uint64_t renew_deadline_usec;
        uint64_t retry_period_usec;
        /* Uniform in [0, 1), for jitter. NULL: no jitter. */
        double (*random)(void *userdata);
        void *random_userdata;
} ElectionConfig;

/* client-go's JitterFactor: acquisition retries wait retryPeriod * [1, 2.2). */
#define ELECTION_JITTER_FACTOR 1.2
/* A request with less time than this left is not worth sending. */
#define ELECTION_MIN_TIMEOUT_USEC (10 * USEC_PER_MSEC)
/* If the transport never answers, the machine gives up on a request this
 * long after its timeout. */
#define ELECTION_REQUEST_GRACE_USEC (1 * USEC_PER_SEC)

typedef enum ElectionRequestType {
        ELECTION_REQUEST_NONE,
        ELECTION_REQUEST_GET,
        ELECTION_REQUEST_CREATE, /* POST to the collection */
        ELECTION_REQUEST_UPDATE, /* PUT, conditional on the body's resourceVersion */
        _ELECTION_REQUEST_MAX,
        _ELECTION_REQUEST_INVALID = -EINVAL,
} ElectionRequestType;

const char *election_request_type_to_string(ElectionRequestType t);

typedef struct ElectionRequest {
        ElectionRequestType type;
        uint64_t id;  /* pass back in ElectionResponse.id */
        json_t *body; /* CREATE/UPDATE; owned by the ElectionOutput */
        uint64_t timeout_usec;
        /* When it is needed (CLOCK_MONOTONIC usec), to order it among
         * requests waiting for the transport: a leader's renewal by its
         * deadline; anything else (an acquisition, a release) as if it were
         * a renewal with half its validity left, so that it waits at most
         * for the renewals that are due before that, each once, and the
         * renewals that could wait longer do. */
        uint64_t priority_usec;
        /* Taking a Lease this node does not hold (not a renewal, not a
         * release, not the first write of a restarted holder): the
         * transport may refuse it while renewals wait (lease-io.c), and the
         * election then tries again a retryPeriod later. */
        bool acquisition;
} ElectionRequest;

typedef enum ElectionEvent {
        ELECTION_EVENT_LEADING = 1 << 0, /* leadership gained or lost */
        ELECTION_EVENT_RENEWED = 1 << 1, /* still leading, deadline moved */
        ELECTION_EVENT_HOLDER = 1 << 2,  /* the observed holder changed */
        ELECTION_EVENT_DONE = 1 << 3,    /* withdrawn and released: free it */
} ElectionEvent;

typedef struct ElectionOutput {
        unsigned events;
        /* Cancel the request in flight (its completion would be ignored). */
        bool cancel;
        /* Send this (type NONE: nothing to send). */
        ElectionRequest request;
} ElectionOutput;

void election_output_done(ElectionOutput *o);

typedef struct ElectionResponse {
        uint64_t id;
        int error;          /* negative errno for transport failures */
        long http_status;   /* when error == 0 */
        json_t *object;     /* the Lease in a 2xx answer; borrowed */
        uint64_t sent_usec; /* CLOCK_MONOTONIC send time; 0 = unknown */
} ElectionResponse;

typedef enum ElectionView {
        ELECTION_VIEW_NONE,    /* no watch: poll with GET like client-go */
        ELECTION_VIEW_PENDING, /* a watch is starting: wait for it up to retryPeriod */
        ELECTION_VIEW_WATCHED, /* the watch is synced: trust election_observe() */
        _ELECTION_VIEW_MAX,
        _ELECTION_VIEW_INVALID = -EINVAL,
} ElectionView;

int election_new(const ElectionConfig *config, const char *namespace, const char *name, Election **ret);
Election *election_free(Election *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(Election *, election_free);

/* Inputs. Each fills *out (zero it first, election_output_done() after). They
 * return 0, or -ENOMEM when a body could not be built; the attempt then
 * counts as failed and is retried later, so the state stays consistent. */
int election_campaign(Election *e, ElectionTime now, ElectionOutput *out);
int election_withdraw(Election *e, ElectionTime now, ElectionOutput *out);
/* The watch's current state of the Lease; lease NULL means absent. */
int election_observe(Election *e, ElectionTime now, json_t *lease, ElectionOutput *out);
/* How the caller keeps the view fresh. With ELECTION_VIEW_WATCHED, lease is
 * the synced watch cache's copy (NULL: absent); call it once the watch has
 * synced, and election_observe() for every change after. */
int election_set_view(Election *e, ElectionTime now, ElectionView view, json_t *lease, ElectionOutput *out);
int election_complete(Election *e, ElectionTime now, const ElectionResponse *resp, ElectionOutput *out);
/* Call at election_next_wakeup() (earlier or later is harmless). */
int election_timer(Election *e, ElectionTime now, ElectionOutput *out);
/* The transport has room again for an acquisition it refused: try now
 * rather than a retryPeriod after the refusal. A no-op unless an attempt
 * is waiting. */
int election_admit(Election *e, ElectionTime now, ElectionOutput *out);

/* CLOCK_MONOTONIC usec of the next election_timer() call; UINT64_MAX for none. */
uint64_t election_next_wakeup(const Election *e);

const char *election_namespace(const Election *e);
const char *election_name(const Election *e);
bool election_is_campaigning(const Election *e);
bool election_is_leading(const Election *e);
/* When leadership ends unless renewed (send time of the last successful
 * write + renewDeadline); 0 when not leading. */
uint64_t election_deadline(const Election *e);
/* The observed holderIdentity ("" if none or not yet observed). */
const char *election_holder(const Election *e);
/* The observed record and when it last changed (tests, debugging). */
const LeaseRecord *election_observed(const Election *e, uint64_t *ret_observed_time);
