/* SPDX-License-Identifier: Apache-2.0 */
#include "election.h"

#include <stdio.h>

#include "kube-objects.h"

/* Which request is in flight; at most one per campaign. */
typedef enum ElectionStep {
        STEP_IDLE,
        STEP_RENEW,       /* tryAcquireOrRenew step 1: PUT our record on the cached Lease */
        STEP_GET,         /* step 2 */
        STEP_CREATE,      /* step 2, on 404 */
        STEP_UPDATE,      /* step 4 */
        STEP_RELEASE,     /* ReleaseOnCancel's PUT */
        STEP_RELEASE_GET, /* after a 409 on release: are we still the holder? */
} ElectionStep;

struct Election {
        ElectionConfig config;
        char *identity;
        char *namespace;
        char *name;

        bool campaigning;
        bool releasing; /* withdrawn, release not finished */
        uint64_t release_deadline;

        bool leading;
        uint64_t deadline;

        /* client-go's observedRecord/observedRawRecord/observedTime, plus the
         * object and resourceVersion a PUT must start from. */
        bool have_view;
        bool exists;
        LeaseRecord observed;
        char *resource_version;
        json_t *object;
        uint64_t observed_time;
        ElectionView view;
        bool view_stale; /* a 409 said the watch is behind: GET first */

        ElectionStep step;
        uint64_t request_id;
        uint64_t request_issued;
        uint64_t request_expiry;

        uint64_t next_attempt; /* UINT64_MAX: none scheduled */
};

static const char *const request_type_table[_ELECTION_REQUEST_MAX] = {
        [ELECTION_REQUEST_NONE] = "none",
        [ELECTION_REQUEST_GET] = "GET",
        [ELECTION_REQUEST_CREATE] = "POST",
        [ELECTION_REQUEST_UPDATE] = "PUT",
};

DEFINE_STRING_TABLE_TO_STRING(election_request_type_to_string, ElectionRequestType, request_type_table);

void election_output_done(ElectionOutput *o)
{
        if (!o)
                return;
        json_decref(o->request.body);
        *o = (ElectionOutput){};
}

int election_new(const ElectionConfig *config, const char *namespace, const char *name, Election **ret)
{
        _cleanup_(election_freep) Election *e = NULL;

        if (!config || isempty(config->identity) || !namespace || !name)
                return -EINVAL;
        if (config->retry_period_usec == 0 || config->renew_deadline_usec <= config->retry_period_usec ||
            config->lease_duration_usec <= config->renew_deadline_usec)
                return -EINVAL;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->config = *config;
        e->identity = strdup(config->identity);
        e->namespace = strdup(namespace);
        e->name = strdup(name);
        if (!e->identity || !e->namespace || !e->name)
                return -ENOMEM;
        e->config.identity = e->identity;
        e->next_attempt = UINT64_MAX;
        *ret = TAKE_PTR(e);
        return 0;
}

Election *election_free(Election *e)
{
        if (!e)
                return NULL;
        lease_record_done(&e->observed);
        free(e->resource_version);
        json_decref(e->object);
        free(e->identity);
        free(e->namespace);
        free(e->name);
        free(e);
        return NULL;
}

static uint64_t jittered_retry(const Election *e)
{
        double f = e->config.random ? e->config.random(e->config.random_userdata) : 0.0;

        if (f < 0.0 || f >= 1.0)
                f = 0.0;
        return e->config.retry_period_usec +
               (uint64_t)(f * ELECTION_JITTER_FACTOR * (double)e->config.retry_period_usec);
}

static bool is_holder(const Election *e)
{
        return e->have_view && e->exists && streq(e->observed.holder, e->identity);
}

static uint64_t expiry_of_observed(const Election *e)
{
        int64_t d = e->observed.duration_sec;

        return e->observed_time + (d > 0 ? (uint64_t)d * USEC_PER_SEC : 0);
}

/* client-go's isLeaseValid: the local time we last saw the record change,
 * plus the duration it states. renewTime is never read. */
static bool lease_valid(const Election *e, uint64_t now)
{
        return e->exists && expiry_of_observed(e) > now;
}

/* Takes the Lease (NULL: absent) as the new observation. Returns 1 when the
 * record changed (observedTime moved), 0 when it is the same bytes. */
static int adopt(Election *e, uint64_t now, json_t *lease, ElectionOutput *out)
{
        _cleanup_(lease_record_done) LeaseRecord rec = {};
        _cleanup_free_ char *rv = NULL;
        bool changed;
        int r;

        if (lease) {
                r = lease_record_from_json(lease, &rec, &rv);
                if (r < 0)
                        return r;
        }

        if (!lease)
                changed = !e->have_view || e->exists;
        else
                changed = !e->have_view || !e->exists || !lease_record_equal(&e->observed, &rec);

        if (changed) {
                const char *old = e->have_view && e->exists ? e->observed.holder : "";
                const char *new = lease ? rec.holder : "";

                if (!streq(old, new))
                        out->events |= ELECTION_EVENT_HOLDER;
                e->observed_time = now;
        }

        e->have_view = true;
        e->exists = !!lease;
        lease_record_done(&e->observed);
        if (lease) {
                e->observed = rec;
                rec = (LeaseRecord){};
        }
        free(e->resource_version);
        e->resource_version = TAKE_PTR(rv);
        json_decref(e->object);
        e->object = lease ? json_incref(lease) : NULL;
        return changed;
}

static void lose(Election *e, ElectionOutput *out)
{
        if (!e->leading)
                return;
        e->leading = false;
        e->deadline = 0;
        out->events |= ELECTION_EVENT_LEADING;
}

static void cancel_request(Election *e, ElectionOutput *out)
{
        if (e->step == STEP_IDLE)
                return;
        e->step = STEP_IDLE;
        e->request_id++; /* a late completion no longer matches */
        out->cancel = true;
}

/* Leadership ends at the deadline whatever else is happening; everything
 * below runs after this check. */
static void check_deadline(Election *e, uint64_t now, ElectionOutput *out)
{
        if (!e->leading || now < e->deadline)
                return;
        lose(e, out);
        /* Whatever is in flight was sent while leading, with a timeout
         * shorter than the time that was left: cancel it in case the
         * transport is late. */
        cancel_request(e, out);
        if (e->campaigning && e->step == STEP_IDLE)
                e->next_attempt = now + jittered_retry(e);
}

/* A request made while leading must end before leadership does, and may
 * use nearly all the time left: under a backlog it waits for a place in
 * flight (kube-http.c), and a renewal that waits 6 s of the 8 s left still
 * keeps the leadership. Acquisition requests get half the renew deadline,
 * so a granted lease always has at least that much validity left when the
 * answer arrives. Returns 0 when too little time is left to bother. */
static uint64_t request_timeout(const Election *e, uint64_t now)
{
        uint64_t t = e->config.renew_deadline_usec / 2;

        if (e->leading) {
                uint64_t left = e->deadline > now ? e->deadline - now : 0;
                t = left - left / 10;
        }
        if (e->releasing) {
                uint64_t left = e->release_deadline > now ? e->release_deadline - now : 0;
                t = MIN(t, left);
        }
        return t < ELECTION_MIN_TIMEOUT_USEC ? 0 : t;
}

static int issue(Election *e, uint64_t now, ElectionStep step, ElectionRequestType type, json_t *body,
                 ElectionOutput *out)
{
        uint64_t timeout = request_timeout(e, now);

        if (timeout == 0) {
                json_decref(body);
                return -ETIME;
        }
        if (e->step != STEP_IDLE)
                cancel_request(e, out);
        json_decref(out->request.body);
        e->step = step;
        e->request_id++;
        e->request_issued = now;
        e->request_expiry = now + timeout + ELECTION_REQUEST_GRACE_USEC;
        e->next_attempt = UINT64_MAX;
        out->request = (ElectionRequest){
                .type = type,
                .id = e->request_id,
                .body = body,
                .timeout_usec = timeout,
                .priority_usec = e->leading ? e->deadline : now + e->config.renew_deadline_usec / 2,
                .acquisition = !e->leading && !e->releasing && !is_holder(e),
        };
        return 0;
}

/* The record this node writes: client-go's leaderElectionRecord, corrected
 * as in step 3 (a holder keeps acquireTime and leaseTransitions, a new
 * holder counts one more transition). */
static int make_record(Election *e, ElectionTime now, LeaseRecord *ret)
{
        char t[32];
        LeaseRecord rec = {};
        int r;

        r = kube_microtime_format(now.real, t);
        if (r < 0)
                return r;
        rec.holder = strdup(e->identity);
        /* The API takes whole seconds; never round a duration down. */
        rec.duration_sec = (int32_t)((e->config.lease_duration_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
        rec.renew_time = strdup(t);
        if (is_holder(e)) {
                rec.acquire_time = strdup(e->observed.acquire_time);
                rec.transitions = e->observed.transitions;
        } else {
                rec.acquire_time = strdup(t);
                rec.transitions = e->exists ? e->observed.transitions + 1 : 0;
        }
        if (!rec.holder || !rec.renew_time || !rec.acquire_time) {
                lease_record_done(&rec);
                return -ENOMEM;
        }
        *ret = rec;
        return 0;
}

static int issue_write(Election *e, ElectionTime now, ElectionStep step, ElectionOutput *out)
{
        _cleanup_(lease_record_done) LeaseRecord rec = {};
        json_t *body = NULL;
        int r;

        if (step == STEP_RELEASE) {
                char t[32];

                /* ReleaseOnCancel: empty holder, duration 1 (0 is invalid),
                 * acquire = renew = now, transitions unchanged. */
                r = kube_microtime_format(now.real, t);
                if (r < 0)
                        return r;
                rec.holder = strdup("");
                rec.acquire_time = strdup(t);
                rec.renew_time = strdup(t);
                if (!rec.holder || !rec.acquire_time || !rec.renew_time)
                        return -ENOMEM;
                rec.duration_sec = 1;
                rec.transitions = e->observed.transitions;
        } else {
                r = make_record(e, now, &rec);
                if (r < 0)
                        return r;
        }

        if (step == STEP_CREATE)
                r = lease_body_new(NULL, e->namespace, e->name, &rec, NULL, &body);
        else
                r = lease_body_new(e->object, e->namespace, e->name, &rec, e->resource_version, &body);
        if (r < 0)
                return r;
        return issue(e, now.mono, step,
                     step == STEP_CREATE ? ELECTION_REQUEST_CREATE : ELECTION_REQUEST_UPDATE, body, out);
}

static int issue_get(Election *e, uint64_t now, ElectionStep step, ElectionOutput *out)
{
        return issue(e, now, step, ELECTION_REQUEST_GET, NULL, out);
}

/* When a campaigning non-leader tries next. after_failure: an attempt just
 * failed, so wait at least a jittered retryPeriod (no hot loop on a
 * contended or broken Lease). */
static uint64_t acquisition_schedule(Election *e, uint64_t now, bool after_failure)
{
        uint64_t soonest = after_failure ? now + jittered_retry(e) : now;

        if (e->view == ELECTION_VIEW_WATCHED && e->have_view && !e->view_stale) {
                /* An empty holder is taken at once; a live holder is left
                 * alone until its record expires by our clock. */
                if (!e->exists || isempty(e->observed.holder) || is_holder(e))
                        return soonest;
                return MAX(soonest, expiry_of_observed(e));
        }
        if (e->view == ELECTION_VIEW_PENDING && !e->have_view && !after_failure)
                return now + e->config.retry_period_usec;
        return soonest;
}

static int finish_release(Election *e, ElectionTime now, ElectionOutput *out)
{
        e->releasing = false;
        e->step = STEP_IDLE;
        if (e->campaigning) {
                /* Campaign() came again while we were releasing. */
                e->next_attempt = acquisition_schedule(e, now.mono, true);
                return 0;
        }
        e->next_attempt = UINT64_MAX;
        out->events |= ELECTION_EVENT_DONE;
        return 0;
}

/* Release if the record (as we know it) names us; otherwise we are done. */
static int start_release(Election *e, ElectionTime now, ElectionOutput *out)
{
        int r;

        /* Never give the Lease away while telling anyone we lead. */
        lose(e, out);
        if (!is_holder(e) || now.mono >= e->release_deadline)
                return finish_release(e, now, out);
        r = issue_write(e, now, STEP_RELEASE, out);
        if (r < 0) {
                if (r == -ETIME)
                        return finish_release(e, now, out);
                e->next_attempt = now.mono + e->config.retry_period_usec;
                return r;
        }
        return 0;
}

static int attempt_failed(Election *e, ElectionTime now, ElectionOutput *out)
{
        e->step = STEP_IDLE;
        if (e->releasing)
                return start_release(e, now, out);
        if (!e->campaigning)
                return 0;
        if (e->leading)
                /* client-go polls every retryPeriod until the renew
                 * deadline; the deadline timer ends it. */
                e->next_attempt = now.mono + e->config.retry_period_usec;
        else
                e->next_attempt = acquisition_schedule(e, now.mono, true);
        return 0;
}

/* Steps 2-4 of tryAcquireOrRenew, on a view just read (GET) or kept fresh by
 * the watch. */
static int decide(Election *e, ElectionTime now, ElectionOutput *out)
{
        int r;

        /* We may lead only while the API names us. */
        if (e->leading && !is_holder(e))
                lose(e, out);

        if (!e->exists)
                r = issue_write(e, now, STEP_CREATE, out);
        else if (!isempty(e->observed.holder) && lease_valid(e, now.mono) && !is_holder(e))
                return attempt_failed(e, now, out);
        else
                r = issue_write(e, now, STEP_UPDATE, out);
        if (r < 0)
                (void)attempt_failed(e, now, out);
        return r == -ETIME ? 0 : r;
}

/* tryAcquireOrRenew, step 1 onwards. */
static int attempt(Election *e, ElectionTime now, ElectionOutput *out)
{
        int r;

        if (is_holder(e) && lease_valid(e, now.mono))
                r = issue_write(e, now, STEP_RENEW, out);
        else if (e->view == ELECTION_VIEW_WATCHED && e->have_view && !e->view_stale)
                return decide(e, now, out);
        else
                r = issue_get(e, now.mono, STEP_GET, out);
        if (r < 0)
                (void)attempt_failed(e, now, out);
        return r == -ETIME ? 0 : r;
}

static void run_due(Election *e, ElectionTime now, ElectionOutput *out, int *ret)
{
        int r;

        if (e->step != STEP_IDLE || now.mono < e->next_attempt)
                return;
        if (e->releasing)
                r = start_release(e, now, out);
        else if (e->campaigning)
                r = attempt(e, now, out);
        else
                return;
        if (r < 0 && *ret == 0)
                *ret = r;
}

static int succeeded(Election *e, ElectionTime now, uint64_t sent, json_t *object, ElectionOutput *out)
{
        int r;

        r = adopt(e, now.mono, object, out);
        if (r < 0 || !is_holder(e)) {
                /* The write went through but we cannot read what the server
                 * stored: the next attempt GETs it. */
                e->view_stale = true;
                return attempt_failed(e, now, out);
        }
        /* client-go sets observedTime on every successful write. */
        e->observed_time = now.mono;
        e->view_stale = false;

        if (!e->campaigning) {
                /* Withdrawn while this was in flight: give it back. */
                lose(e, out);
                return start_release(e, now, out);
        }

        if (sent + e->config.renew_deadline_usec <= now.mono) {
                /* Answered too late to count; the record names us, so the
                 * next attempt renews at once. */
                e->next_attempt = now.mono;
                return 0;
        }
        if (!e->leading) {
                e->leading = true;
                out->events |= ELECTION_EVENT_LEADING;
        } else
                out->events |= ELECTION_EVENT_RENEWED;
        e->deadline = sent + e->config.renew_deadline_usec;
        e->next_attempt = now.mono + e->config.retry_period_usec;
        return 0;
}

static bool http_ok(const ElectionResponse *resp)
{
        return resp->error == 0 && resp->http_status >= 200 && resp->http_status < 300;
}

static bool http_is(const ElectionResponse *resp, long status)
{
        return resp->error == 0 && resp->http_status == status;
}

int election_complete(Election *e, ElectionTime now, const ElectionResponse *resp, ElectionOutput *out)
{
        ElectionStep step = e->step;
        uint64_t sent;
        int r = 0;

        if (step == STEP_IDLE || resp->id != e->request_id)
                return 0; /* cancelled or superseded */

        check_deadline(e, now.mono, out);
        if (e->step == STEP_IDLE)
                return 0; /* the deadline passed and cancelled it */
        e->step = STEP_IDLE;

        /* Validity counts from the send time; the transport's handoff time
         * is never earlier than when we asked, and never later than when
         * the server wrote. */
        sent = MIN(MAX(resp->sent_usec, e->request_issued), now.mono);

        switch (step) {
        case STEP_RENEW:
                if (http_ok(resp))
                        return succeeded(e, now, sent, resp->object, out);
                if (http_is(resp, 409))
                        e->view_stale = true;
                /* client-go falls back to the slow path (GET) at once. */
                if (!e->campaigning)
                        return attempt_failed(e, now, out);
                r = issue_get(e, now.mono, STEP_GET, out);
                if (r < 0)
                        (void)attempt_failed(e, now, out);
                return r == -ETIME ? 0 : r;

        case STEP_GET:
                if (http_is(resp, 404))
                        r = adopt(e, now.mono, NULL, out);
                else if (http_ok(resp))
                        r = adopt(e, now.mono, resp->object, out);
                else
                        return attempt_failed(e, now, out);
                if (r < 0)
                        return attempt_failed(e, now, out);
                e->view_stale = false;
                if (!e->campaigning)
                        return attempt_failed(e, now, out);
                return decide(e, now, out);

        case STEP_CREATE:
        case STEP_UPDATE:
                if (http_ok(resp))
                        return succeeded(e, now, sent, resp->object, out);
                /* 409 (Conflict or AlreadyExists): someone wrote first, and
                 * the watch may not have shown it yet. */
                if (http_is(resp, 409))
                        e->view_stale = true;
                return attempt_failed(e, now, out);

        case STEP_RELEASE:
                if (http_ok(resp)) {
                        (void)adopt(e, now.mono, resp->object, out);
                        return finish_release(e, now, out);
                }
                if (http_is(resp, 404))
                        return finish_release(e, now, out);
                if (http_is(resp, 409)) {
                        r = issue_get(e, now.mono, STEP_RELEASE_GET, out);
                        if (r == -ETIME)
                                return finish_release(e, now, out);
                        return r;
                }
                e->next_attempt = now.mono + MIN(e->config.retry_period_usec, 500 * USEC_PER_MSEC);
                return 0;

        case STEP_RELEASE_GET:
                if (http_is(resp, 404))
                        return finish_release(e, now, out);
                if (http_ok(resp) && adopt(e, now.mono, resp->object, out) >= 0)
                        return start_release(e, now, out);
                e->next_attempt = now.mono + MIN(e->config.retry_period_usec, 500 * USEC_PER_MSEC);
                return 0;

        case STEP_IDLE:
                break;
        }
        return 0;
}

int election_campaign(Election *e, ElectionTime now, ElectionOutput *out)
{
        int r = 0;

        check_deadline(e, now.mono, out);
        if (e->campaigning)
                return 0;
        e->campaigning = true;
        if (e->releasing) {
                /* A release in flight finishes first, and finish_release()
                 * picks the campaign up; one not sent yet (waiting on an
                 * acquisition in flight, or on a retry) is dropped. */
                if (e->step == STEP_RELEASE || e->step == STEP_RELEASE_GET)
                        return 0;
                e->releasing = false;
        }
        if (e->step == STEP_IDLE) {
                e->next_attempt = acquisition_schedule(e, now.mono, false);
                run_due(e, now, out, &r);
        }
        return r;
}

int election_withdraw(Election *e, ElectionTime now, ElectionOutput *out)
{
        check_deadline(e, now.mono, out);
        if (!e->campaigning)
                return 0;
        e->campaigning = false;
        /* Stop acting as leader before anyone else can take the lease. */
        lose(e, out);
        e->releasing = true;
        e->release_deadline = now.mono + e->config.renew_deadline_usec;
        if (e->step != STEP_IDLE)
                /* An acquisition in flight may yet succeed: its completion
                 * releases what it got. */
                return 0;
        return start_release(e, now, out);
}

int election_observe(Election *e, ElectionTime now, json_t *lease, ElectionOutput *out)
{
        int changed, r = 0;

        check_deadline(e, now.mono, out);

        if (e->leading) {
                _cleanup_(lease_record_done) LeaseRecord rec = {};
                _cleanup_free_ char *rv = NULL;

                /* Our own writes' answers are authoritative, and a watch
                 * event may be older than the last of them: never adopt
                 * one while leading. One that names someone else (or shows
                 * the Lease gone) is checked with a GET right away. */
                if (lease && lease_record_from_json(lease, &rec, &rv) < 0)
                        return 0;
                if (lease && streq(rec.holder, e->identity)) {
                        /* The watch's copy of the object the last write
                         * answered (same resourceVersion: the same object):
                         * keep one tree of it, the watch cache's, not two. */
                        if (e->object != lease && rv && streq_ptr(rv, e->resource_version)) {
                                json_decref(e->object);
                                e->object = json_incref(lease);
                        }
                        return 0;
                }
                if (e->step != STEP_IDLE)
                        return 0;
                r = issue_get(e, now.mono, STEP_GET, out);
                return r == -ETIME ? 0 : r;
        }

        changed = adopt(e, now.mono, lease, out);
        if (changed < 0)
                return 0; /* malformed: ignore, like an unparseable watch event */
        e->view_stale = false;

        if (!e->campaigning || e->releasing || !changed)
                return 0;
        if (e->step == STEP_GET && e->view == ELECTION_VIEW_WATCHED)
                /* A GET in flight can only bring what the watch just showed,
                 * or an older record (read before this change was written):
                 * adopting that would undo a release seen here and make us
                 * wait a whole leaseDuration. Whatever was written after,
                 * the watch brings next; every write is conditional anyway.
                 * Decide on the watch's view now. */
                cancel_request(e, out);
        if (e->step != STEP_IDLE)
                return 0;
        e->next_attempt = acquisition_schedule(e, now.mono, false);
        run_due(e, now, out, &r);
        return r;
}

int election_set_view(Election *e, ElectionTime now, ElectionView view, json_t *lease, ElectionOutput *out)
{
        int r = 0;

        check_deadline(e, now.mono, out);
        if (view == ELECTION_VIEW_WATCHED && !e->leading) {
                /* The synced cache is as good as a GET. */
                if (adopt(e, now.mono, lease, out) < 0)
                        return 0;
                e->view_stale = false;
        }
        if (e->view == view)
                return 0;
        e->view = view;
        if (e->campaigning && !e->releasing && !e->leading && e->step == STEP_IDLE) {
                e->next_attempt = acquisition_schedule(e, now.mono, false);
                run_due(e, now, out, &r);
        }
        return r;
}

int election_timer(Election *e, ElectionTime now, ElectionOutput *out)
{
        int r = 0;

        check_deadline(e, now.mono, out);
        if (e->step != STEP_IDLE && now.mono >= e->request_expiry) {
                /* The transport never answered; treat it as a timeout. */
                ElectionResponse resp = {.id = e->request_id, .error = -ETIMEDOUT};

                out->cancel = true;
                r = election_complete(e, now, &resp, out);
        }
        run_due(e, now, out, &r);
        return r;
}

int election_admit(Election *e, ElectionTime now, ElectionOutput *out)
{
        if (!e->campaigning || e->leading || e->releasing || e->step != STEP_IDLE)
                return 0;
        e->next_attempt = MIN(e->next_attempt, now.mono);
        return election_timer(e, now, out);
}

uint64_t election_next_wakeup(const Election *e)
{
        uint64_t t = UINT64_MAX;

        if (e->leading)
                t = e->deadline;
        if (e->step != STEP_IDLE)
                t = MIN(t, e->request_expiry);
        else if (e->campaigning || e->releasing)
                t = MIN(t, e->next_attempt);
        return t;
}

const char *election_namespace(const Election *e)
{
        return e->namespace;
}

const char *election_name(const Election *e)
{
        return e->name;
}

bool election_is_campaigning(const Election *e)
{
        return e->campaigning;
}

bool election_is_leading(const Election *e)
{
        return e->leading;
}

uint64_t election_deadline(const Election *e)
{
        return e->leading ? e->deadline : 0;
}

const char *election_holder(const Election *e)
{
        return e->have_view && e->exists && e->observed.holder ? e->observed.holder : "";
}

const LeaseRecord *election_observed(const Election *e, uint64_t *ret_observed_time)
{
        if (ret_observed_time)
                *ret_observed_time = e->observed_time;
        return e->have_view && e->exists ? &e->observed : NULL;
}
