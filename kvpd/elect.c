/* SPDX-License-Identifier: Apache-2.0 */
/* kvelectd's client: "may I?". A Service campaigns for its Lease only while
 * this node has a local ready endpoint (kube-vip's rule for Local policy),
 * and withdraws when the last one goes, so the lease moves to a node that
 * has one. Several Services may name one Lease (kube-vip.io/leaseName); the
 * campaign then lasts while any of them wants it.
 *
 * Restarts. When kvelectd goes away, leadership is kept until its deadline
 * rather than given up at once: kvnetd fences every VIP by itself at that
 * deadline (less a margin), so waiting is safe, and a kvelectd restarted
 * within the deadline finds this node's identity in the Lease, renews it and
 * confirms leadership without the VIP ever leaving. After every (re)connect
 * the campaigns are replayed; until kvelectd has answered them, this node's
 * leadership is "not known yet" and nothing is torn down on its account
 * (kvnetd's stale-state clean-up, status clears). After the first sync,
 * campaigns kvelectd still runs for leases no Service wants are withdrawn. */
#include <time.h>

#include "array.h"
#include "catalog.h"
#include "carry.h"
#include "elect.h"
#include "kvelectd-bus.h"
#include "log.h"
#include "service.h"

Lease *elect_find(Manager *m, const char *namespace, const char *name)
{
        _cleanup_free_ char *key = NULL;

        if (!namespace || !name || asprintf(&key, "%s/%s", namespace, name) < 0)
                return NULL;
        return hashmap_get(&m->leases_by_key, key);
}

/* The campaign in flight, counted: whether any is pending is asked after
 * every answer, which at 1,000 leases made start-up quadratic. */
static void lease_set_campaign_slot(Lease *l, sd_bus_slot *slot)
{
        if (l->campaign_slot)
                l->manager->n_campaigns_pending--;
        sd_bus_slot_unref(l->campaign_slot);
        l->campaign_slot = slot;
        if (slot)
                l->manager->n_campaigns_pending++;
}

static int lease_add_service(Lease *l, Service *s)
{
        if (ARRAY_RESERVE(l->services, l->cap_services, l->n_services + 1) < 0)
                return -ENOMEM;
        l->services[l->n_services++] = s;
        return 0;
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        (void)userdata;
        (void)ret_error;

        if (e)
                log_warning("kvelectd: %s: %s", e->name, e->message ? e->message : "");
        return 0;
}

static int on_stop_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;

        (void)on_reply(reply, NULL, ret_error);
        m->reports->stop_call_done(m);
        return 0;
}

static int send_call(Manager *m, const char *method, Lease *l, bool for_stop);

#define CAMPAIGN_RETRY_USEC (5 * USEC_PER_SEC)

static int on_campaign_retry(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        (void)es;
        (void)usec;

        for (size_t i = 0; i < m->n_leases; i++) {
                Lease *l = m->leases[i];

                if (l->refused && l->n_wanted > 0 && !l->campaign_slot && !m->stopping)
                        (void)send_call(m, KVELECTD_METHOD_CAMPAIGN, l, false);
        }
        return 0;
}

/* A refusal blocks egress of every Service of the lease: one Warning Event
 * naming the cause, when it is news. Limits and a stopping kvelectd can go
 * away, so those campaigns are retried; bad names cannot (kvpd checked
 * them), so those are not. */
static void campaign_refused(Manager *m, Lease *l, const sd_bus_error *e)
{
        char why[512];
        bool retry = sd_bus_error_has_name(e, SD_BUS_ERROR_LIMITS_EXCEEDED) ||
                     sd_bus_error_has_name(e, SD_BUS_ERROR_FAILED) ||
                     sd_bus_error_has_name(e, SD_BUS_ERROR_NO_MEMORY);
        int r;

        (void)snprintf(why, sizeof(why), "kvelectd refused Campaign for lease %s/%s: %s", l->namespace,
                       l->name, e->message ? e->message : e->name);
        for (size_t i = 0; i < m->n_services; i++) {
                Service *s = m->services[i];

                if (s->lease != l || !service_error_set(s, "kvelectd", why))
                        continue;
                log_event(LOG_WARNING, 0, KVEGRESS_MESSAGE_EGRESS_REFUSED,
                          LOG_OBJECT(.service = s->key, .lease = s->lease->name, .daemon = "kvelectd",
                                     .node = m->config.node_name),
                          "%s: %s%s", s->key, why, retry ? "; retrying every 5s" : "");
                m->reports->refused(s, why);
        }
        l->refused = retry;
        if (!retry)
                return;
        if (!m->campaign_retry_source)
                r = sd_event_add_time_relative(m->event, &m->campaign_retry_source, CLOCK_MONOTONIC,
                                               CAMPAIGN_RETRY_USEC, 0, on_campaign_retry, m);
        else {
                r = sd_event_source_set_time_relative(m->campaign_retry_source, CAMPAIGN_RETRY_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->campaign_retry_source, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "cannot schedule a Campaign retry: %m");
}

/* kvelectd emits LeadershipChanged(leading=true) before it answers a
 * Campaign it already leads, so once the answer is in, leadership is known. */
static int on_campaign_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Lease *l = userdata;
        Manager *m = l->manager;

        /* sd-bus answers pending calls with an error when the connection
         * closes; that is no answer, and the disconnect handler follows. */
        if (sd_bus_is_open(sd_bus_message_get_bus(reply)) <= 0)
                return 0;
        if (sd_bus_message_is_method_error(reply, NULL))
                campaign_refused(m, l, sd_bus_message_get_error(reply));
        else {
                l->refused = false;
                for (size_t i = 0; i < m->n_services; i++)
                        if (m->services[i]->lease == l)
                                service_error_clear(m->services[i], "kvelectd");
        }
        lease_set_campaign_slot(l, NULL);
        m->reports->lease_changed(l, false);
        m->reports->startup_facts_changed(m); /* it may have been the last one unanswered */
        return 0;
}

static int send_call(Manager *m, const char *method, Lease *l, bool for_stop)
{
        sd_bus *bus = bus_client_get(m->kvelectd);
        bool campaign = streq(method, KVELECTD_METHOD_CAMPAIGN);
        sd_bus_slot *slot = NULL;
        int r;

        if (!bus)
                return -ENOTCONN; /* replayed on connect */
        if (campaign)
                lease_set_campaign_slot(l, NULL);
        r = sd_bus_call_method_async(bus, campaign ? &slot : NULL, NULL, KVELECTD_BUS_PATH,
                                     KVELECTD_BUS_INTERFACE, method,
                                     campaign   ? on_campaign_reply
                                     : for_stop ? on_stop_reply
                                                : on_reply,
                                     campaign ? (void *)l : (void *)m, "ss", l->namespace, l->name);
        if (r < 0)
                return log_warning_errno(r, "kvelectd: %s(%s/%s) not sent: %m", method, l->namespace,
                                         l->name);
        if (campaign)
                lease_set_campaign_slot(l, slot);
        if (for_stop)
                m->stop_pending++;
        log_debug("kvelectd: %s(%s/%s)", method, l->namespace, l->name);
        return 0;
}

static Lease *lease_free(Lease *l)
{
        if (!l)
                return NULL;
        lease_set_campaign_slot(l, NULL);
        free(l->key);
        free(l->services);
        free(l->namespace);
        free(l->name);
        free(l->holder);
        free(l);
        return NULL;
}

/* Not sd-event's default of 250 ms: a deadline is a deadline. */
#define LEASE_DEADLINE_ACCURACY_USEC (1 * USEC_PER_MSEC)

static int on_lease_deadline(sd_event_source *es, uint64_t usec, void *userdata);

/* The timer runs for carried leadership only: a kvelectd that is connected
 * and has confirmed a lease reports its loss itself, at the same deadline. */
static void arm_lease_deadline(Manager *m)
{
        uint64_t t = UINT64_MAX;
        int r;

        for (size_t i = 0; i < m->n_leases; i++)
                if (m->leases[i]->leading && m->leases[i]->carried)
                        t = MIN(t, m->leases[i]->deadline_usec);
        if (t == UINT64_MAX) {
                if (m->lease_deadline_source)
                        (void)sd_event_source_set_enabled(m->lease_deadline_source, SD_EVENT_OFF);
                return;
        }
        if (!m->lease_deadline_source)
                r = sd_event_add_time(m->event, &m->lease_deadline_source, CLOCK_MONOTONIC, t,
                                      LEASE_DEADLINE_ACCURACY_USEC, on_lease_deadline, m);
        else {
                r = sd_event_source_set_time(m->lease_deadline_source, t);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->lease_deadline_source, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                /* Without the timer, carried leadership could outlive its
                 * deadline here: give it up now instead. */
                log_error_errno(r, "cannot arm the lease deadline timer, giving carried leases up: %m");
                for (size_t i = 0; i < m->n_leases; i++)
                        if (m->leases[i]->leading && m->leases[i]->carried) {
                                m->leases[i]->leading = m->leases[i]->carried = false;
                                m->leases[i]->deadline_usec = 0;
                                m->reports->lease_changed(m->leases[i], false);
                        }
        }
}

static int on_lease_deadline(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        uint64_t now = 0;
        (void)es;
        (void)usec;

        (void)sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        for (size_t i = 0; i < m->n_leases; i++) {
                Lease *l = m->leases[i];

                if (!l->leading || !l->carried || l->deadline_usec > now)
                        continue;
                log_warning("lease %s/%s: not renewed by its deadline (kvelectd %s): no longer leading",
                            l->namespace, l->name,
                            bus_client_get(m->kvelectd) ? "restarted but has not renewed it" : "is gone");
                l->leading = l->carried = false;
                l->deadline_usec = 0;
                m->reports->lease_changed(l, false);
        }
        arm_lease_deadline(m);
        return 0;
}

static Lease *lease_want(Manager *m, Service *s, const char *namespace, const char *name)
{
        Lease *l = elect_find(m, namespace, name);
        char *key = NULL;

        if (!l) {
                l = calloc(1, sizeof(*l));
                if (!l)
                        return NULL;
                l->manager = m;
                l->namespace = strdup(namespace);
                l->name = strdup(name);
                if (asprintf(&key, "%s/%s", namespace, name) < 0)
                        key = NULL;
                l->key = TAKE_PTR(key);
                if (!l->namespace || !l->name || !l->key ||
                    ARRAY_RESERVE(m->leases, m->cap_leases, m->n_leases + 1) < 0 ||
                    hashmap_put(&m->leases_by_key, l->key, l) < 0)
                        return lease_free(l);
                l->index = m->n_leases;
                m->leases[m->n_leases++] = l;
        }
        if (lease_add_service(l, s) < 0) {
                if (l->n_wanted == 0) {
                        (void)hashmap_remove(&m->leases_by_key, l->key);
                        m->leases[l->index] = m->leases[--m->n_leases];
                        m->leases[l->index]->index = l->index;
                        lease_free(l);
                }
                return NULL;
        }
        l->n_wanted++;
        if (!l->campaign_sent && send_call(m, KVELECTD_METHOD_CAMPAIGN, l, false) >= 0)
                l->campaign_sent = true;
        return l;
}

static void lease_unwant(Manager *m, Service *s, Lease *l, bool for_stop)
{
        lease_drop_service(l, s);
        if (--l->n_wanted > 0)
                return;
        /* Withdraw releases the Lease at once if we hold it, so the next
         * node with a ready pod takes over without waiting for expiry. */
        (void)send_call(m, KVELECTD_METHOD_WITHDRAW, l, for_stop);
        (void)hashmap_remove(&m->leases_by_key, l->key);
        m->leases[l->index] = m->leases[--m->n_leases];
        m->leases[l->index]->index = l->index;
        lease_free(l);
        arm_lease_deadline(m);
        /* Its Campaign may have been the last one unanswered. */
        m->reports->startup_facts_changed(m);
}

void elect_apply(Service *s, unsigned actions)
{
        Manager *m = s->manager;
        const EgressPolicy *p = s->policy;

        /* ELECT_ACTION_WAIT_REMOVAL: kvnetd's answer to RemoveService
         * comes back here (net.c), and the lease goes then. */
        if (actions & ELECT_ACTION_WITHDRAW) {
                log_info("%s: withdrawing from lease %s/%s%s", s->key, s->lease->namespace, s->lease->name,
                         actions & ELECT_ACTION_CAMPAIGN ? " (lease name changed)" : "");
                lease_unwant(m, s, TAKE_PTR(s->lease), false);
        }
        if (actions & ELECT_ACTION_CAMPAIGN) {
                s->lease = lease_want(m, s, p->lease_namespace, p->lease_name);
                if (!s->lease)
                        log_error("%s: out of memory campaigning", s->key);
                else
                        log_info("%s: campaigning for lease %s/%s (%zu local pods)", s->key,
                                 p->lease_namespace, p->lease_name, p->n_pods);
        }
}

void elect_release_all(Manager *m)
{
        for (size_t i = 0; i < m->n_services; i++) {
                Service *s = m->services[i];
                if (s->lease)
                        lease_unwant(m, s, TAKE_PTR(s->lease), true);
        }
}

static int on_leadership(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const char *ns, *name, *holder;
        uint64_t deadline;
        int leading, r;
        bool was_leading, was_carried;
        Lease *l;
        (void)ret_error;

        r = sd_bus_message_read(msg, KVELECTD_SIG_LEADERSHIP, &ns, &name, &leading, &deadline, &holder);
        if (r < 0)
                return log_warning_errno(r, "kvelectd: malformed %s signal: %m", KVELECTD_SIGNAL_LEADERSHIP),
                       0;
        l = elect_find(m, ns, name);
        if (!l)
                return 0; /* withdrawn meanwhile */
        free(l->holder);
        l->holder = strdup(holder);
        if (l->leading != !!leading)
                log_info("lease %s/%s: %s (holder %s)", ns, name, leading ? "leading" : "not leading",
                         isempty(holder) ? "none" : holder);
        else if (l->carried && leading)
                log_info("lease %s/%s: leadership confirmed by kvelectd", ns, name);
        was_leading = l->leading;
        was_carried = l->carried;
        /* Whatever it says, the kvelectd connected now speaks for it. */
        l->carried = false;
        l->leading = leading;
        l->deadline_usec = leading ? deadline : 0;
        if (was_carried)
                arm_lease_deadline(m);
        m->reports->lease_changed(l, was_leading);
        return 0;
}

static int on_renewed(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const char *ns, *name;
        uint64_t deadline;
        Lease *l;
        int r;
        (void)ret_error;

        r = sd_bus_message_read(msg, KVELECTD_SIG_RENEWED, &ns, &name, &deadline);
        if (r < 0)
                return log_warning_errno(r, "kvelectd: malformed %s signal: %m", KVELECTD_SIGNAL_RENEWED), 0;
        l = elect_find(m, ns, name);
        if (!l) {
                carry_renewed(m, ns, name, deadline);
                return 0;
        }
        if (!l->leading)
                return 0;
        l->deadline_usec = deadline;
        m->reports->lease_renewed(l);
        return 0;
}

static void on_state(BusClient *c, sd_bus *bus, void *userdata)
{
        Manager *m = userdata;
        int r;
        (void)c;

        m->kvelectd_leadership_slot = sd_bus_slot_unref(m->kvelectd_leadership_slot);
        m->kvelectd_renewed_slot = sd_bus_slot_unref(m->kvelectd_renewed_slot);
        if (!bus) {
                unsigned n = 0;

                /* Nobody renews now, but the Lease stays ours until its
                 * deadline and kvnetd fences the VIPs by then on its own.
                 * Keep leading until that deadline, so a kvelectd restarted
                 * in time changes nothing (it renews our own Lease). */
                for (size_t i = 0; i < m->n_leases; i++) {
                        Lease *l = m->leases[i];

                        l->campaign_sent = false;
                        lease_set_campaign_slot(l, NULL);
                        if (l->leading) {
                                l->carried = true;
                                n++;
                        }
                }
                if (n > 0)
                        log_notice("kvelectd gone: keeping %u lease(s) until their deadlines unless it "
                                   "comes back",
                                   n);
                arm_lease_deadline(m);
                /* The answers it owed will not come: kvnetd's clean-up need
                 * not wait for them. */
                m->reports->startup_event(m, STARTUP_KVELECTD_GONE);
                return;
        }
        r = sd_bus_match_signal(bus, &m->kvelectd_leadership_slot, NULL, KVELECTD_BUS_PATH,
                                KVELECTD_BUS_INTERFACE, KVELECTD_SIGNAL_LEADERSHIP, on_leadership, m);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &m->kvelectd_renewed_slot, NULL, KVELECTD_BUS_PATH,
                                        KVELECTD_BUS_INTERFACE, KVELECTD_SIGNAL_RENEWED, on_renewed, m);
        if (r < 0)
                log_error_errno(r, "kvelectd: cannot subscribe to signals: %m");
        /* Replay: Campaign is idempotent, and kvelectd answers a campaign it
         * already leads with LeadershipChanged(leading=true). A restarted
         * kvelectd confirms carried leadership once it has renewed. */
        for (size_t i = 0; i < m->n_leases; i++)
                m->leases[i]->campaign_sent =
                        send_call(m, KVELECTD_METHOD_CAMPAIGN, m->leases[i], false) >= 0;
        m->reports->startup_event(m, STARTUP_KVELECTD_CONNECTED);
}

static int on_list_campaigns_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        sd_bus *bus = sd_bus_message_get_bus(reply);
        const char *ns, *name, *holder;
        uint64_t deadline;
        int leading, r;
        (void)ret_error;

        if (sd_bus_is_open(bus) <= 0)
                return 0;
        if (e)
                return log_warning("kvelectd: listing its campaigns failed: %s",
                                   e->message ? e->message : e->name),
                       0;
        r = sd_bus_message_enter_container(reply, 'a', "(ssbst)");
        while (r >= 0 &&
               (r = sd_bus_message_read(reply, "(ssbst)", &ns, &name, &leading, &deadline, &holder)) > 0) {
                if (elect_find(m, ns, name))
                        continue;
                /* kvnetd's clean-up has run: no VIP of this node depends on
                 * it, so releasing the Lease is safe. */
                log_notice("kvelectd campaigns for lease %s/%s%s, which no Service here wants: withdrawing",
                           ns, name, leading ? " (leading)" : "");
                r = sd_bus_call_method_async(bus, NULL, NULL, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE,
                                             KVELECTD_METHOD_WITHDRAW, on_reply, m, "ss", ns, name);
                if (r < 0)
                        log_warning_errno(r, "kvelectd: Withdraw(%s/%s) not sent: %m", ns, name);
        }
        if (r < 0)
                log_warning_errno(r, "kvelectd: cannot read its campaigns: %m");
        return 0;
}

void elect_clean_stale(Manager *m)
{
        int r;

        r = sd_bus_call_method_async(bus_client_get(m->kvelectd), NULL, NULL, KVELECTD_BUS_PATH,
                                     KVELECTD_BUS_INTERFACE, KVELECTD_METHOD_LIST, on_list_campaigns_reply,
                                     m, NULL);
        if (r < 0) {
                log_warning_errno(r, "kvelectd: cannot list its campaigns: %m");
                return;
        }
        m->reports->startup_event(m, STARTUP_KVELECTD_CLEAN_SENT);
}

int elect_start(Manager *m)
{
        int r;

        r = bus_client_new(m->event, m->config.kvelectd_socket, on_state, m, &m->kvelectd);
        if (r < 0)
                return log_error_errno(r, "cannot set up the kvelectd client (%s): %m",
                                       m->config.kvelectd_socket);
        return 0;
}
