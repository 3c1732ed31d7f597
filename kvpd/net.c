/* SPDX-License-Identifier: Apache-2.0 */
/* kvnetd's client: "do it". Only while this node leads a Service's lease
 * (kube-vip programmed SNAT on every node with a local pod, where replies
 * to the VIP cannot arrive): GrantVip for each VIP with kvelectd's deadline
 * (less a margin, so kvnetd drops the VIP before another node can hold the
 * lease), SetEgress with every local ready pod, RenewGrant on each renewal,
 * and RemoveService when leadership, the pods or the Service go.
 *
 * kvnetd's verbs are idempotent, so after any reconnect the whole desired
 * state is sent again; after the first full sync, whatever kvnetd holds that
 * kvpd does not want (a crash, a Service deleted while kvpd was down) is
 * removed. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>

#include "bus-netaddr.h"
#include "catalog.h"
#include "carry.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "net.h"
#include "service.h"

#define NET_RETRY_USEC (2 * USEC_PER_SEC)

typedef struct Call {
        Manager *manager;
        char *key;
        uint64_t gen;
        bool for_stop;
        const char *method;
} Call;

static void call_free(void *userdata)
{
        Call *c = userdata;

        if (!c)
                return;
        free(c->key);
        free(c);
}

/* Whatever kvnetd had of the Service is unknown or gone (a new connection,
 * a grant that expired, a RemoveService sent): nothing is programmed, and
 * replies to the calls sent before no longer count. */
static void net_forget(Service *s)
{
        s->net_gen++;
        s->net_inflight = 0;
        s->net_pending = mfree(s->net_pending);
        s->n_net_pending = 0;
        s->net_confirmed = false;
        s->programmed = egress_policy_free(s->programmed);
}

static int on_resync(sd_event_source *es, uint64_t usec, void *userdata);
static void net_remove(Service *s, bool for_stop);

static void schedule_resync(Manager *m)
{
        int r;

        if (m->resync_source && sd_event_source_get_enabled(m->resync_source, NULL) > 0)
                return;
        if (!m->resync_source)
                r = sd_event_add_time_relative(m->event, &m->resync_source, CLOCK_MONOTONIC, NET_RETRY_USEC,
                                               0, on_resync, m);
        else {
                r = sd_event_source_set_time_relative(m->resync_source, NET_RETRY_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->resync_source, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "cannot schedule a kvnetd retry: %m");
}

static int on_resync(sd_event_source *es, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        (void)es;
        (void)usec;

        for (size_t i = 0; i < m->n_services; i++)
                if (m->services[i]->net_failed)
                        m->reports->net_retry(m->services[i]);
        return 0;
}

static void send_steps(Service *s, const NetStep *steps, size_t n, const char *ifname, uint64_t deadline);

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Call *c = userdata;
        Manager *m = c->manager;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        Service *s = service_get(m, c->key);
        (void)ret_error;

        if (c->for_stop) {
                if (e)
                        log_warning("kvnetd: %s(%s): %s", c->method, c->key,
                                    e->message ? e->message : e->name);
                m->reports->stop_call_done(m);
                return 0;
        }
        /* Only the answer to the last RemoveService confirms the removal:
         * one answered after a later batch was sent (kvnetd stopped while
         * kvpd removed, granted, removed again) is followed by that batch,
         * which binds the VIP again. (Not net_gen: a GrantExpired moves it
         * on without sending anything.) */
        if (s && streq(c->method, KVNETD_METHOD_REMOVE_SERVICE) && s->removing && s->remove_gen == c->gen) {
                s->removing = false;
                if (e) {
                        /* The VIP may still be bound: the lease stays, and
                         * the resync sends RemoveService again (below:
                         * net_failed). */
                        log_warning("kvnetd: RemoveService(%s) failed: %s", c->key,
                                    e->message ? e->message : e->name);
                        s->net_unknown = true;
                } else {
                        s->net_unknown = false;
                        m->reports->net_removed(s); /* the lease may go now */
                }
        }
        if (!s || s->net_gen != c->gen)
                return 0; /* superseded by a later batch */
        if (s->net_inflight > 0)
                s->net_inflight--;
        if (e) {
                char why[512];

                (void)snprintf(why, sizeof(why), "kvnetd refused %s: %s", c->method,
                               e->message ? e->message : e->name);
                /* Retried every resync; said (log, Event) only when it is
                 * news. The first refusal of a batch is its cause: what
                 * follows (SetEgress after a refused GrantVip) is not. */
                if (s->net_failed)
                        log_debug("%s: %s (after an earlier refusal of this batch)", c->key, why);
                else if (service_error_set(s, "kvnetd", why)) {
                        log_event(LOG_WARNING, 0, KVEGRESS_MESSAGE_EGRESS_REFUSED,
                                  LOG_OBJECT(.service = c->key, .daemon = "kvnetd",
                                             .node = m->config.node_name),
                                  "%s: %s (%s); retrying every %us", c->key, why, e->name,
                                  (unsigned)(NET_RETRY_USEC / USEC_PER_SEC));
                        m->reports->refused(s, why);
                } else
                        log_debug("%s: %s (still)", c->key, why);
                s->net_failed = true;
                schedule_resync(m);
                if (streq(c->method, KVNETD_METHOD_GRANT_VIP) ||
                    streq(c->method, KVNETD_METHOD_SET_EGRESS)) {
                        /* A refused Service (its pod mapped by another
                         * Service, its VIP the node's own address) must
                         * not keep a VIP bound with no SNAT: drop the whole
                         * batch; the resync tries it again. */
                        net_remove(s, false);
                        s->net_failed = true;
                }
        }
        if (s->net_inflight == 0 && !s->net_failed && s->n_net_pending > 0) {
                /* The new VIPs work: the rest of the batch (the switch). */
                _cleanup_free_ NetStep *rest = TAKE_PTR(s->net_pending);
                size_t n = s->n_net_pending;

                s->n_net_pending = 0;
                send_steps(s, rest, n, NULL, 0);
                return 0;
        }
        if (s->net_inflight == 0 && !s->net_failed && s->programmed) {
                service_error_clear(s, "kvnetd");
                service_note_confirmed(s);
                s->net_confirmed = true;
                m->reports->net_confirmed(s);
        }
        return 0;
}

/* Sends one call; the reply lands in on_reply() with the batch generation,
 * so a reply to a superseded batch changes nothing. */
static int call_new(Service *s, const char *method, sd_bus_message **ret_m)
{
        Manager *m = s->manager;
        sd_bus *bus = bus_client_get(m->kvnetd);
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        if (!bus)
                return -ENOTCONN;
        r = sd_bus_message_new_method_call(bus, &msg, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE, method);
        if (r < 0)
                return r;
        *ret_m = TAKE_PTR(msg);
        return 0;
}

static int call_send(Service *s, sd_bus_message *msg, const char *method, bool for_stop)
{
        Manager *m = s->manager;
        sd_bus *bus = bus_client_get(m->kvnetd);
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        Call *c;
        int r;

        if (!bus)
                return -ENOTCONN;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (Call){.manager = m,
                    .key = strdup(s->key),
                    .gen = s->net_gen,
                    .for_stop = for_stop,
                    .method = method};
        if (!c->key) {
                call_free(c);
                return -ENOMEM;
        }
        r = sd_bus_call_async(bus, &slot, msg, on_reply, c, 0);
        if (r < 0) {
                call_free(c);
                return log_warning_errno(r, "kvnetd: %s(%s) not sent: %m", method, s->key);
        }
        /* The slot owns the Call from here, whether or not a reply ever
         * comes (a dropped connection frees the slot). */
        (void)sd_bus_slot_set_destroy_callback(slot, call_free);
        (void)sd_bus_slot_set_floating(slot, 1);
        if (for_stop)
                m->stop_pending++;
        else
                s->net_inflight++;
        return 0;
}

static int send_set_egress(Service *s, const EgressPolicy *p)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        char v4[INET6_ADDRSTRLEN] = "", v6[INET6_ADDRSTRLEN] = "";
        int r;

        r = call_new(s, KVNETD_METHOD_SET_EGRESS, &msg);
        if (r < 0)
                return r;
        if (p->has_vip4)
                (void)ip_addr_to_string(&p->vip4, v4);
        if (p->has_vip6)
                (void)ip_addr_to_string(&p->vip6, v6);
        r = sd_bus_message_append(msg, "sss", s->key, v4, v6);
        if (r >= 0)
                r = bus_append_addrs(msg, p->pods, p->n_pods);
        if (r >= 0)
                r = bus_append_ports(msg, p->ports, p->n_ports);
        if (r >= 0)
                r = bus_append_prefixes(msg, p->allowed, p->n_allowed);
        if (r >= 0)
                r = bus_append_prefixes(msg, p->denied, p->n_denied);
        if (r >= 0)
                r = bus_append_prefixes(msg, p->excluded, p->n_excluded);
        if (r < 0)
                return log_error_errno(r, "%s: cannot build SetEgress: %m", s->key);
        return call_send(s, msg, KVNETD_METHOD_SET_EGRESS, false);
}

static int send_simple(Service *s, const char *method, bool for_stop, const char *sig, ...)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        va_list ap;
        int r;

        r = call_new(s, method, &msg);
        if (r < 0)
                return r;
        va_start(ap, sig);
        r = sd_bus_message_appendv(msg, sig, ap);
        va_end(ap);
        if (r < 0)
                return r;
        return call_send(s, msg, method, for_stop);
}

/* "auto": the interface whose subnet holds the VIP, as kube-vip does. */
static int resolve_ifname(const EgressPolicy *p, char **ret)
{
        struct ifaddrs *ifa = NULL;
        const IpAddr *vip = p->has_vip4 ? &p->vip4 : &p->vip6;
        int r = -ENXIO;

        if (!streq(p->ifname, "auto")) {
                *ret = strdup(p->ifname);
                return *ret ? 0 : -ENOMEM;
        }
        if (getifaddrs(&ifa) < 0)
                return -errno;
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
                IpPrefix net = {};
                unsigned len = 0;
                const uint8_t *mask;

                if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != vip->family ||
                    (i->ifa_flags & IFF_LOOPBACK))
                        continue;
                if (vip->family == AF_INET) {
                        net.addr.in = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
                        mask = (const uint8_t *)&((struct sockaddr_in *)i->ifa_netmask)->sin_addr;
                } else {
                        net.addr.in6 = ((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
                        mask = (const uint8_t *)&((struct sockaddr_in6 *)i->ifa_netmask)->sin6_addr;
                }
                for (unsigned b = 0; b < family_max_prefixlen(vip->family); b++)
                        if (mask[b / 8] & (0x80u >> (b % 8)))
                                len++;
                net.family = vip->family;
                net.prefixlen = len;
                /* The address's own bits beyond the mask do not matter to
                 * ip_prefix_contains(), which masks the candidate only. */
                for (unsigned b = len; b < family_max_prefixlen(vip->family); b++)
                        net.addr.bytes[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
                if (len > 0 && ip_prefix_contains(&net, vip)) {
                        *ret = strdup(i->ifa_name);
                        r = *ret ? 0 : -ENOMEM;
                        break;
                }
        }
        freeifaddrs(ifa);
        return r;
}

/* Sends a batch's calls in order (plan_batch()); the ones after a
 * NET_STEP_WAIT_GRANTS wait in s->net_pending for the answers. SetEgress
 * sends s->programmed, which is the batch's policy. */
static void send_steps(Service *s, const NetStep *steps, size_t n, const char *ifname, uint64_t deadline)
{
        char buf[INET6_ADDRSTRLEN];

        for (size_t i = 0; i < n; i++)
                switch (steps[i].kind) {
                case NET_STEP_RELEASE_VIP:
                        (void)send_simple(s, KVNETD_METHOD_RELEASE_VIP, false, KVNETD_SIG_RELEASE_VIP,
                                          s->key, ip_addr_to_string(&steps[i].vip, buf));
                        break;
                case NET_STEP_GRANT_VIP:
                        (void)send_simple(s, KVNETD_METHOD_GRANT_VIP, false, KVNETD_SIG_GRANT_VIP, s->key,
                                          ip_addr_to_string(&steps[i].vip, buf), ifname, deadline);
                        break;
                case NET_STEP_WAIT_GRANTS:
                        if (s->net_inflight == 0)
                                break; /* nothing to wait for (not sent: the resync retries) */
                        s->net_pending = malloc((n - i) * sizeof(NetStep));
                        if (!s->net_pending) {
                                log_error("%s: out of memory; switching without waiting", s->key);
                                break;
                        }
                        memcpy(s->net_pending, steps + i + 1, (n - i - 1) * sizeof(NetStep));
                        s->n_net_pending = n - i - 1;
                        log_debug("%s: switching the SNAT once the new VIPs are granted", s->key);
                        return;
                case NET_STEP_SET_EGRESS:
                        (void)send_set_egress(s, s->programmed);
                        break;
                default:
                        break;
                }
}

static void net_remove(Service *s, bool for_stop)
{
        net_forget(s);
        s->net_failed = false;
        s->programmed_ifname = mfree(s->programmed_ifname);
        if (send_simple(s, KVNETD_METHOD_REMOVE_SERVICE, for_stop, KVNETD_SIG_REMOVE_SERVICE, s->key) < 0)
                log_debug("%s: RemoveService not sent (kvnetd not connected); replayed clean-up will do it",
                          s->key);
        else {
                s->removing = !for_stop;
                s->remove_gen = s->net_gen;
                log_info("%s: egress removed from this node", s->key);
        }
}

void net_apply(Service *s, const NetPlan *plan, uint64_t now_usec)
{
        Manager *m = s->manager;
        EgressPolicy *p = s->policy;
        _cleanup_free_ char *ifname = NULL;
        _cleanup_free_ NetStep *steps = NULL;
        _cleanup_free_ IpAddr *held_vips = NULL;
        EgressPolicy held = {};
        bool switching;
        size_t n_steps;
        char buf[INET6_ADDRSTRLEN];
        uint64_t change = s->change_usec;
        int r;

        /* A change that does not lead to a new batch below is not timed. */
        s->change_usec = 0;
        if (plan->clear_errors) {
                /* (A refused batch is removed too, in on_reply, but its
                 * error stands while this node leads.) */
                service_error_clear(s, "kvnetd");
                service_error_clear(s, "kvpd");
        }
        switch (plan->action) {
        case NET_ACTION_REMOVE:
                net_remove(s, false);
                return;
        case NET_ACTION_WAIT_RENEWAL:
                log_debug("%s: leadership deadline too close for a grant; waiting for a renewal", s->key);
                return;
        case NET_ACTION_PROGRAM:
                break;
        default:
                return; /* nothing to do, or replayed when kvnetd connects */
        }
        r = resolve_ifname(p, &ifname);
        if (r < 0) {
                char why[256];

                (void)snprintf(why, sizeof(why),
                               "no interface on %s has a subnet holding the VIP; set "
                               "vip_servicesinterface or " KV_ANN_SERVICE_INTERFACE,
                               m->config.node_name);
                if (service_error_set(s, "kvpd", why)) {
                        log_warning_errno(
                                r,
                                "%s: no interface for the VIP (%s is \"auto\" and no subnet holds it): %m",
                                s->key, KV_ANN_SERVICE_INTERFACE);
                        m->reports->refused(s, why);
                }
                s->net_failed = true;
                schedule_resync(m);
                return;
        }

        /* A new batch: replies to the old one no longer count. What kvnetd
         * holds of the Service is this batch from now on. */
        s->batch_change_usec = change ? change : now_usec;
        s->removing = false;
        s->net_unknown = false;
        s->net_gen++;
        s->net_inflight = 0;
        s->net_failed = false;
        s->net_confirmed = false;

        /* Grant, switch, release (plan_batch): a new VIP is bound before
         * the one SetEgress moves the SNAT to it, and the old one goes
         * after, so no new flow leaves unSNATed or from a VIP this node
         * no longer holds. A batch still waiting for its grants is
         * superseded: the VIPs it was to release are still held. */
        switching = s->n_net_pending > 0;
        if (s->programmed) {
                held = *s->programmed;
                held.vips = held_vips = calloc(s->programmed->n_vips + s->n_net_pending + 1, sizeof(IpAddr));
                if (!held_vips)
                        goto oom;
                memcpy(held_vips, s->programmed->vips, s->programmed->n_vips * sizeof(IpAddr));
                for (size_t i = 0; i < s->n_net_pending; i++)
                        if (s->net_pending[i].kind == NET_STEP_RELEASE_VIP)
                                held_vips[held.n_vips++] = s->net_pending[i].vip;
        }
        s->net_pending = mfree(s->net_pending);
        s->n_net_pending = 0;
        steps = calloc(plan_batch_max(s->programmed ? &held : NULL, p), sizeof(NetStep));
        if (!steps)
                goto oom;
        n_steps =
                plan_batch(s->programmed ? &held : NULL, s->programmed_ifname, switching, p, ifname, steps);

        egress_policy_free(s->programmed);
        s->programmed = egress_policy_ref(p);
        free(s->programmed_ifname);
        s->programmed_ifname = TAKE_PTR(ifname);
        send_steps(s, steps, n_steps, s->programmed_ifname, plan->grant_deadline_usec);
        log_info("%s: egress via %s on %s for %zu pods", s->key,
                 ip_addr_to_string(p->has_vip4 ? &p->vip4 : &p->vip6, buf), s->programmed_ifname, p->n_pods);
        return;
oom:
        log_error("%s: out of memory; retrying", s->key);
        s->net_failed = true;
        schedule_resync(m);
}

void net_renew(Service *s, const NetPlan *plan)
{
        if (plan->action == NET_ACTION_RENEW)
                (void)send_simple(s, KVNETD_METHOD_RENEW_GRANT, false, KVNETD_SIG_RENEW_GRANT, s->key,
                                  plan->grant_deadline_usec);
}

void net_release_all(Manager *m)
{
        for (size_t i = 0; i < m->n_services; i++)
                if (m->services[i]->programmed || m->services[i]->net_inflight > 0)
                        net_remove(m->services[i], true);
}

/* One call of the clean-up answered; when the last is, and all went well,
 * kvnetd holds nothing kvpd does not want, and kvelectd's clean-up may run. */
static void clean_call_done(Manager *m, const sd_bus_error *e)
{
        if (e)
                m->kvnetd_clean_failed = true;
        if (m->kvnetd_clean_calls > 0)
                m->kvnetd_clean_calls--;
        if (m->kvnetd_clean_calls > 0 || m->startup.kvnetd != STALE_CLEAN_RUNNING)
                return;
        if (m->kvnetd_clean_failed) {
                log_warning("kvnetd: its stale state was not all removed; leases no Service wants are kept "
                            "until the next connection");
                m->reports->startup_event(m, STARTUP_KVNETD_CLEAN_FAILED);
                return;
        }
        m->reports->startup_event(m, STARTUP_KVNETD_CLEAN_DONE);
}

static int on_stale_removed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        (void)ret_error;

        /* Answers synthesised for a closing connection: on_state() resets. */
        if (sd_bus_is_open(sd_bus_message_get_bus(reply)) <= 0)
                return 0;
        if (e)
                log_warning("kvnetd: RemoveService of stale state failed: %s",
                            e->message ? e->message : e->name);
        clean_call_done(m, e);
        return 0;
}

/* Every service key kvnetd reports that kvpd does not program now. */
static int remove_stale(Manager *m, sd_bus_message *reply, const char *entry_sig, const char *what)
{
        int r;

        _cleanup_free_ char *inner = strndup(entry_sig + 1, strlen(entry_sig) - 2); /* without "()" */

        if (!inner)
                return -ENOMEM;
        r = sd_bus_message_enter_container(reply, 'a', entry_sig);
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'r', inner)) > 0) {
                const char *key;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_skip(reply, inner + 1);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                /* An adopted VIP no client claimed yet: kvnetd removes it
                 * at the end of its grace period, or with its service. */
                if (isempty(key))
                        continue;
                if (m->reports->net_stale_keep(m, key))
                        continue;
                log_notice("kvnetd holds %s for %s, which this node does not serve: removing it", what, key);
                r = sd_bus_call_method_async(bus_client_get(m->kvnetd), NULL, NULL, KVNETD_BUS_PATH,
                                             KVNETD_BUS_INTERFACE, KVNETD_METHOD_REMOVE_SERVICE,
                                             on_stale_removed, m, KVNETD_SIG_REMOVE_SERVICE, key);
                if (r < 0) {
                        log_warning_errno(r, "kvnetd: RemoveService(%s) not sent: %m", key);
                        m->kvnetd_clean_failed = true;
                } else
                        m->kvnetd_clean_calls++;
        }
        return r;
}

static int on_list_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        bool vips;
        int r;
        (void)ret_error;

        if (sd_bus_is_open(sd_bus_message_get_bus(reply)) <= 0)
                return 0;
        if (e)
                log_warning("kvnetd: listing its state failed: %s", e->message ? e->message : e->name);
        else {
                /* Replies carry no member; tell them apart by signature. */
                vips = streq_ptr(sd_bus_message_get_signature(reply, true), KVNETD_SIG_LIST_VIPS_REPLY);
                r = remove_stale(m, reply, vips ? "(ssst)" : "(sssasa(sq)asasas)",
                                 vips ? "a VIP" : "egress rules");
                if (r < 0) {
                        log_warning_errno(r, "kvnetd: cannot read its state: %m");
                        m->kvnetd_clean_failed = true;
                }
        }
        clean_call_done(m, e);
        return 0;
}

void net_clean_stale(Manager *m)
{
        sd_bus *bus = bus_client_get(m->kvnetd);
        int r;

        m->kvnetd_clean_failed = false;
        m->kvnetd_clean_calls = 0;
        m->reports->startup_event(m, STARTUP_KVNETD_CLEAN_SENT);
        r = sd_bus_call_method_async(bus, NULL, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE,
                                     KVNETD_METHOD_LIST_VIPS, on_list_reply, m, NULL);
        if (r >= 0) {
                m->kvnetd_clean_calls++;
                r = sd_bus_call_method_async(bus, NULL, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE,
                                             KVNETD_METHOD_LIST_EGRESS, on_list_reply, m, NULL);
        }
        if (r >= 0)
                m->kvnetd_clean_calls++;
        else {
                log_warning_errno(r, "kvnetd: cannot list its state: %m");
                m->kvnetd_clean_failed = true;
                if (m->kvnetd_clean_calls == 0)
                        m->reports->startup_event(m, STARTUP_KVNETD_CLEAN_FAILED);
        }
}

static int on_grant_expired(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const char *key;
        Service *s;
        (void)ret_error;

        if (sd_bus_message_read(msg, KVNETD_SIG_GRANT_EXPIRED, &key) < 0)
                return 0;
        s = service_get(m, key);
        if (!s) {
                log_warning("kvnetd: the grant of %s expired before a renewal reached it", key);
                return 0;
        }
        /* kvnetd removed VIPs and egress itself: forget them; the loop says
         * so and asks again if this node still leads. */
        net_forget(s);
        m->reports->net_expired(s);
        return 0;
}

static void on_state(BusClient *c, sd_bus *bus, void *userdata)
{
        Manager *m = userdata;
        int r;
        (void)c;

        m->kvnetd_expired_slot = sd_bus_slot_unref(m->kvnetd_expired_slot);
        /* Whatever kvnetd had, the next connection starts from "unknown":
         * every service is sent again (the verbs are idempotent). What it
         * may still hold stays in the kernel while it is away (a dead
         * kvnetd fences nothing): such a Service keeps its lease until a
         * kvnetd confirms it removed (plan_elect). */
        for (size_t i = 0; i < m->n_services; i++) {
                Service *s = m->services[i];

                if (s->programmed || s->net_inflight > 0 || s->removing)
                        s->net_unknown = true;
                net_forget(s);
        }
        m->kvnetd_clean_calls = 0;
        m->kvnetd_clean_failed = false;
        if (!bus) {
                /* First: kvelectd's clean-up must wait for kvnetd's again. */
                m->reports->startup_event(m, STARTUP_KVNETD_GONE);
                /* No answer will come. The RemoveService is sent again
                 * (net_unknown) once a kvnetd is back: until then the
                 * VIPs may still be bound, so the lease stays. */
                for (size_t i = 0; i < m->n_services; i++)
                        m->services[i]->removing = false;
                return;
        }
        r = sd_bus_match_signal(bus, &m->kvnetd_expired_slot, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE,
                                KVNETD_SIGNAL_GRANT_EXPIRED, on_grant_expired, m);
        if (r < 0)
                log_error_errno(r, "kvnetd: cannot subscribe to %s: %m", KVNETD_SIGNAL_GRANT_EXPIRED);
        carry_list_grants(m);
        m->reports->net_connected(m);
}

int net_start(Manager *m)
{
        int r;

        r = bus_client_new(m->event, m->config.kvnetd_socket, on_state, m, &m->kvnetd);
        if (r < 0)
                return log_error_errno(r, "cannot set up the kvnetd client (%s): %m",
                                       m->config.kvnetd_socket);
        return 0;
}
