/* SPDX-License-Identifier: Apache-2.0 */
/* Turns the election's request intents into API calls: GET, POST to the
 * collection, PUT conditional on the body's resourceVersion, each with the
 * timeout the state machine chose, and hands the outcome back.
 *
 * Admission: a Lease taken is a Lease to renew every retryPeriod. When the
 * API answers slower than the renewals ask (requests wait for a place in
 * flight), taking more Leases would only make every renewal later, until
 * the ones held are lost together (1,000 campaigns against a slow API
 * server: hundreds fenced). So an acquisition is sent only while every
 * waiting request (renewals, in deadline order) has at least a quarter of
 * the renew deadline left, and fewer than LEASE_IO_ACQUISITIONS_MAX are in
 * flight; otherwise the election counts it as a failed attempt and tries
 * again when an acquisition in flight ends (the waiting campaigns are
 * admitted in the order they were refused), or a jittered retryPeriod
 * later if renewals are late. Renewals that wait with time to spare
 * are normal under load (served by deadline, each Lease is renewed less
 * often than every retryPeriod, still within its deadline), so they do not
 * stop acquisitions; renewals near their deadline do. The node then holds
 * as many Leases as the API lets it renew, and takes more as the API
 * catches up. */
#include <assert.h>

#include "catalog.h"
#include "log.h"
#include "manager.h"

static void api_reachability(Campaign *c, const KubeResponse *kr)
{
        Manager *m = c->manager;
        bool down = kr->error < 0 || kr->http_status >= 500;

        if (down == m->api_unreachable)
                return;
        m->api_unreachable = down;
        if (down && kr->error < 0)
                log_event(LOG_WARNING, kr->error, KVEGRESS_MESSAGE_API_UNREACHABLE,
                          LOG_OBJECT(.lease = c->key),
                          "Kubernetes API unreachable (a request for Lease %s failed): %m", c->key);
        else if (down)
                log_event(LOG_WARNING, 0, KVEGRESS_MESSAGE_API_UNREACHABLE, LOG_OBJECT(.lease = c->key),
                          "Kubernetes API unreachable (HTTP %ld %s for Lease %s)", kr->http_status,
                          kr->reason ?: "", c->key);
        else
                log_event(LOG_NOTICE, 0, KVEGRESS_MESSAGE_API_REACHABLE, LOG_OBJECT(.lease = c->key),
                          "Kubernetes API reachable again");
}

#define LEASE_IO_ACQUISITIONS_MAX 4U

static void admission_wake(Manager *m);

static void acquisition_done(Campaign *c)
{
        if (!c->acquiring)
                return;
        c->acquiring = false;
        assert(c->manager->n_acquiring > 0);
        c->manager->n_acquiring--;
        admission_wake(c->manager);
}

static bool acquisition_admitted(Manager *m)
{
        uint64_t earliest;

        if (m->n_acquiring >= LEASE_IO_ACQUISITIONS_MAX)
                return false;
        if (!kube_client_earliest_waiting(m->client, &earliest))
                return true;
        return earliest > manager_now().mono + m->election_config.renew_deadline_usec / 4;
}

static void waiter_remove(Campaign *c)
{
        Manager *m = c->manager;

        if (!c->admission_waiting)
                return;
        if (c->admission_prev)
                c->admission_prev->admission_next = c->admission_next;
        else
                m->admission_waiters = c->admission_next;
        if (c->admission_next)
                c->admission_next->admission_prev = c->admission_prev;
        else
                m->admission_waiters_tail = c->admission_prev;
        c->admission_prev = c->admission_next = NULL;
        c->admission_waiting = false;
}

static void waiter_append(Campaign *c)
{
        Manager *m = c->manager;

        if (c->admission_waiting)
                return;
        c->admission_waiting = true;
        c->admission_prev = m->admission_waiters_tail;
        c->admission_next = NULL;
        if (m->admission_waiters_tail)
                m->admission_waiters_tail->admission_next = c;
        else
                m->admission_waiters = c;
        m->admission_waiters_tail = c;
}

/* Outside any campaign's own callbacks (a defer source), so admitting one
 * campaign never runs inside another's completion. */
static int on_admission(sd_event_source *s, void *userdata)
{
        Manager *m = userdata;

        while (m->admission_waiters && acquisition_admitted(m)) {
                Campaign *c = m->admission_waiters;
                ElectionOutput out = {};
                int r;

                waiter_remove(c);
                r = election_admit(c->election, manager_now(), &out);
                /* c may be gone after this; a refusal appends it again and
                 * ends the loop by its own condition. */
                campaign_apply(c, &out, r);
        }
        return 0;
}

static void admission_wake(Manager *m)
{
        int r;

        if (!m->admission_waiters)
                return;
        if (!m->admission_event) {
                r = sd_event_add_defer(m->event, &m->admission_event, on_admission, m);
                if (r < 0) {
                        /* The waiters still try at their retry timers. */
                        log_debug_errno(r, "cannot add the admission source: %m");
                        return;
                }
                (void)sd_event_source_set_description(m->admission_event, "lease-admission");
        }
        (void)sd_event_source_set_enabled(m->admission_event, SD_EVENT_ONESHOT);
}

void lease_io_forget(Campaign *c)
{
        waiter_remove(c);
}

static const char *resource_version(json_t *o)
{
        return json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
}

/* The watch cache's tree when it already holds the object answered (same
 * resourceVersion: the same object), so the election keeps that one instead
 * of a second tree of the same Lease (about 2 KiB each). */
static json_t *same_in_cache(Campaign *c, json_t *object)
{
        const char *rv = resource_version(object);
        json_t *cached;

        if (!c->watch || !rv || !kube_informer_synced(c->watch->informer))
                return object;
        cached = kube_informer_get(c->watch->informer, election_namespace(c->election),
                                   election_name(c->election));
        return cached && streq_ptr(resource_version(cached), rv) ? cached : object;
}

static void on_response(KubeClient *client, const KubeResponse *kr, void *userdata)
{
        Campaign *c = userdata;
        ElectionResponse resp = {
                .id = c->request_id,
                .error = kr->error,
                .http_status = kr->http_status,
                .sent_usec = kr->sent_usec,
        };

        c->request = NULL;
        acquisition_done(c);
        api_reachability(c, kr);
        if (kr->error == 0 && kr->http_status >= 200 && kr->http_status < 300 && json_is_object(kr->body))
                resp.object = same_in_cache(c, kr->body);
        if (kr->error < 0)
                log_debug_errno(kr->error, "%s: request failed: %m", c->key);
        else if (kr->http_status == 409)
                /* An ordinary race: another node (or our own earlier write)
                 * changed the Lease first; the election re-reads it. */
                log_debug("%s: the Lease changed under this write (another node wrote first); re-reading it",
                          c->key);
        else if (kr->http_status >= 300)
                log_debug("%s: HTTP %ld %s: %s", c->key, kr->http_status, kr->reason ?: "",
                          kr->message ?: "");
        campaign_complete(c, &resp);
}

int lease_io_send(Campaign *c, const ElectionRequest *req)
{
        const char *ns = election_namespace(c->election), *name = election_name(c->election);
        _cleanup_free_ char *path = NULL;
        KubeRequestOptions opts = {.timeout_usec = req->timeout_usec, .priority_usec = req->priority_usec};
        const char *method;
        int r;

        switch (req->type) {
        case ELECTION_REQUEST_GET:
                method = "GET";
                break;
        case ELECTION_REQUEST_CREATE:
                method = "POST";
                name = NULL; /* the collection */
                break;
        case ELECTION_REQUEST_UPDATE:
                method = "PUT";
                break;
        default:
                return -EINVAL;
        }
        r = kube_resource_path(&kube_resource_leases, ns, name, NULL, &path);
        if (r < 0)
                return r;

        lease_io_cancel(c);
        if (req->acquisition && !acquisition_admitted(c->manager)) {
                log_debug("%s: not taking the Lease now: acquisitions in flight, or renewals late", c->key);
                waiter_append(c);
                return -EBUSY;
        }
        waiter_remove(c);
        c->request_id = req->id;
        r = kube_request(c->manager->client, method, path, req->body, &opts, on_response, c, &c->request);
        if (r < 0) {
                c->request = NULL;
                return r;
        }
        if (req->acquisition) {
                c->acquiring = true;
                c->manager->n_acquiring++;
        }
        return 0;
}

void lease_io_cancel(Campaign *c)
{
        kube_request_cancel(c->request);
        c->request = NULL;
        acquisition_done(c);
}
