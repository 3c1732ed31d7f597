/* SPDX-License-Identifier: Apache-2.0 */
/* kvelectd's client: "may I?". A Service campaigns for its Lease only while
 * this node has a local ready endpoint (kube-vip's rule for Local policy),
 * and withdraws when the last one goes, so the lease moves to a node that
 * has one. Several Services may name one Lease (kube-vip.io/leaseName); the
 * campaign then lasts while any of them wants it. */
#include "kvelectd-bus.h"
#include "log.h"
#include "manager.h"

Lease *elect_find(Manager *m, const char *namespace, const char *name)
{
        for (size_t i = 0; i < m->n_leases; i++)
                if (streq(m->leases[i]->namespace, namespace) && streq(m->leases[i]->name, name))
                        return m->leases[i];
        return NULL;
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
        (void)on_reply(reply, NULL, ret_error);
        manager_stop_done(userdata);
        return 0;
}

static int send_call(Manager *m, const char *method, const Lease *l, bool for_stop)
{
        sd_bus *bus = bus_client_get(m->kvelectd);
        int r;

        if (!bus)
                return -ENOTCONN; /* replayed on connect */
        r = sd_bus_call_method_async(bus, NULL, NULL, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE, method,
                                     for_stop ? on_stop_reply : on_reply, m, "ss", l->namespace, l->name);
        if (r < 0)
                return log_warning_errno(r, "kvelectd: %s(%s/%s) not sent: %m", method, l->namespace, l->name);
        if (for_stop)
                m->stop_pending++;
        log_debug("kvelectd: %s(%s/%s)", method, l->namespace, l->name);
        return 0;
}

static Lease *lease_free(Lease *l)
{
        if (!l)
                return NULL;
        free(l->namespace);
        free(l->name);
        free(l->holder);
        free(l);
        return NULL;
}

static void services_of_lease_changed(Manager *m, Lease *l)
{
        for (size_t i = 0; i < m->n_services; i++)
                if (m->services[i]->lease == l) {
                        net_update(m->services[i]);
                        status_update(m->services[i]);
                }
}

static Lease *lease_want(Manager *m, const char *namespace, const char *name)
{
        Lease *l = elect_find(m, namespace, name);
        Lease **nv;

        if (!l) {
                l = calloc(1, sizeof(*l));
                if (!l)
                        return NULL;
                l->manager = m;
                l->namespace = strdup(namespace);
                l->name = strdup(name);
                nv = reallocarray(m->leases, m->n_leases + 1, sizeof(Lease *));
                if (!l->namespace || !l->name || !nv) {
                        if (nv)
                                m->leases = nv;
                        return lease_free(l);
                }
                m->leases = nv;
                m->leases[m->n_leases++] = l;
        }
        l->n_wanted++;
        if (!l->campaign_sent && send_call(m, KVELECTD_METHOD_CAMPAIGN, l, false) >= 0)
                l->campaign_sent = true;
        return l;
}

static void lease_unwant(Manager *m, Lease *l, bool for_stop)
{
        if (--l->n_wanted > 0)
                return;
        /* Withdraw releases the Lease at once if we hold it, so the next
         * node with a ready pod takes over without waiting for expiry. */
        (void)send_call(m, KVELECTD_METHOD_WITHDRAW, l, for_stop);
        for (size_t i = 0; i < m->n_leases; i++)
                if (m->leases[i] == l) {
                        m->leases[i] = m->leases[--m->n_leases];
                        break;
                }
        lease_free(l);
}

void elect_update(Service *s)
{
        Manager *m = s->manager;
        const EgressPolicy *p = s->policy;
        bool want = !m->stopping && p && p->state == EGRESS_READY;

        if (s->lease && (!want || !streq_ptr(s->lease->namespace, p->lease_namespace) ||
                         !streq_ptr(s->lease->name, p->lease_name))) {
                /* Not before kvnetd has dropped the VIP: the lease is what
                 * lets another node bind it, and the address must never be
                 * on two nodes at once. net.c calls back when it is gone. */
                if (s->removing)
                        return;
                log_info("%s: withdrawing from lease %s/%s%s", s->key, s->lease->namespace, s->lease->name,
                         want ? " (lease name changed)" : "");
                lease_unwant(m, TAKE_PTR(s->lease), false);
        }
        if (want && !s->lease) {
                s->lease = lease_want(m, p->lease_namespace, p->lease_name);
                if (!s->lease)
                        log_error("%s: out of memory campaigning", s->key);
                else
                        log_info("%s: campaigning for lease %s/%s (%zu local pods)", s->key, p->lease_namespace,
                                 p->lease_name, p->n_pods);
        }
}

void elect_release_all(Manager *m)
{
        for (size_t i = 0; i < m->n_services; i++) {
                Service *s = m->services[i];
                if (s->lease)
                        lease_unwant(m, TAKE_PTR(s->lease), true);
        }
}

static int on_leadership(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const char *ns, *name, *holder;
        uint64_t deadline;
        int leading, r;
        Lease *l;
        (void)ret_error;

        r = sd_bus_message_read(msg, KVELECTD_SIG_LEADERSHIP, &ns, &name, &leading, &deadline, &holder);
        if (r < 0)
                return log_warning_errno(r, "kvelectd: malformed %s signal: %m", KVELECTD_SIGNAL_LEADERSHIP), 0;
        l = elect_find(m, ns, name);
        if (!l)
                return 0; /* withdrawn meanwhile */
        free(l->holder);
        l->holder = strdup(holder);
        if (l->leading != !!leading)
                log_info("lease %s/%s: %s (holder %s)", ns, name, leading ? "leading" : "not leading",
                         isempty(holder) ? "none" : holder);
        l->leading = leading;
        l->deadline_usec = leading ? deadline : 0;
        services_of_lease_changed(m, l);
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
        if (!l || !l->leading)
                return 0;
        l->deadline_usec = deadline;
        for (size_t i = 0; i < m->n_services; i++)
                if (m->services[i]->lease == l)
                        net_renew(m->services[i]);
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
                /* Without kvelectd nobody renews: leadership is over as far
                 * as this node can tell. Give the VIPs up now rather than
                 * let kvnetd's deadline do it. */
                for (size_t i = 0; i < m->n_leases; i++) {
                        m->leases[i]->campaign_sent = false;
                        if (m->leases[i]->leading) {
                                m->leases[i]->leading = false;
                                services_of_lease_changed(m, m->leases[i]);
                        }
                }
                return;
        }
        r = sd_bus_match_signal(bus, &m->kvelectd_leadership_slot, NULL, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE,
                                KVELECTD_SIGNAL_LEADERSHIP, on_leadership, m);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &m->kvelectd_renewed_slot, NULL, KVELECTD_BUS_PATH,
                                        KVELECTD_BUS_INTERFACE, KVELECTD_SIGNAL_RENEWED, on_renewed, m);
        if (r < 0)
                log_error_errno(r, "kvelectd: cannot subscribe to signals: %m");
        /* Replay: Campaign is idempotent, and kvelectd answers a campaign it
         * already leads with LeadershipChanged(leading=true). */
        for (size_t i = 0; i < m->n_leases; i++)
                m->leases[i]->campaign_sent = send_call(m, KVELECTD_METHOD_CAMPAIGN, m->leases[i], false) >= 0;
}

int elect_start(Manager *m)
{
        int r;

        r = bus_client_new(m->event, m->config.kvelectd_socket, on_state, m, &m->kvelectd);
        if (r < 0)
                return log_error_errno(r, "cannot set up the kvelectd client (%s): %m", m->config.kvelectd_socket);
        return 0;
}
