/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvelectd/election.c with fake time and a fake API server: the
 * state machine is driven by explicit clocks and request completions only,
 * so every timing rule of client-go's algorithm is checked exactly here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "election.h"
#include "kube-objects.h"
#include "lease-record.h"
#include "netaddr.h"

#define S USEC_PER_SEC
#define MS USEC_PER_MSEC
#define LD (15 * S)
#define RD (10 * S)
#define RP (2 * S)
/* 2025-05-12T08:14:05.512334Z */
#define REAL0 1747037645512334ULL

/* A fake apiserver holding one Lease, conditional on resourceVersion. */
typedef struct FakeServer {
        json_t *lease; /* NULL: absent */
        unsigned rv;
        unsigned n_get, n_create, n_update;
} FakeServer;

typedef struct Fixture {
        Election *e;
        ElectionTime now;
        unsigned events;     /* accumulated since the last reset */
        ElectionRequest req; /* pending, body owned here */
        unsigned cancels;
        FakeServer srv;
        double jitter;
} Fixture;

static double fixed_random(void *userdata)
{
        Fixture *f = userdata;
        return f->jitter;
}

static void fixture_init(Fixture *f, const char *identity)
{
        ElectionConfig c = {
                .identity = identity,
                .lease_duration_usec = LD,
                .renew_deadline_usec = RD,
                .retry_period_usec = RP,
                .random = fixed_random,
                .random_userdata = f,
        };

        *f = (Fixture){.now = {.mono = 1000 * S, .real = REAL0}};
        ck_assert_int_eq(election_new(&c, "default", "kubevip-egress-demo", &f->e), 0);
}

static void fixture_done(Fixture *f)
{
        election_free(f->e);
        json_decref(f->req.body);
        json_decref(f->srv.lease);
}

static void take(Fixture *f, ElectionOutput *out, int r)
{
        ck_assert_int_ge(r, 0);
        f->events |= out->events;
        if (out->cancel) {
                f->cancels++;
                json_decref(f->req.body);
                f->req = (ElectionRequest){};
        }
        if (out->request.type != ELECTION_REQUEST_NONE) {
                ck_assert_msg(f->req.type == ELECTION_REQUEST_NONE, "two requests in flight");
                f->req = out->request;
                out->request.body = NULL;
        }
        election_output_done(out);
}

static void advance(Fixture *f, uint64_t usec)
{
        f->now.mono += usec;
        f->now.real += usec;
}

/* Runs the timer at its wakeup time (moving the clocks there). */
static void fire(Fixture *f)
{
        ElectionOutput out = {};
        uint64_t t = election_next_wakeup(f->e);

        ck_assert(t != UINT64_MAX);
        if (t > f->now.mono)
                advance(f, t - f->now.mono);
        take(f, &out, election_timer(f->e, f->now, &out));
}

static void campaign(Fixture *f)
{
        ElectionOutput out = {};
        take(f, &out, election_campaign(f->e, f->now, &out));
}

static void withdraw(Fixture *f)
{
        ElectionOutput out = {};
        take(f, &out, election_withdraw(f->e, f->now, &out));
}

static void observe(Fixture *f, json_t *lease)
{
        ElectionOutput out = {};
        take(f, &out, election_observe(f->e, f->now, lease, &out));
}

static void set_watched(Fixture *f, json_t *lease)
{
        ElectionOutput out = {};
        take(f, &out, election_set_view(f->e, f->now, ELECTION_VIEW_WATCHED, lease, &out));
}

static json_t *make_lease(const char *holder, int dur, const char *acquire, const char *renew,
                          int transitions, unsigned rv)
{
        char rvs[32];

        snprintf(rvs, sizeof(rvs), "%u", rv);
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i}}", "kind", "Lease",
                         "apiVersion", "coordination.k8s.io/v1", "metadata", "name", "kubevip-egress-demo",
                         "namespace", "default", "uid", "3c4d5e6f", "resourceVersion", rvs, "spec",
                         "holderIdentity", holder, "leaseDurationSeconds", dur, "acquireTime", acquire,
                         "renewTime", renew, "leaseTransitions", transitions);
}

static void server_store(FakeServer *srv, json_t *lease)
{
        char rvs[32];

        snprintf(rvs, sizeof(rvs), "%u", ++srv->rv);
        json_object_set_new(json_object_get(lease, "metadata"), "resourceVersion", json_string(rvs));
        json_decref(srv->lease);
        srv->lease = lease;
}

/* Another client (kube-vip, kubectl) writes the Lease; returns a new
 * reference to what is stored. */
static json_t *server_put_foreign(Fixture *f, const char *holder, int dur, const char *renew,
                                  int transitions)
{
        json_t *l = make_lease(holder, dur, "2025-05-12T08:14:05.512334Z", renew, transitions, 0);
        server_store(&f->srv, l);
        return json_incref(l);
}

static const char *rv_of(json_t *lease)
{
        return json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));
}

static json_t *spec_of(json_t *lease)
{
        return json_object_get(lease, "spec");
}

static const char *holder_of(json_t *lease)
{
        return json_string_value(json_object_get(spec_of(lease), "holderIdentity"));
}

static int int_of(json_t *lease, const char *key)
{
        return (int)json_integer_value(json_object_get(spec_of(lease), key));
}

static const char *str_of(json_t *lease, const char *key)
{
        return json_string_value(json_object_get(spec_of(lease), key));
}

/* Completes the pending request with a given outcome. */
static void complete(Fixture *f, int error, long status, json_t *object, uint64_t sent)
{
        ElectionOutput out = {};
        ElectionResponse resp = {
                .id = f->req.id,
                .error = error,
                .http_status = status,
                .object = object,
                .sent_usec = sent,
        };

        json_decref(f->req.body);
        f->req = (ElectionRequest){};
        take(f, &out, election_complete(f->e, f->now, &resp, &out));
}

/* The fake server answers the pending request, as sent at `sent` and
 * answered after `rtt`. Returns the HTTP status. */
static long serve_at(Fixture *f, uint64_t rtt)
{
        FakeServer *srv = &f->srv;
        uint64_t sent = f->now.mono;
        json_t *answer = NULL;
        long status;

        ck_assert(f->req.type != ELECTION_REQUEST_NONE);
        advance(f, rtt);
        switch (f->req.type) {
        case ELECTION_REQUEST_GET:
                srv->n_get++;
                status = srv->lease ? 200 : 404;
                answer = srv->lease ? json_incref(srv->lease) : NULL;
                break;
        case ELECTION_REQUEST_CREATE:
                srv->n_create++;
                if (srv->lease) {
                        status = 409;
                        break;
                }
                server_store(srv, json_deep_copy(f->req.body));
                status = 201;
                answer = json_incref(srv->lease);
                break;
        case ELECTION_REQUEST_UPDATE:
                srv->n_update++;
                if (!srv->lease || !streq(rv_of(srv->lease), rv_of(f->req.body))) {
                        status = 409;
                        break;
                }
                server_store(srv, json_deep_copy(f->req.body));
                status = 200;
                answer = json_incref(srv->lease);
                break;
        default:
                ck_abort();
        }
        complete(f, 0, status, answer, sent);
        json_decref(answer);
        return status;
}

static long serve(Fixture *f)
{
        return serve_at(f, 20 * MS);
}

/* Takes the lease on an empty server: GET 404, POST 201. */
static void acquire_fresh(Fixture *f)
{
        campaign(f);
        ck_assert_int_eq(f->req.type, ELECTION_REQUEST_GET);
        ck_assert_int_eq(serve(f), 404);
        ck_assert_int_eq(f->req.type, ELECTION_REQUEST_CREATE);
        ck_assert_int_eq(serve(f), 201);
        ck_assert(election_is_leading(f->e));
}

START_TEST(test_acquire_absent)
{
        Fixture f;
        char t[32];
        json_t *b;
        uint64_t sent;

        fixture_init(&f, "worker-1");
        campaign(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert_int_eq(serve(&f), 404);

        /* The create body is kube-vip's: kind, apiVersion, name, namespace, spec. */
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        b = f.req.body;
        ck_assert_str_eq(json_string_value(json_object_get(b, "kind")), "Lease");
        ck_assert_str_eq(json_string_value(json_object_get(b, "apiVersion")), "coordination.k8s.io/v1");
        ck_assert_int_eq(json_object_size(json_object_get(b, "metadata")), 2);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(b, "metadata"), "name")),
                         "kubevip-egress-demo");
        ck_assert_str_eq(holder_of(b), "worker-1");
        ck_assert_int_eq(int_of(b, "leaseDurationSeconds"), 15);
        ck_assert_int_eq(int_of(b, "leaseTransitions"), 0);
        ck_assert_int_eq(kube_microtime_format(f.now.real, t), 0);
        ck_assert_str_eq(str_of(b, "acquireTime"), t);
        ck_assert_str_eq(str_of(b, "renewTime"), t);
        ck_assert_int_eq(strlen(t), 27); /* exactly 6 fractional digits */

        sent = f.now.mono;
        f.events = 0;
        ck_assert_int_eq(serve(&f), 201);
        ck_assert(election_is_leading(&*f.e));
        ck_assert(f.events & ELECTION_EVENT_LEADING);
        ck_assert_uint_eq(election_deadline(f.e), sent + RD);
        /* The next renew comes one retryPeriod after the answer. */
        ck_assert_uint_eq(election_next_wakeup(f.e), f.now.mono + RP);
        fixture_done(&f);
}
END_TEST

START_TEST(test_acquire_released)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "worker-2", 15, "2025-05-12T09:02:11.004871Z", 3));
        json_decref(server_put_foreign(&f, "", 1, "2025-05-12T09:02:12.337001Z", 3));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        /* An empty holder is taken at once, counting one transition. */
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_str_eq(rv_of(f.req.body), "2");
        ck_assert_str_eq(holder_of(f.req.body), "worker-1");
        ck_assert_int_eq(int_of(f.req.body, "leaseTransitions"), 4);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(f.req.body, "metadata"), "uid")),
                         "3c4d5e6f");
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(election_is_leading(f.e));
        ck_assert_int_eq(f.srv.n_get, 1);
        ck_assert_int_eq(f.srv.n_update, 1);
        fixture_done(&f);
}
END_TEST

/* A foreign holder is respected for leaseDuration from when its record last
 * changed by our clock, whatever renewTime says. Table: renewTime far in the
 * past, now-ish, far in the future. */
static const char *const renew_times[] = {
        "2001-01-01T00:00:00.000000Z",
        "2025-05-12T08:14:05.512334Z",
        "2099-12-31T23:59:59.999999Z",
};

START_TEST(test_respect_foreign_until_local_expiry)
{
        Fixture f;
        uint64_t first_seen;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "worker-2", 5, renew_times[_i], 7));
        campaign(&f);
        first_seen = f.now.mono + 20 * MS;
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(!election_is_leading(f.e));
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        ck_assert_str_eq(election_holder(f.e), "worker-2");

        /* Polling (no watch): a GET every retryPeriod, no write while the
         * record is valid by local time. */
        while (f.now.mono < first_seen + 5 * S) {
                fire(&f);
                if (f.req.type == ELECTION_REQUEST_UPDATE)
                        break;
                ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
                ck_assert_int_eq(serve(&f), 200);
        }
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_uint_ge(f.now.mono, first_seen + 5 * S);
        ck_assert_int_eq(f.srv.n_update, 0);
        ck_assert_int_eq(int_of(f.req.body, "leaseTransitions"), 8);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_foreign_renewals_postpone_expiry)
{
        Fixture f;
        char renew[64];

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "worker-2", 5, "2025-05-12T09:00:00.000000Z", 0));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        /* The holder renews every 2 s; we never write for a minute. */
        for (int i = 0; i < 30; i++) {
                snprintf(renew, sizeof(renew), "2025-05-12T09:00:%02d.000000Z", i * 2 % 60);
                json_decref(server_put_foreign(&f, "worker-2", 5, renew, 0));
                fire(&f);
                ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
                ck_assert_int_eq(serve(&f), 200);
        }
        ck_assert_int_eq(f.srv.n_update, 0);
        ck_assert(!election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_conflict_race)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "", 1, "2025-05-12T09:02:12.337001Z", 3));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        /* worker-3 wins the race: our PUT has a stale resourceVersion. */
        json_decref(server_put_foreign(&f, "worker-3", 15, "2025-05-12T09:02:12.400000Z", 4));
        ck_assert_int_eq(serve(&f), 409);
        ck_assert(!election_is_leading(f.e));
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        /* No hot loop: the next attempt waits a jittered retryPeriod. */
        ck_assert_uint_ge(election_next_wakeup(f.e), f.now.mono + RP);
        fire(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        ck_assert_str_eq(election_holder(f.e), "worker-3");

        /* A create race is a 409 AlreadyExists, handled the same way. */
        fixture_done(&f);
        fixture_init(&f, "worker-1");
        campaign(&f);
        ck_assert_int_eq(serve(&f), 404);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        json_decref(server_put_foreign(&f, "worker-3", 15, "2025-05-12T09:02:12.400000Z", 0));
        ck_assert_int_eq(serve(&f), 409);
        ck_assert(!election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_jitter)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        f.jitter = 0.5;
        json_decref(server_put_foreign(&f, "worker-2", 15, "2025-05-12T09:02:12.337001Z", 0));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        /* retryPeriod * (1 + 0.5 * 1.2) */
        ck_assert_uint_eq(election_next_wakeup(f.e), f.now.mono + RP + RP * 6 / 10);
        fixture_done(&f);
}
END_TEST

START_TEST(test_renew_keeps_acquire_and_transitions)
{
        Fixture f;
        const char *acquired;
        char *a;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "", 1, "2025-05-12T09:02:12.337001Z", 3));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(election_is_leading(f.e));
        acquired = str_of(f.srv.lease, "acquireTime");
        a = strdup(acquired);
        for (int i = 0; i < 5; i++) {
                uint64_t sent;

                f.events = 0;
                fire(&f);
                /* Step 1: PUT of the cached Lease, no GET. */
                ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
                ck_assert_str_eq(str_of(f.req.body, "acquireTime"), a);
                ck_assert_int_eq(int_of(f.req.body, "leaseTransitions"), 4);
                ck_assert_str_ne(str_of(f.req.body, "renewTime"), a);
                sent = f.now.mono;
                ck_assert_int_eq(serve(&f), 200);
                ck_assert(f.events & ELECTION_EVENT_RENEWED);
                ck_assert(!(f.events & ELECTION_EVENT_LEADING));
                ck_assert_uint_eq(election_deadline(f.e), sent + RD);
        }
        ck_assert_int_eq(f.srv.n_get, 1);
        free(a);
        fixture_done(&f);
}
END_TEST

START_TEST(test_renew_deadline_from_send_time)
{
        Fixture f;
        uint64_t last_sent, deadline;

        fixture_init(&f, "worker-1");
        acquire_fresh(&f);
        fire(&f);
        /* A slow but successful renew: 3 s round trip. Validity counts from
         * the send time, not the answer. */
        last_sent = f.now.mono;
        ck_assert_int_eq(serve_at(&f, 3 * S), 200);
        deadline = last_sent + RD;
        ck_assert_uint_eq(election_deadline(f.e), deadline);

        /* From now on every request times out. Each has a timeout below the
         * time left, and leadership ends exactly at the deadline. */
        f.events = 0;
        for (;;) {
                fire(&f);
                if (!election_is_leading(f.e))
                        break;
                ck_assert(f.req.type != ELECTION_REQUEST_NONE);
                ck_assert_uint_lt(f.now.mono + f.req.timeout_usec, deadline);
                advance(&f, f.req.timeout_usec);
                complete(&f, -ETIMEDOUT, 0, NULL, f.now.mono - f.req.timeout_usec);
        }
        ck_assert_uint_eq(f.now.mono, deadline);
        ck_assert(f.events & ELECTION_EVENT_LEADING);
        ck_assert_uint_eq(election_deadline(f.e), 0);
        fixture_done(&f);
}
END_TEST

START_TEST(test_send_time_from_transport)
{
        Fixture f;
        uint64_t issued;

        fixture_init(&f, "worker-1");
        acquire_fresh(&f);
        fire(&f);
        issued = f.now.mono;
        advance(&f, 300 * MS);
        /* The transport handed it over 100 ms after we asked (queued). */
        f.srv.n_update++;
        server_store(&f.srv, json_deep_copy(f.req.body));
        {
                json_t *ans = json_incref(f.srv.lease);
                complete(&f, 0, 200, ans, issued + 100 * MS);
                json_decref(ans);
        }
        ck_assert_uint_eq(election_deadline(f.e), issued + 100 * MS + RD);
        fixture_done(&f);
}
END_TEST

/* Requests waiting for the transport are served in order of priority
 * (kube-http.c): a renewal by its deadline, so the leadership that ends
 * first is renewed first; an acquisition as a renewal with half its
 * validity left. Its timeout is nearly all the time left, since it may
 * wait in that queue. */
START_TEST(test_request_priority)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        campaign(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert_uint_eq(f.req.priority_usec, f.now.mono + RD / 2);
        ck_assert_uint_eq(f.req.timeout_usec, RD / 2);
        ck_assert_int_eq(serve(&f), 404);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        ck_assert_uint_eq(f.req.priority_usec, f.now.mono + RD / 2);
        ck_assert_int_eq(serve(&f), 201);
        ck_assert(election_is_leading(f.e));

        fire(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_uint_eq(f.req.priority_usec, election_deadline(f.e));
        ck_assert_uint_gt(f.req.timeout_usec, RD / 2);
        ck_assert_uint_lt(f.now.mono + f.req.timeout_usec, election_deadline(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_hung_request_cancelled_at_deadline)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        acquire_fresh(&f);
        /* The transport never answers anything again. */
        for (int i = 0; i < 100 && election_is_leading(f.e); i++) {
                ElectionOutput out = {};
                uint64_t t = election_next_wakeup(f.e);

                advance(&f, t - f.now.mono);
                take(&f, &out, election_timer(f.e, f.now, &out));
                if (f.req.type != ELECTION_REQUEST_NONE)
                        ck_assert_uint_lt(f.now.mono + f.req.timeout_usec, election_deadline(f.e));
                json_decref(f.req.body);
                f.req = (ElectionRequest){};
        }
        ck_assert(!election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_release_body)
{
        Fixture f;
        char t[32];
        json_t *b;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "", 1, "2025-05-12T09:02:12.337001Z", 3));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(election_is_leading(f.e));
        advance(&f, 700 * MS);

        f.events = 0;
        withdraw(&f);
        /* Leadership is given up before the Lease is. */
        ck_assert(f.events & ELECTION_EVENT_LEADING);
        ck_assert(!election_is_leading(f.e));
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        b = f.req.body;
        ck_assert_str_eq(holder_of(b), "");
        ck_assert_int_eq(int_of(b, "leaseDurationSeconds"), 1);
        ck_assert_int_eq(int_of(b, "leaseTransitions"), 4);
        ck_assert_int_eq(kube_microtime_format(f.now.real, t), 0);
        ck_assert_str_eq(str_of(b, "acquireTime"), t);
        ck_assert_str_eq(str_of(b, "renewTime"), t);
        ck_assert_str_eq(rv_of(b), rv_of(f.srv.lease));
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(f.events & ELECTION_EVENT_DONE);
        ck_assert_uint_eq(election_next_wakeup(f.e), UINT64_MAX);
        fixture_done(&f);
}
END_TEST

START_TEST(test_release_conflict)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        acquire_fresh(&f);
        /* Someone else changed it: a 409 on release, a GET, and since it is no
         * longer ours, nothing more. */
        json_decref(server_put_foreign(&f, "worker-9", 15, "2025-05-12T09:02:12.337001Z", 1));
        withdraw(&f);
        ck_assert_int_eq(serve(&f), 409);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(f.events & ELECTION_EVENT_DONE);
        ck_assert_str_eq(holder_of(f.srv.lease), "worker-9");
        fixture_done(&f);
}
END_TEST

START_TEST(test_withdraw_during_acquire)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        campaign(&f);
        ck_assert_int_eq(serve(&f), 404);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        f.events = 0;
        withdraw(&f);
        /* The create lands; what it got is given back at once, and we never
         * reported leading. */
        ck_assert_int_eq(serve(&f), 201);
        ck_assert(!(f.events & ELECTION_EVENT_LEADING));
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_str_eq(holder_of(f.req.body), "");
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(f.events & ELECTION_EVENT_DONE);
        fixture_done(&f);
}
END_TEST

/* Found by the simulation: Withdraw then Campaign while the acquisition is
 * in flight must leave a plain leader, not one that releases at its next
 * renewal. */
START_TEST(test_withdraw_campaign_during_acquire)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        campaign(&f);
        ck_assert_int_eq(serve(&f), 404);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        withdraw(&f);
        campaign(&f);
        ck_assert_int_eq(serve(&f), 201);
        ck_assert(election_is_leading(f.e));
        for (int i = 0; i < 3; i++) {
                fire(&f);
                ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
                ck_assert_str_eq(holder_of(f.req.body), "worker-1");
                ck_assert_int_eq(serve(&f), 200);
                ck_assert(election_is_leading(f.e));
        }
        ck_assert(!(f.events & ELECTION_EVENT_DONE));
        fixture_done(&f);
}
END_TEST

START_TEST(test_withdraw_not_holder)
{
        Fixture f;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "worker-2", 15, "2025-05-12T09:02:12.337001Z", 1));
        campaign(&f);
        ck_assert_int_eq(serve(&f), 200);
        withdraw(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        ck_assert(f.events & ELECTION_EVENT_DONE);
        ck_assert_int_eq(f.srv.n_update, 0);
        fixture_done(&f);
}
END_TEST

START_TEST(test_transitions_count)
{
        Fixture a, b;

        /* Two candidates sharing one fake server; a takes it, releases it,
         * b takes it: 0, then 1. */
        fixture_init(&a, "worker-1");
        fixture_init(&b, "worker-2");
        acquire_fresh(&a);
        ck_assert_int_eq(int_of(a.srv.lease, "leaseTransitions"), 0);
        withdraw(&a);
        ck_assert_int_eq(serve(&a), 200);
        ck_assert_int_eq(int_of(a.srv.lease, "leaseTransitions"), 0);

        b.srv.lease = json_incref(a.srv.lease);
        b.srv.rv = a.srv.rv;
        campaign(&b);
        ck_assert_int_eq(serve(&b), 200);
        ck_assert_int_eq(serve(&b), 200);
        ck_assert(election_is_leading(b.e));
        ck_assert_int_eq(int_of(b.srv.lease, "leaseTransitions"), 1);
        fixture_done(&a);
        fixture_done(&b);
}
END_TEST

/* The same scenario with CLOCK_REALTIME jumping around (an hour back, a day
 * forward, before the epoch of the lease) gives the same requests at the
 * same monotonic times; only the MicroTime strings differ. */
static const int64_t real_jumps[] = {0, -3600, 86400, -400000000};

static void trace_scenario(int64_t jump, char *trace, size_t size)
{
        Fixture f;
        size_t n = 0;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "worker-2", 15, "2025-05-12T09:02:12.337001Z", 1));
        campaign(&f);
        for (int i = 0; i < 40; i++) {
                if (i == 3)
                        f.now.real += jump * (int64_t)S;
                if (f.req.type == ELECTION_REQUEST_NONE)
                        fire(&f);
                n += snprintf(trace + n, size - n, "%llu:%s%s ", (unsigned long long)(f.now.mono - 1000 * S),
                              election_request_type_to_string(f.req.type),
                              election_is_leading(f.e) ? "*" : "");
                ck_assert_uint_lt(n, size);
                if (f.req.type != ELECTION_REQUEST_NONE)
                        serve(&f);
        }
        ck_assert(election_is_leading(f.e));
        fixture_done(&f);
}

START_TEST(test_wall_clock_independence)
{
        char want[8192], got[8192];

        trace_scenario(0, want, sizeof(want));
        trace_scenario(real_jumps[_i], got, sizeof(got));
        ck_assert_str_eq(got, want);
}
END_TEST

START_TEST(test_watch_no_polling)
{
        Fixture f;
        char renew[64];
        json_t *l;

        fixture_init(&f, "worker-1");
        l = server_put_foreign(&f, "worker-2", 5, "2025-05-12T09:00:00.000000Z", 2);
        set_watched(&f, l);
        json_decref(l);
        campaign(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        /* The holder renews every 2 s for a minute: the watch shows it, and
         * we send nothing at all. */
        for (int i = 0; i < 30; i++) {
                advance(&f, 2 * S);
                ck_assert_uint_gt(election_next_wakeup(f.e), f.now.mono);
                snprintf(renew, sizeof(renew), "2025-05-12T09:00:%02d.000000Z", i * 2 % 60);
                l = server_put_foreign(&f, "worker-2", 5, renew, 2);
                observe(&f, l);
                json_decref(l);
                ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        }
        ck_assert_int_eq(f.srv.n_get + f.srv.n_update + f.srv.n_create, 0);

        /* It stops renewing: we write (no GET first) leaseDuration after the
         * last change we saw. */
        {
                uint64_t last = f.now.mono;
                fire(&f);
                ck_assert_uint_eq(f.now.mono, last + 5 * S);
        }
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_int_eq(int_of(f.req.body, "leaseTransitions"), 3);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(election_is_leading(f.e));
        ck_assert_int_eq(f.srv.n_get, 0);
        fixture_done(&f);
}
END_TEST

START_TEST(test_watch_release_taken_at_once)
{
        Fixture f;
        json_t *l;

        fixture_init(&f, "worker-1");
        l = server_put_foreign(&f, "worker-2", 15, "2025-05-12T09:00:00.000000Z", 2);
        set_watched(&f, l);
        json_decref(l);
        campaign(&f);
        advance(&f, 1 * S);
        l = server_put_foreign(&f, "", 1, "2025-05-12T09:00:01.000000Z", 2);
        observe(&f, l);
        json_decref(l);
        /* One PUT, in the same step as the watch event. */
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(election_is_leading(f.e));

        /* A deleted Lease is created again at once. */
        fixture_done(&f);
        fixture_init(&f, "worker-1");
        l = server_put_foreign(&f, "worker-2", 15, "2025-05-12T09:00:00.000000Z", 2);
        set_watched(&f, l);
        json_decref(l);
        campaign(&f);
        json_decref(f.srv.lease);
        f.srv.lease = NULL;
        observe(&f, NULL);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        ck_assert_int_eq(serve(&f), 201);
        ck_assert(election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_watch_stale_costs_a_get)
{
        Fixture f;
        json_t *l;

        fixture_init(&f, "worker-1");
        l = server_put_foreign(&f, "worker-2", 5, "2025-05-12T09:00:00.000000Z", 2);
        set_watched(&f, l);
        json_decref(l);
        campaign(&f);
        /* The holder renews but our watch misses it. */
        json_decref(server_put_foreign(&f, "worker-2", 5, "2025-05-12T09:00:04.000000Z", 2));
        fire(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert_int_eq(serve(&f), 409);
        fire(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert_int_eq(serve(&f), 200);
        /* The GET showed a change: another full duration of respect. */
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        ck_assert_uint_ge(election_next_wakeup(f.e), f.now.mono + 5 * S);
        ck_assert(!election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

START_TEST(test_leader_sees_foreign_holder)
{
        Fixture f;
        json_t *l;

        fixture_init(&f, "worker-1");
        set_watched(&f, NULL);
        campaign(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        ck_assert_int_eq(serve(&f), 201);
        ck_assert(election_is_leading(f.e));

        /* An echo of our own write changes nothing. */
        l = json_incref(f.srv.lease);
        observe(&f, l);
        json_decref(l);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);

        /* Someone overwrites it: checked with one GET, and we stop leading
         * at once rather than at the renew deadline. */
        l = server_put_foreign(&f, "worker-7", 15, "2025-05-12T09:00:00.000000Z", 1);
        f.events = 0;
        observe(&f, l);
        json_decref(l);
        ck_assert(election_is_leading(f.e));
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert_int_eq(serve(&f), 200);
        ck_assert(!election_is_leading(f.e));
        ck_assert(f.events & ELECTION_EVENT_LEADING);
        ck_assert(f.events & ELECTION_EVENT_HOLDER);
        ck_assert_str_eq(election_holder(f.e), "worker-7");
        fixture_done(&f);
}
END_TEST

/* lease-io.c refuses an acquisition while renewals are late or enough are
 * in flight: the election takes it as a failed attempt, waits, and tries
 * again at once when admitted. Renewals are never acquisitions; neither is
 * a restarted holder's first write. */
START_TEST(test_admission)
{
        Fixture f;
        ElectionOutput out = {};
        uint64_t refused_at;

        fixture_init(&f, "worker-1");
        campaign(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_GET);
        ck_assert(f.req.acquisition);
        ck_assert_int_eq(serve(&f), 404);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_CREATE);
        ck_assert(f.req.acquisition);
        refused_at = f.now.mono;
        complete(&f, -EBUSY, 0, NULL, f.now.mono);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        ck_assert(!election_is_leading(f.e));
        ck_assert_uint_ge(election_next_wakeup(f.e), refused_at + RP);

        /* Admitted 100 ms later: it tries at once. */
        advance(&f, 100 * MS);
        take(&f, &out, election_admit(f.e, f.now, &out));
        ck_assert_int_ne(f.req.type, ELECTION_REQUEST_NONE);
        ck_assert(f.req.acquisition);
        while (f.req.type != ELECTION_REQUEST_NONE)
                serve(&f);
        ck_assert(election_is_leading(f.e));

        /* Leading: admission changes nothing, and renewals are not
         * acquisitions. */
        take(&f, &out, election_admit(f.e, f.now, &out));
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_NONE);
        fire(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert(!f.req.acquisition);
        ck_assert_int_eq(serve(&f), 200);
        fixture_done(&f);

        /* A restarted kvelectd finds its own name in the Lease: its first
         * write keeps a leadership kvpd still holds, so it is not held
         * back. */
        fixture_init(&f, "worker-1");
        {
                json_t *l = server_put_foreign(&f, "worker-1", 15, "2025-05-12T09:00:00.000000Z", 4);

                set_watched(&f, l);
                json_decref(l);
        }
        campaign(&f);
        ck_assert_int_eq(f.req.type, ELECTION_REQUEST_UPDATE);
        ck_assert(!f.req.acquisition);
        fixture_done(&f);
}
END_TEST

START_TEST(test_api_down_then_back)
{
        Fixture f;
        uint64_t deadline;

        fixture_init(&f, "worker-1");
        acquire_fresh(&f);
        deadline = election_deadline(f.e);
        /* API unreachable: every request fails fast. */
        while (election_is_leading(f.e)) {
                fire(&f);
                if (f.req.type != ELECTION_REQUEST_NONE)
                        complete(&f, -ECONNREFUSED, 0, NULL, f.now.mono);
        }
        ck_assert_uint_eq(f.now.mono, deadline);
        /* Still down for a while: attempts go on, none succeeds. */
        for (int i = 0; i < 10; i++) {
                fire(&f);
                if (f.req.type != ELECTION_REQUEST_NONE)
                        complete(&f, -ECONNREFUSED, 0, NULL, f.now.mono);
                ck_assert(!election_is_leading(f.e));
        }
        /* Back: the record still names us and nobody changed it, so the
         * next attempt takes it again. */
        while (f.req.type == ELECTION_REQUEST_NONE)
                fire(&f);
        while (f.req.type != ELECTION_REQUEST_NONE)
                serve(&f);
        ck_assert(election_is_leading(f.e));
        fixture_done(&f);
}
END_TEST

/* A campaigning non-leader always has a wakeup, never further than a
 * leaseDuration away (the longest it ever waits: a live holder's record
 * expiring by our clock); a request in flight is bounded by its expiry. */
static void check_wakeup(Election *e, uint64_t now)
{
        uint64_t t = election_next_wakeup(e);

        if (!election_is_campaigning(e) || election_is_leading(e))
                return;
        ck_assert_msg(t != UINT64_MAX, "campaigning, not leading, and no wakeup");
        ck_assert_msg(t <= now + LD, "wakeup %llu us away", (unsigned long long)(t - now));
}

/* One step of a campaign's life, as the manager feeds it. */
typedef enum SeqOp {
        SEQ_END,
        SEQ_PENDING,        /* a campaign in a namespace whose informer has not synced: set_view(PENDING) */
        SEQ_CAMPAIGN,       /* election_campaign() */
        SEQ_WITHDRAW,       /* election_withdraw() */
        SEQ_LISTED,         /* the informer's list shows the Lease (ADDED, before "synced") */
        SEQ_SYNCED,         /* synced: set_view(WATCHED) with the cached Lease */
        SEQ_SERVE,          /* the request in flight is answered (20 ms) */
        SEQ_GET_READ,       /* the server reads the Lease for the GET in flight; the answer is on its way */
        SEQ_GET_ANSWER,     /* that answer arrives (whatever the Lease is by then) */
        SEQ_LOST,           /* the request in flight is never answered */
        SEQ_RENEW,          /* the holder renews, the watch shows it */
        SEQ_RELEASE,        /* the holder releases (holder "", duration 1), the watch shows it */
        SEQ_RELEASE_UNSEEN, /* the holder released before the list */
        SEQ_FIRE,           /* the timer, at its wakeup */
        SEQ_WAIT_100MS,
        SEQ_WAIT_1S,
} SeqOp;

/* After the steps the holder does nothing more (released, or dead), and the
 * campaign must write its own record within `within` of the last step. */
static const struct {
        const char *name;
        SeqOp ops[16];
        uint64_t within;
} seq_cases[] = {
        /* The cluster's sequence (kvelectd log of node3): the list shows the
         * holder before the namespace is synced, so a GET goes out; the
         * sync is adopted while it is in flight; the holder releases a
         * second later. */
        {"GET answered, then the release",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_SERVE, SEQ_WAIT_1S, SEQ_RENEW, SEQ_WAIT_1S,
          SEQ_RELEASE},
         0},
        {"release while the GET is in flight",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_WAIT_1S, SEQ_RELEASE, SEQ_GET_READ,
          SEQ_GET_ANSWER},
         0},
        {"the GET read the Lease before the release, answered after it",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_GET_READ, SEQ_SYNCED, SEQ_WAIT_1S, SEQ_RELEASE,
          SEQ_GET_ANSWER},
         0},
        {"release while the GET is lost",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_LOST, SEQ_WAIT_1S, SEQ_RELEASE},
         0},
        {"release after the synced view, before the GET is read",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_RELEASE, SEQ_GET_READ, SEQ_GET_ANSWER},
         0},
        {"GET sent by the timer before the list",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_FIRE, SEQ_SERVE, SEQ_LISTED, SEQ_SYNCED, SEQ_WAIT_1S, SEQ_RELEASE},
         0},
        {"GET sent by the timer, answered after the sync",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_FIRE, SEQ_LISTED, SEQ_SYNCED, SEQ_SERVE, SEQ_WAIT_1S, SEQ_RELEASE},
         0},
        {"withdrawn and back while the GET is in flight",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_WITHDRAW, SEQ_CAMPAIGN, SEQ_SYNCED, SEQ_SERVE,
          SEQ_WAIT_1S, SEQ_RELEASE},
         0},
        /* Released before the list: the GET shows it, the write follows. */
        {"released before the list",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_RELEASE_UNSEEN, SEQ_LISTED, SEQ_SYNCED},
         50 * MS},
        /* The holder dies: its record expires a leaseDuration after the
         * last change we saw, whatever was in flight. */
        {"expiry, GET answered",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_SERVE, SEQ_WAIT_1S, SEQ_RENEW},
         LD},
        {"expiry, GET answered after a second",
         {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_WAIT_1S, SEQ_SERVE},
         LD},
        {"expiry, GET lost", {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SYNCED, SEQ_LOST}, LD},
        {"expiry, never synced, GETs only", {SEQ_PENDING, SEQ_CAMPAIGN, SEQ_LISTED, SEQ_SERVE}, LD + RP},
};

static void seq_put_holder(Fixture *f, const char *holder, int dur, bool watched)
{
        static unsigned n;
        char renew[64];
        json_t *l;

        snprintf(renew, sizeof(renew), "2025-05-12T09:00:%02u.000000Z", n++ % 60);
        l = server_put_foreign(f, holder, dur, renew, 2);
        if (watched)
                observe(f, l);
        json_decref(l);
}

START_TEST(test_campaign_while_unsynced)
{
        Fixture f;
        json_t *held = NULL;
        long held_status = 0;
        uint64_t held_id = 0, held_sent = 0, t_end, t_write = 0;

        fixture_init(&f, "worker-1");
        json_decref(server_put_foreign(&f, "worker-2", 15, "2025-05-12T08:59:59.000000Z", 2));

        for (const SeqOp *op = seq_cases[_i].ops; *op != SEQ_END; op++) {
                ElectionOutput out = {};

                switch (*op) {
                case SEQ_PENDING:
                        take(&f, &out, election_set_view(f.e, f.now, ELECTION_VIEW_PENDING, NULL, &out));
                        break;
                case SEQ_CAMPAIGN:
                        campaign(&f);
                        break;
                case SEQ_WITHDRAW:
                        withdraw(&f);
                        break;
                case SEQ_LISTED:
                        observe(&f, f.srv.lease);
                        break;
                case SEQ_SYNCED:
                        set_watched(&f, f.srv.lease);
                        break;
                case SEQ_SERVE:
                        ck_assert_int_ne(f.req.type, ELECTION_REQUEST_NONE);
                        serve(&f);
                        break;
                case SEQ_GET_READ:
                        held_id = 0;
                        if (f.req.type != ELECTION_REQUEST_GET)
                                break; /* cancelled: nothing reads it */
                        held_status = f.srv.lease ? 200 : 404;
                        held = f.srv.lease ? json_deep_copy(f.srv.lease) : NULL;
                        held_sent = f.now.mono;
                        held_id = f.req.id;
                        break;
                case SEQ_GET_ANSWER:
                        /* Completed even if cancelled meanwhile, as a
                         * transport could deliver it anyway. */
                        if (held_id == 0)
                                break;
                        advance(&f, 20 * MS);
                        {
                                ElectionResponse resp = {.id = held_id,
                                                         .http_status = held_status,
                                                         .object = held,
                                                         .sent_usec = held_sent};
                                if (f.req.type != ELECTION_REQUEST_NONE && f.req.id == held_id) {
                                        json_decref(f.req.body);
                                        f.req = (ElectionRequest){};
                                }
                                take(&f, &out, election_complete(f.e, f.now, &resp, &out));
                        }
                        json_decref(held);
                        held = NULL;
                        break;
                case SEQ_LOST:
                        ck_assert_int_ne(f.req.type, ELECTION_REQUEST_NONE);
                        json_decref(f.req.body);
                        f.req = (ElectionRequest){};
                        break;
                case SEQ_RENEW:
                        seq_put_holder(&f, "worker-2", 15, true);
                        break;
                case SEQ_RELEASE:
                        seq_put_holder(&f, "", 1, true);
                        break;
                case SEQ_RELEASE_UNSEEN:
                        seq_put_holder(&f, "", 1, false);
                        break;
                case SEQ_FIRE:
                        fire(&f);
                        break;
                case SEQ_WAIT_100MS:
                        advance(&f, 100 * MS);
                        break;
                case SEQ_WAIT_1S:
                        advance(&f, 1 * S);
                        break;
                case SEQ_END:
                        break;
                }
                check_wakeup(f.e, f.now.mono);
                ck_assert(!election_is_leading(f.e));
        }

        /* The holder does nothing more. Answer every request at once, run
         * the timer otherwise, until we lead. */
        t_end = f.now.mono;
        for (int i = 0; i < 100 && !election_is_leading(f.e); i++) {
                check_wakeup(f.e, f.now.mono);
                if (f.req.type == ELECTION_REQUEST_NONE) {
                        fire(&f);
                        continue;
                }
                if ((f.req.type == ELECTION_REQUEST_UPDATE || f.req.type == ELECTION_REQUEST_CREATE) &&
                    streq(holder_of(f.req.body), "worker-1") && t_write == 0)
                        t_write = f.now.mono;
                serve(&f);
        }
        ck_assert_msg(election_is_leading(f.e), "%s: never leads", seq_cases[_i].name);
        ck_assert_msg(t_write - t_end <= seq_cases[_i].within,
                      "%s: wrote %llu ms after the last step (at most %llu)", seq_cases[_i].name,
                      (unsigned long long)((t_write - t_end) / MS),
                      (unsigned long long)(seq_cases[_i].within / MS));
        json_decref(held);
        fixture_done(&f);
}
END_TEST

START_TEST(test_record_parse)
{
        LeaseRecord r = {};
        char *rv = NULL;
        json_t *j;

        j = json_loads("{\"metadata\":{\"resourceVersion\":\"184470\"},\"spec\":{\"holderIdentity\":null,"
                       "\"leaseDurationSeconds\":5,\"acquireTime\":null,\"unknown\":[1]}}",
                       0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(lease_record_from_json(j, &r, &rv), 0);
        ck_assert_str_eq(r.holder, "");
        ck_assert_str_eq(r.acquire_time, "");
        ck_assert_int_eq(r.duration_sec, 5);
        ck_assert_str_eq(rv, "184470");
        lease_record_done(&r);
        free(rv);
        json_decref(j);

        j = json_loads("{\"spec\":{\"holderIdentity\":5}}", 0, NULL);
        ck_assert_int_eq(lease_record_from_json(j, &r, NULL), -EBADMSG);
        json_decref(j);
        j = json_loads("{\"spec\":{\"leaseDurationSeconds\":99999999999}}", 0, NULL);
        ck_assert_int_eq(lease_record_from_json(j, &r, NULL), -EBADMSG);
        json_decref(j);
        j = json_loads("{\"spec\":null}", 0, NULL);
        ck_assert_int_eq(lease_record_from_json(j, &r, NULL), 0);
        lease_record_done(&r);
        json_decref(j);
}
END_TEST

START_TEST(test_microtime)
{
        char t[32];

        ck_assert_int_eq(kube_microtime_format(REAL0, t), 0);
        ck_assert_str_eq(t, "2025-05-12T08:14:05.512334Z");
        ck_assert_int_eq(kube_microtime_format(1000000, t), 0);
        ck_assert_str_eq(t, "1970-01-01T00:00:01.000000Z");
}
END_TEST

static const struct {
        const char *s;
        bool ns, name;
} names[] = {
        {"default", true, true},     {"kubevip-web", true, true}, {"a.b-c.d", false, true},
        {"-x", false, false},        {"x-", false, false},        {"UPPER", false, false},
        {"", false, false},          {"a..b", false, false},      {"a_b", false, false},
        {"kube-system", true, true},
};

START_TEST(test_names)
{
        /* The rules kvelectd applies to Campaign/Withdraw arguments. */
        ck_assert_int_eq(k8s_dns_label_valid(names[_i].s), names[_i].ns);
        ck_assert_int_eq(k8s_dns_subdomain_valid(names[_i].s), names[_i].name);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Randomised simulation: three candidates, one fake server, one clock.
 * Requests are applied and answered after random delays (sometimes seconds:
 * hung requests), some answers are lost (the write may or may not have been
 * applied), watch events arrive late but in order, candidates withdraw,
 * campaign again, crash and restart, and their wall clocks jump. Checked at
 * every gain of leadership: nobody else is leading, and anyone who lost it
 * other than by withdrawing has seen its last announced deadline pass (what
 * kvnetd fences on). */

#define SIM_NODES 3
#define SIM_MAX_EVENTS 4096

typedef enum SimEventType { SIM_APPLY, SIM_RESPONSE, SIM_WATCH, SIM_ACTION } SimEventType;

typedef struct SimEvent {
        uint64_t t;
        SimEventType type;
        int node;
        unsigned incarnation;
        uint64_t id; /* request id */
        ElectionRequestType req;
        json_t *body; /* APPLY: request body; RESPONSE/WATCH: object */
        long status;
        uint64_t sent;
        bool lost; /* APPLY: its answer will be lost */
        bool sync; /* WATCH: the informer's first list */
} SimEvent;

typedef struct SimNode {
        Election *e;
        bool alive;
        unsigned incarnation;
        uint64_t pending_id;
        int64_t real_offset;
        uint64_t last_deadline;
        bool voluntary;      /* withdrawn since it last gained: kvpd dropped the VIP */
        uint64_t watch_tail; /* FIFO: no watch event before this */
} SimNode;

typedef struct Sim {
        uint64_t t;
        uint64_t rng;
        FakeServer srv;
        SimNode node[SIM_NODES];
        SimEvent ev[SIM_MAX_EVENTS];
        size_t n_ev;
        unsigned gains, losses, conflicts;
        char names[SIM_NODES][16];
} Sim;

static uint64_t sim_rand(Sim *s)
{
        /* xorshift64* */
        s->rng ^= s->rng >> 12;
        s->rng ^= s->rng << 25;
        s->rng ^= s->rng >> 27;
        return s->rng * 2685821657736338717ULL;
}

static double sim_random01(void *userdata)
{
        return (double)(sim_rand(userdata) >> 11) / (double)(1ULL << 53);
}

static uint64_t sim_delay(Sim *s)
{
        uint64_t r = sim_rand(s) % 1000;

        if (r < 10)
                return 1 * S + sim_rand(s) % (8 * S); /* hung */
        if (r < 100)
                return 100 * MS + sim_rand(s) % (900 * MS);
        return 1 * MS + sim_rand(s) % (40 * MS);
}

static void sim_push(Sim *s, SimEvent ev)
{
        ck_assert_uint_lt(s->n_ev, SIM_MAX_EVENTS);
        s->ev[s->n_ev++] = ev;
}

static ElectionTime sim_now(Sim *s, int i)
{
        return (ElectionTime){.mono = s->t,
                              .real = (uint64_t)((int64_t)(s->t + REAL0) + s->node[i].real_offset)};
}

static void sim_watch_all(Sim *s)
{
        for (int i = 0; i < SIM_NODES; i++) {
                SimNode *n = &s->node[i];
                uint64_t t;

                if (!n->alive)
                        continue;
                t = MAX(n->watch_tail, s->t + sim_delay(s) / 4);
                n->watch_tail = t;
                sim_push(s, (SimEvent){.t = t,
                                       .type = SIM_WATCH,
                                       .node = i,
                                       .incarnation = n->incarnation,
                                       .body = s->srv.lease ? json_deep_copy(s->srv.lease) : NULL});
        }
}

static void sim_check_gain(Sim *s, int i)
{
        for (int j = 0; j < SIM_NODES; j++) {
                if (j == i)
                        continue;
                ck_assert_msg(!(s->node[j].alive && election_is_leading(s->node[j].e)),
                              "t=%llu: %s gains while %s leads", (unsigned long long)s->t, s->names[i],
                              s->names[j]);
                if (!s->node[j].voluntary)
                        ck_assert_msg(s->node[j].last_deadline <= s->t,
                                      "t=%llu: %s gains before %s's deadline %llu", (unsigned long long)s->t,
                                      s->names[i], s->names[j],
                                      (unsigned long long)s->node[j].last_deadline);
        }
}

static bool sim_tracing(void)
{
        return getenv("SIM_TRACE") != NULL;
}

/* Applies one output of node i. */
static void sim_take(Sim *s, int i, ElectionOutput *out, int r)
{
        SimNode *n = &s->node[i];

        if (sim_tracing() && (out->events || out->request.type != ELECTION_REQUEST_NONE || out->cancel))
                fprintf(stderr,
                        "%10.3f %s: events=%x leading=%d deadline=%.3f cancel=%d req=%s id=%llu rv=%s "
                        "holder=%s\n",
                        (double)(s->t - 1000 * S) / S, s->names[i], out->events, election_is_leading(n->e),
                        election_deadline(n->e) ? (double)(election_deadline(n->e) - 1000 * S) / S : 0.0,
                        out->cancel, election_request_type_to_string(out->request.type),
                        (unsigned long long)out->request.id,
                        out->request.body ? rv_of(out->request.body) : "-",
                        out->request.body ? holder_of(out->request.body) : "-");

        ck_assert_int_ge(r, 0);
        check_wakeup(n->e, s->t);
        if (out->events & (ELECTION_EVENT_LEADING | ELECTION_EVENT_RENEWED)) {
                if (election_is_leading(n->e)) {
                        if (out->events & ELECTION_EVENT_LEADING) {
                                sim_check_gain(s, i);
                                s->gains++;
                                n->voluntary = false;
                        }
                        n->last_deadline = election_deadline(n->e);
                } else
                        s->losses++;
        }
        if (election_is_leading(n->e))
                ck_assert_uint_lt(s->t, election_deadline(n->e));
        if (out->cancel)
                n->pending_id = 0;
        if (out->request.type != ELECTION_REQUEST_NONE) {
                uint64_t apply = s->t + sim_delay(s);

                if (election_is_leading(n->e))
                        ck_assert_uint_lt(s->t + out->request.timeout_usec, election_deadline(n->e));
                n->pending_id = out->request.id;
                sim_push(s, (SimEvent){.t = apply,
                                       .type = SIM_APPLY,
                                       .node = i,
                                       .incarnation = n->incarnation,
                                       .id = out->request.id,
                                       .req = out->request.type,
                                       .body = json_incref(out->request.body),
                                       .sent = s->t,
                                       .lost = sim_rand(s) % 100 < 5});
        }
        election_output_done(out);
}

static void sim_start_node(Sim *s, int i)
{
        SimNode *n = &s->node[i];
        ElectionConfig c = {
                .identity = s->names[i],
                .lease_duration_usec = LD,
                .renew_deadline_usec = RD,
                .retry_period_usec = RP,
                .random = sim_random01,
                .random_userdata = s,
        };
        ElectionOutput out = {};

        ck_assert_int_eq(election_new(&c, "default", "kubevip-egress-demo", &n->e), 0);
        n->alive = true;
        n->incarnation++;
        n->pending_id = 0;
        /* The informer lists first: its snapshot comes through the FIFO. */
        n->watch_tail = s->t + sim_delay(s) / 4;
        sim_push(s, (SimEvent){.t = n->watch_tail,
                               .type = SIM_WATCH,
                               .node = i,
                               .incarnation = n->incarnation,
                               .body = s->srv.lease ? json_deep_copy(s->srv.lease) : NULL,
                               .sync = true});
        sim_take(s, i, &out, election_set_view(n->e, sim_now(s, i), ELECTION_VIEW_PENDING, NULL, &out));
        sim_take(s, i, &out, election_campaign(n->e, sim_now(s, i), &out));
}

static void sim_apply(Sim *s, SimEvent *ev)
{
        FakeServer *srv = &s->srv;
        json_t *answer = NULL;
        long status;
        bool wrote = false;

        switch (ev->req) {
        case ELECTION_REQUEST_GET:
                status = srv->lease ? 200 : 404;
                answer = srv->lease ? json_deep_copy(srv->lease) : NULL;
                break;
        case ELECTION_REQUEST_CREATE:
                if (srv->lease) {
                        status = 409;
                        break;
                }
                server_store(srv, json_deep_copy(ev->body));
                status = 201;
                wrote = true;
                break;
        case ELECTION_REQUEST_UPDATE:
                if (!srv->lease || !streq(rv_of(srv->lease), rv_of(ev->body))) {
                        status = 409;
                        break;
                }
                server_store(srv, json_deep_copy(ev->body));
                status = 200;
                wrote = true;
                break;
        default:
                ck_abort();
        }
        if (status == 409)
                s->conflicts++;
        if (wrote) {
                answer = json_deep_copy(srv->lease);
                sim_watch_all(s);
        }
        if (!ev->lost)
                sim_push(s, (SimEvent){.t = s->t + sim_delay(s),
                                       .type = SIM_RESPONSE,
                                       .node = ev->node,
                                       .incarnation = ev->incarnation,
                                       .id = ev->id,
                                       .body = answer,
                                       .status = status,
                                       .sent = ev->sent});
        else
                json_decref(answer);
}

static void sim_action(Sim *s, int i)
{
        SimNode *n = &s->node[i];
        ElectionOutput out = {};
        uint64_t r = sim_rand(s) % 100;

        if (!n->alive) {
                if (r < 50) {
                        election_free(n->e);
                        n->e = NULL;
                        sim_start_node(s, i);
                }
        } else if (r < 15) {
                /* SIGKILL: its kvnetd keeps the VIP until the last deadline
                 * (if it was leading: a loss already told stays told). */
                if (election_is_leading(n->e))
                        n->voluntary = false;
                n->alive = false;
        } else if (r < 45) {
                /* kvpd gives the VIP up when it withdraws, whatever this
                 * incarnation of kvelectd knows about earlier grants. */
                sim_take(s, i, &out, election_withdraw(n->e, sim_now(s, i), &out));
                n->voluntary = true;
        } else if (r < 80)
                sim_take(s, i, &out, election_campaign(n->e, sim_now(s, i), &out));
        else
                /* The wall clock jumps (hours to a year, either way). */
                n->real_offset =
                        (int64_t)(sim_rand(s) % (365 * 86400ULL)) * (int64_t)S * (sim_rand(s) % 2 ? 1 : -1);
        sim_push(s, (SimEvent){.t = s->t + 1 * S + sim_rand(s) % (6 * S), .type = SIM_ACTION, .node = i});
}

START_TEST(test_simulation)
{
        Sim *s;
        uint64_t end;

        if (getenv("SIM_ONLY") && atoi(getenv("SIM_ONLY")) != _i)
                return;
        s = calloc(1, sizeof(Sim));

        s->t = 1000 * S;
        s->rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(_i + 1);
        for (int i = 0; i < SIM_NODES; i++) {
                snprintf(s->names[i], sizeof(s->names[i]), "node-%d", i + 1);
                sim_start_node(s, i);
                sim_push(s, (SimEvent){.t = s->t + 2 * S + sim_rand(s) % (5 * S),
                                       .type = SIM_ACTION,
                                       .node = i});
        }
        end = s->t + 1800 * S;

        while (s->t < end) {
                uint64_t best = UINT64_MAX;
                int best_ev = -1, best_node = -1;

                for (size_t k = 0; k < s->n_ev; k++)
                        if (s->ev[k].t < best) {
                                best = s->ev[k].t;
                                best_ev = (int)k;
                        }
                for (int i = 0; i < SIM_NODES; i++)
                        if (s->node[i].alive && election_next_wakeup(s->node[i].e) < best) {
                                best = election_next_wakeup(s->node[i].e);
                                best_ev = -1;
                                best_node = i;
                        }
                ck_assert(best != UINT64_MAX);
                if (best > s->t)
                        s->t = best;

                if (best_ev < 0) {
                        ElectionOutput out = {};
                        sim_take(s, best_node, &out,
                                 election_timer(s->node[best_node].e, sim_now(s, best_node), &out));
                        continue;
                }

                SimEvent ev = s->ev[best_ev];
                SimNode *n = &s->node[ev.node];
                ElectionOutput out = {};

                if (sim_tracing())
                        fprintf(stderr,
                                "%10.3f %s: %s id=%llu status=%ld alive=%d inc=%u/%u sent=%.3f rv=%s "
                                "holder=%s%s\n",
                                (double)(s->t - 1000 * S) / S, s->names[ev.node],
                                (const char *[]){"APPLY", "RESPONSE", "WATCH", "ACTION"}[ev.type],
                                (unsigned long long)ev.id, ev.status, n->alive, ev.incarnation,
                                n->incarnation, (double)(ev.sent - 1000 * S) / S,
                                ev.body ? rv_of(ev.body) : "-", ev.body ? holder_of(ev.body) : "-",
                                ev.lost ? " (answer lost)" : "");

                s->ev[best_ev] = s->ev[--s->n_ev];
                switch (ev.type) {
                case SIM_APPLY:
                        /* Applied even if the node died or gave up on it. */
                        sim_apply(s, &ev);
                        break;
                case SIM_RESPONSE:
                        if (n->alive && n->incarnation == ev.incarnation && n->pending_id == ev.id) {
                                ElectionResponse resp = {
                                        .id = ev.id,
                                        .http_status = ev.status,
                                        .object = ev.body,
                                        .sent_usec = ev.sent,
                                };
                                sim_take(s, ev.node, &out,
                                         election_complete(n->e, sim_now(s, ev.node), &resp, &out));
                        }
                        break;
                case SIM_WATCH:
                        if (n->alive && n->incarnation == ev.incarnation) {
                                if (ev.sync && ev.body && sim_rand(s) % 2)
                                        /* The list's ADDED event comes before
                                         * "synced" (kube-informer.c). */
                                        sim_take(s, ev.node, &out,
                                                 election_observe(n->e, sim_now(s, ev.node), ev.body, &out));
                                if (ev.sync)
                                        sim_take(s, ev.node, &out,
                                                 election_set_view(n->e, sim_now(s, ev.node),
                                                                   ELECTION_VIEW_WATCHED, ev.body, &out));
                                else
                                        sim_take(s, ev.node, &out,
                                                 election_observe(n->e, sim_now(s, ev.node), ev.body, &out));
                        }
                        break;
                case SIM_ACTION:
                        sim_action(s, ev.node);
                        break;
                }
                json_decref(ev.body);
        }

        /* Not vacuous: leadership moved around many times. */
        ck_assert_uint_gt(s->gains, 50);
        ck_assert_uint_gt(s->conflicts, 0);

        for (size_t k = 0; k < s->n_ev; k++)
                json_decref(s->ev[k].body);
        for (int i = 0; i < SIM_NODES; i++)
                election_free(s->node[i].e);
        json_decref(s->srv.lease);
        free(s);
}
END_TEST

static Suite *election_suite(void)
{
        Suite *s = suite_create("election");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_acquire_absent);
        tcase_add_test(tc, test_acquire_released);
        tcase_add_loop_test(tc, test_respect_foreign_until_local_expiry, 0, ELEMENTSOF(renew_times));
        tcase_add_test(tc, test_foreign_renewals_postpone_expiry);
        tcase_add_test(tc, test_conflict_race);
        tcase_add_test(tc, test_jitter);
        tcase_add_test(tc, test_renew_keeps_acquire_and_transitions);
        tcase_add_test(tc, test_renew_deadline_from_send_time);
        tcase_add_test(tc, test_send_time_from_transport);
        tcase_add_test(tc, test_request_priority);
        tcase_add_test(tc, test_hung_request_cancelled_at_deadline);
        tcase_add_test(tc, test_release_body);
        tcase_add_test(tc, test_release_conflict);
        tcase_add_test(tc, test_withdraw_during_acquire);
        tcase_add_test(tc, test_withdraw_campaign_during_acquire);
        tcase_add_test(tc, test_withdraw_not_holder);
        tcase_add_test(tc, test_transitions_count);
        tcase_add_loop_test(tc, test_wall_clock_independence, 0, ELEMENTSOF(real_jumps));
        tcase_add_test(tc, test_watch_no_polling);
        tcase_add_test(tc, test_watch_release_taken_at_once);
        tcase_add_test(tc, test_watch_stale_costs_a_get);
        tcase_add_test(tc, test_leader_sees_foreign_holder);
        tcase_add_test(tc, test_api_down_then_back);
        tcase_add_test(tc, test_admission);
        tcase_add_loop_test(tc, test_campaign_while_unsynced, 0, ELEMENTSOF(seq_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("simulation");
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, test_simulation, 0, 50);
        suite_add_tcase(s, tc);

        tc = tcase_create("record");
        tcase_add_test(tc, test_record_parse);
        tcase_add_test(tc, test_microtime);
        tcase_add_loop_test(tc, test_names, 0, ELEMENTSOF(names));
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(election_suite());
        int failed;

        srunner_run_all(sr, CK_ENV);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
