/* SPDX-License-Identifier: Apache-2.0 */
#include "manager.h"

#include <search.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "catalog.h"
#include "clock.h"
#include "kvelectd-bus.h"
#include "log.h"

/* Timers fire within this of their time: the renew deadline is reported
 * on time, and kvnetd fences on its own clock anyway. */
#define TIMER_ACCURACY_USEC (1 * USEC_PER_MSEC)

ElectionTime manager_now(void)
{
        return (ElectionTime){.mono = clock_usec(CLOCK_MONOTONIC), .real = clock_usec(CLOCK_REALTIME)};
}

static double manager_random(void *userdata)
{
        Manager *m = userdata;
        return (double)rand_r(&m->random_state) / ((double)RAND_MAX + 1.0);
}

static int campaign_cmp(const void *a, const void *b)
{
        return strcmp(((const Campaign *)a)->key, ((const Campaign *)b)->key);
}

static char *campaign_key(const char *namespace, const char *name)
{
        char *k = NULL;

        if (asprintf(&k, "%s/%s", namespace, name) < 0)
                return NULL;
        return k;
}

static void campaign_free(Campaign *c)
{
        Manager *m;

        if (!c)
                return;
        m = c->manager;
        lease_io_cancel(c);
        lease_io_forget(c);
        sd_event_source_disable_unref(c->timer);
        if (c->prev)
                c->prev->next = c->next;
        else if (m->campaigns == c)
                m->campaigns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (tdelete(c, &m->campaign_index, campaign_cmp))
                m->n_campaigns--;
        if (c->watch)
                lease_watch_unref(c->watch);
        election_free(c->election);
        free(c->key);
        free(c);
}

Campaign *manager_find(Manager *m, const char *namespace, const char *name)
{
        _cleanup_free_ char *key = campaign_key(namespace, name);
        Campaign probe = {.key = key}, **found;

        if (!key)
                return NULL;
        found = tfind(&probe, &m->campaign_index, campaign_cmp);
        return found ? *found : NULL;
}

static int on_campaign_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        Campaign *c = userdata;
        ElectionOutput out = {};
        int r;

        r = election_timer(c->election, manager_now(), &out);
        campaign_apply(c, &out, r);
        return 0;
}

static void campaign_arm(Campaign *c)
{
        uint64_t t = election_next_wakeup(c->election);
        int r;

        if (t == UINT64_MAX) {
                if (c->timer)
                        (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return;
        }
        if (!c->timer) {
                r = sd_event_add_time(c->manager->event, &c->timer, CLOCK_MONOTONIC, t, TIMER_ACCURACY_USEC,
                                      on_campaign_timer, c);
                if (r < 0) {
                        log_error_errno(r, "%s: cannot add a timer: %m", c->key);
                        return;
                }
                (void)sd_event_source_set_description(c->timer, "campaign-timer");
                return;
        }
        r = sd_event_source_set_time(c->timer, t);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "%s: cannot arm the timer: %m", c->key);
}

static void log_events(Campaign *c, unsigned events)
{
        Election *e = c->election;

        introspect_note_campaign(c, events);
        if (events & ELECTION_EVENT_LEADING) {
                if (election_is_leading(e)) {
                        uint64_t now = clock_usec(CLOCK_MONOTONIC), d = election_deadline(e);

                        log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_LEADERSHIP_GAINED,
                                  LOG_OBJECT(.lease = c->key, .node = c->manager->identity),
                                  "%s: leading (valid for %llums unless renewed)", c->key,
                                  (unsigned long long)((d > now ? d - now : 0) / USEC_PER_MSEC));
                } else if (strcasecmp(election_holder(e), c->manager->identity) == 0)
                        /* Still named in the Lease: withdrawn or stopping,
                         * the release is on its way. */
                        log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_LEADERSHIP_LOST,
                                  LOG_OBJECT(.lease = c->key, .node = c->manager->identity),
                                  "%s: no longer leading (withdrawn); releasing the Lease", c->key);
                else if (isempty(election_holder(e)))
                        log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_LEADERSHIP_LOST,
                                  LOG_OBJECT(.lease = c->key, .node = c->manager->identity),
                                  "%s: not leading (no holder yet)", c->key);
                else
                        log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_LEADERSHIP_LOST,
                                  LOG_OBJECT(.lease = c->key, .node = c->manager->identity),
                                  "%s: not leading (held by \"%s\")", c->key, election_holder(e));
        } else if (events & ELECTION_EVENT_HOLDER)
                log_debug("%s: holder is now \"%s\"", c->key, election_holder(e));
}

void campaign_apply(Campaign *c, ElectionOutput *out, int r)
{
        Manager *m = c->manager;

        /* A failed input (out of memory building a body) has already been
         * turned into a failed attempt by the state machine. */
        if (r < 0)
                log_warning_errno(r, "%s: election step failed, retrying later: %m", c->key);

        for (;;) {
                if (out->cancel)
                        lease_io_cancel(c);
                if (out->events) {
                        unsigned ev = out->events;

                        log_events(c, ev);
                        /* The Lease names us but we do not lead it (yet): a
                         * restarted kvelectd reading its own Lease, which it
                         * is about to renew (client-go does the same). kvpd
                         * kept leading across the restart; "not leading" now
                         * would make it drop the VIP for nothing. The renewal
                         * tells it one way or the other; its failure ends
                         * kvpd's leadership at the old deadline. */
                        if ((ev & ELECTION_EVENT_HOLDER) && !(ev & ELECTION_EVENT_LEADING) &&
                            !election_is_leading(c->election) && election_is_campaigning(c->election) &&
                            streq(election_holder(c->election), m->identity))
                                ev &= ~(unsigned)ELECTION_EVENT_HOLDER;
                        if (ev & (ELECTION_EVENT_LEADING | ELECTION_EVENT_HOLDER))
                                bus_emit_leadership_changed(m, c);
                        else if (ev & ELECTION_EVENT_RENEWED)
                                bus_emit_renewed(m, c);
                }
                if (out->events & ELECTION_EVENT_DONE) {
                        election_output_done(out);
                        campaign_free(c);
                        if (m->stopping && m->n_campaigns == 0)
                                (void)sd_event_exit(m->event, 0);
                        return;
                }
                if (out->request.type == ELECTION_REQUEST_NONE)
                        break;

                r = lease_io_send(c, &out->request);
                if (r >= 0)
                        break;

                {
                        /* Could not even hand it to the transport: the
                         * same as a request that failed at once. */
                        ElectionResponse resp = {.id = out->request.id, .error = r};

                        log_debug_errno(r, "%s: cannot send request: %m", c->key);
                        election_output_done(out);
                        r = election_complete(c->election, manager_now(), &resp, out);
                        if (r < 0)
                                log_warning_errno(r, "%s: election step failed: %m", c->key);
                }
        }
        election_output_done(out);
        campaign_arm(c);
}

void campaign_observe(Campaign *c, json_t *lease)
{
        ElectionOutput out = {};
        int r = election_observe(c->election, manager_now(), lease, &out);
        campaign_apply(c, &out, r);
}

void campaign_set_view(Campaign *c, ElectionView view, json_t *lease)
{
        ElectionOutput out = {};
        int r = election_set_view(c->election, manager_now(), view, lease, &out);
        campaign_apply(c, &out, r);
}

void campaign_complete(Campaign *c, const ElectionResponse *resp)
{
        ElectionOutput out = {};
        int r = election_complete(c->election, manager_now(), resp, &out);
        campaign_apply(c, &out, r);
}

static int campaign_new(Manager *m, const char *namespace, const char *name, Campaign **ret)
{
        Campaign *c;
        void *slot;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->key = campaign_key(namespace, name);
        if (!c->key) {
                free(c);
                return -ENOMEM;
        }
        r = election_new(&m->election_config, namespace, name, &c->election);
        if (r < 0) {
                free(c->key);
                free(c);
                return r;
        }
        slot = tsearch(c, &m->campaign_index, campaign_cmp);
        if (!slot) {
                election_free(c->election);
                free(c->key);
                free(c);
                return -ENOMEM;
        }
        m->n_campaigns++;
        c->next = m->campaigns;
        if (c->next)
                c->next->prev = c;
        m->campaigns = c;

        if (!m->no_watch) {
                r = lease_watch_ref(m, namespace, &c->watch);
                if (r < 0) {
                        campaign_free(c);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

int manager_campaign(Manager *m, const char *namespace, const char *name)
{
        ElectionOutput out = {};
        Campaign *c;
        int r;

        if (m->stopping)
                return -EBUSY;
        c = manager_find(m, namespace, name);
        if (!c) {
                if (m->n_campaigns >= KVELECTD_MAX_CAMPAIGNS)
                        return -E2BIG;
                r = campaign_new(m, namespace, name, &c);
                if (r < 0)
                        return r;
                log_debug("%s: campaigning as \"%s\"", c->key, m->identity);
                if (c->watch) {
                        json_t *lease = NULL;
                        ElectionView view = lease_watch_view(c->watch, name, &lease);

                        r = election_set_view(c->election, manager_now(), view, lease, &out);
                        campaign_apply(c, &out, r);
                }
        } else if (election_is_campaigning(c->election) && election_is_leading(c->election)) {
                /* A reconnecting kvpd learns the state this way. */
                bus_emit_leadership_changed(m, c);
                return 0;
        }
        r = election_campaign(c->election, manager_now(), &out);
        campaign_apply(c, &out, r);
        return 0;
}

int manager_withdraw(Manager *m, const char *namespace, const char *name)
{
        ElectionOutput out = {};
        Campaign *c;
        int r;

        c = manager_find(m, namespace, name);
        if (!c)
                return 0;
        log_debug("%s: withdrawing", c->key);
        r = election_withdraw(c->election, manager_now(), &out);
        campaign_apply(c, &out, r);
        return 0;
}

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Manager *m = userdata;

        log_warning("%u lease(s) not released in time, exiting anyway", m->n_campaigns);
        return sd_event_exit(m->event, 0);
}

/* Withdraw releases each held Lease (LeadershipChanged(leading=false) goes
 * out first). Campaigns with nothing to release are freed on the way. */
static void withdraw_all(Manager *m)
{
        Campaign *next;

        for (Campaign *c = m->campaigns; c; c = next) {
                ElectionOutput out = {};
                int r;

                next = c->next;
                r = election_withdraw(c->election, manager_now(), &out);
                /* May free c (nothing to release); next was taken first. */
                campaign_apply(c, &out, r);
                if (m->n_campaigns == 0)
                        break;
        }
}

static int on_orphan_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        Manager *m = userdata;

        if (m->stopping || bus_server_n_connections(m->bus) > 0)
                return 0;
        log_warning("no client for %llums: withdrawing %u campaign(s), releasing their Leases",
                    (unsigned long long)(m->election_config.renew_deadline_usec / USEC_PER_MSEC),
                    m->n_campaigns);
        withdraw_all(m);
        return 0;
}

/* Why renewDeadline: kvpd passes each renewal's deadline on to kvnetd as
 * the VIP's grant deadline (send time of the renewal + renewDeadline -
 * margin). A kvpd that is gone renews no grant, and every renewal it passed
 * on was sent before it went, so kvnetd has fenced all of this node's VIPs
 * by renewDeadline after the disconnect. Holding the Leases longer only
 * keeps every other node from serving those Services: an outage nobody else
 * can end. Releasing them sooner would let another node bind a VIP this
 * node may still have. A kvpd restarted by systemd reconnects within a
 * second or two, well inside it, and replays its campaigns. */
void manager_connections_changed(BusServer *s, unsigned n_connections, void *userdata)
{
        Manager *m = userdata;
        int r;
        (void)s;

        if (n_connections > 0) {
                if (m->orphan_timer && sd_event_source_get_enabled(m->orphan_timer, NULL) > 0) {
                        (void)sd_event_source_set_enabled(m->orphan_timer, SD_EVENT_OFF);
                        log_info("a client connected: keeping the %u campaign(s)", m->n_campaigns);
                }
                return;
        }
        if (m->stopping || m->n_campaigns == 0)
                return;
        if (!m->orphan_timer) {
                r = sd_event_add_time_relative(m->event, &m->orphan_timer, CLOCK_MONOTONIC,
                                               m->election_config.renew_deadline_usec, TIMER_ACCURACY_USEC,
                                               on_orphan_timer, m);
                if (r >= 0)
                        (void)sd_event_source_set_description(m->orphan_timer, "orphan-timer");
        } else {
                r = sd_event_source_set_time_relative(m->orphan_timer,
                                                      m->election_config.renew_deadline_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->orphan_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                /* Without the timer a dead kvpd would pin the Leases. */
                log_error_errno(r, "cannot arm the orphan timer, withdrawing every campaign now: %m");
                withdraw_all(m);
                return;
        }
        log_notice("last client gone: withdrawing %u campaign(s) in %llums unless one connects",
                   m->n_campaigns,
                   (unsigned long long)(m->election_config.renew_deadline_usec / USEC_PER_MSEC));
}

void manager_stop(Manager *m)
{
        int r;

        if (m->stopping) {
                /* A second SIGTERM: leave now. */
                (void)sd_event_exit(m->event, 0);
                return;
        }
        m->stopping = true;
        log_info("stopping: releasing %u campaign(s)", m->n_campaigns);
        if (m->n_campaigns == 0) {
                (void)sd_event_exit(m->event, 0);
                return;
        }
        /* Each release is bounded by renewDeadline in the state machine;
         * this is the backstop. */
        r = sd_event_add_time_relative(m->event, &m->stop_timer, CLOCK_MONOTONIC,
                                       m->election_config.renew_deadline_usec + 500 * USEC_PER_MSEC,
                                       TIMER_ACCURACY_USEC, on_stop_timeout, m);
        if (r < 0)
                log_warning_errno(r, "cannot arm the stop timer: %m");
        withdraw_all(m);
}

int manager_new(sd_event *event, KubeClient *client, const ManagerOptions *opts, Manager **ret)
{
        _cleanup_(manager_freep) Manager *m = NULL;
        unsigned seed;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->client = client;
        m->identity = strdup(opts->identity);
        if (!m->identity)
                return -ENOMEM;
        m->no_watch = opts->no_watch;
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
                seed = (unsigned)clock_usec(CLOCK_MONOTONIC) ^ (unsigned)getpid();
        m->random_state = seed;
        m->election_config = (ElectionConfig){
                .identity = m->identity,
                .lease_duration_usec = opts->lease_duration_usec,
                .renew_deadline_usec = opts->renew_deadline_usec,
                .retry_period_usec = opts->retry_period_usec,
                .random = manager_random,
                .random_userdata = m,
        };
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m)
{
        if (!m)
                return NULL;
        while (m->campaigns)
                campaign_free(m->campaigns);
        /* The last campaign of a namespace took its watch along. */
        sd_event_source_disable_unref(m->stop_timer);
        sd_event_source_disable_unref(m->orphan_timer);
        sd_event_source_disable_unref(m->admission_event);
        loop_lag_stop(&m->metrics.loop_lag);
        bus_server_free(m->bus);
        kube_client_free(m->client);
        sd_event_unref(m->event);
        free(m->identity);
        free(m);
        return NULL;
}
