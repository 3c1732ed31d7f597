/* SPDX-License-Identifier: Apache-2.0 */
/* io.kvegress.Net1: the method handlers. By the time a handler runs, the
 * peer has passed the SO_PEERCRED check (bus-server.c, at accept) and sd-bus
 * has matched the method name and argument signature against the vtable and
 * refused strings that are not valid UTF-8. Each handler then checks every
 * field (validate.c), then the state, and only then touches the kernel. */
#include "bus.h"

#include <stdio.h>

#include "addr.h"
#include "array.h"
#include "bus-netaddr.h"
#include "catalog.h"
#include "dad.h"
#include "introspect.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "validate.h"

static int reply_error(sd_bus_error *error, int r, const char *message)
{
        const char *name;

        switch (r) {
        case -EINVAL:
                name = KVNETD_ERROR_INVALID_ARGS;
                break;
        case -E2BIG:
                name = KVNETD_ERROR_LIMIT;
                break;
        case -ENOENT:
                name = KVNETD_ERROR_NOT_GRANTED;
                break;
        case -EBUSY:
        case -EEXIST:
        case -EADDRINUSE:
                name = KVNETD_ERROR_CONFLICT;
                break;
        case -ENOMEM:
                return -ENOMEM;
        default:
                name = KVNETD_ERROR_KERNEL;
        }
        return sd_bus_error_set(error, name, message);
}

static int reply_parse_error(sd_bus_error *error, int r, const ParseError *e)
{
        return reply_error(error, r, e->message);
}

/* Reads an "as" argument, stopping one past limit. The strings point into
 * the message. */
static int read_strings(sd_bus_message *msg, const char *field, size_t limit, const char ***ret,
                        size_t *ret_n, sd_bus_error *error)
{
        _cleanup_free_ const char **v = NULL;
        size_t n = 0, cap = 0;
        const char *s;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read_basic(msg, 's', &s)) > 0) {
                if (n >= limit) {
                        char buf[128];
                        snprintf(buf, sizeof(buf), "%s: more than %zu entries (the limit)", field, limit);
                        return reply_error(error, -E2BIG, buf);
                }
                if (ARRAY_RESERVE(v, cap, n + 1) < 0)
                        return -ENOMEM;
                v[n++] = s;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 1;
}

static int parse_service(Manager *m, sd_bus_message *msg, const char *key, bool must_exist, Service **ret,
                         sd_bus_error *error)
{
        ParseError e;
        int r;

        r = validate_service_key("service", key, &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);
        *ret = manager_find_service(m, key);
        if (!*ret && must_exist) {
                char buf[256];
                snprintf(buf, sizeof(buf), "service: %s holds no grant", key);
                return reply_error(error, -ENOENT, buf);
        }
        return 1;
}

static int method_grant_vip(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        const char *key, *address, *ifname;
        uint64_t deadline;
        char buf[256];
        ParseError e;
        IpAddr a;
        Service *s = NULL;
        Vip *v = NULL;
        bool created = false;
        int r;

        /* Validated: peer, signature "ssst". Next: fields, then state. */
        r = sd_bus_message_read(msg, KVNETD_SIG_GRANT_VIP, &key, &address, &ifname, &deadline);
        if (r < 0)
                return r;
        r = parse_service(m, msg, key, false, &s, error);
        if (r <= 0)
                return r;
        r = validate_vip(m->config, "address", address, AF_UNSPEC, &a, &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);
        r = validate_ifname(m->config, "ifname", ifname, &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);
        r = validate_deadline(now_usec(), deadline, "deadline_usec", &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);

        v = manager_find_vip(m, &a);
        if (v && v->service != s && !v->adopted) {
                snprintf(buf, sizeof(buf), "address: %s is granted to service %s", address, v->service->key);
                return reply_error(error, -EBUSY, buf);
        }
        if (v && !streq(v->ifname, ifname)) {
                snprintf(buf, sizeof(buf), "address: %s is bound on %s; release it first", address,
                         v->ifname);
                return reply_error(error, -EADDRINUSE, buf);
        }
        if (!v) {
                /* Not ours: it must not be on the node at all (the node's
                 * own address, another daemon's), whatever its prefix. */
                r = addr_check_unused(m, &a, buf, sizeof(buf));
                if (r < 0)
                        return reply_error(error, r, buf);
        }
        if (!s) {
                r = manager_add_service(m, key, &s);
                if (r == -E2BIG)
                        snprintf(buf, sizeof(buf), "service: the limit of %zu services is reached",
                                 m->max_services);
                if (r < 0)
                        return reply_error(error, r,
                                           r == -E2BIG ? buf
                                           : r == -EEXIST
                                                   ? "service: its chain name collides with another service"
                                                   : "service: out of memory");
                created = true;
        }
        r = manager_grant_vip(m, s, &a, ifname, deadline);
        if (r < 0) {
                if (created && s->n_vips == 0 && !service_has_egress(s))
                        (void)manager_remove_service(m, s);
                if (r == -E2BIG)
                        snprintf(buf, sizeof(buf),
                                 "address: the limit of %d VIPs per service or %zu VIPs is reached",
                                 KVNETD_MAX_VIPS_PER_SERVICE, m->max_vips);
                else
                        snprintf(buf, sizeof(buf), "address: binding %s on %s failed: %s", address, ifname,
                                 strerror(-r));
                return reply_error(error, r, buf);
        }
        /* A new IPv6 VIP still in duplicate-address detection: answered
         * when it ends, so kvpd moves SNAT to it only once it works. */
        v = manager_find_vip(m, &a);
        if (v && v->tentative && vip_wait_dad(m, v, msg) > 0)
                return 1;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_renew_grant(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        const char *key;
        uint64_t deadline;
        ParseError e;
        Service *s = NULL;
        bool has_vip = false;
        int r;

        /* Validated: peer, signature "st". Next: fields, then state. */
        r = sd_bus_message_read(msg, KVNETD_SIG_RENEW_GRANT, &key, &deadline);
        if (r < 0)
                return r;
        r = parse_service(m, msg, key, true, &s, error);
        if (r <= 0)
                return r;
        r = validate_deadline(now_usec(), deadline, "deadline_usec", &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);
        for (size_t i = 0; i < s->n_vips; i++)
                has_vip |= !s->vips[i]->adopted;
        if (!has_vip) {
                char buf[256];
                snprintf(buf, sizeof(buf), "service: %s holds no granted VIP (GrantVip first)", key);
                return reply_error(error, -ENOENT, buf);
        }
        service_set_deadline(m, s, deadline);
        manager_update_fence(m);
        manager_schedule_save(m, false);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_release_vip(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        const char *key, *address;
        char buf[256];
        ParseError e;
        IpAddr a;
        Service *s = NULL;
        Vip *v = NULL;
        int r;

        /* Validated: peer, signature "ss". Next: fields, then state. A VIP
         * that is not bound at all is already released (idempotent). */
        r = sd_bus_message_read(msg, KVNETD_SIG_RELEASE_VIP, &key, &address);
        if (r < 0)
                return r;
        r = parse_service(m, msg, key, false, &s, error);
        if (r <= 0)
                return r;
        r = validate_vip(m->config, "address", address, AF_UNSPEC, &a, &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);
        v = manager_find_vip(m, &a);
        if (!v)
                return sd_bus_reply_method_return(msg, NULL);
        if (v->service != s) {
                snprintf(buf, sizeof(buf), "address: %s is not granted to %s", address, key);
                return reply_error(error, -ENOENT, buf);
        }
        r = manager_release_vip(m, s, v);
        if (r < 0) {
                snprintf(buf, sizeof(buf), "address: releasing %s failed: %s", address, strerror(-r));
                return reply_error(error, r == -EBUSY ? -EIO : r, buf);
        }
        return sd_bus_reply_method_return(msg, NULL);
}

static int check_vip_granted(Service *s, const IpAddr *a, const char *field, sd_bus_error *error)
{
        char buf[256];

        if (a->family == 0)
                return 1;
        for (size_t i = 0; s && i < s->n_vips; i++)
                if (ip_addr_equal(&s->vips[i]->addr, a) && !s->vips[i]->adopted)
                        return 1;
        snprintf(buf, sizeof(buf), "%s: %s is not granted to this service (GrantVip first)", field,
                 ip_addr_to_string(a, (char[INET6_ADDRSTRLEN]){}));
        return reply_error(error, -ENOENT, buf);
}

static int method_set_egress(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        _cleanup_free_ const char **pods = NULL, **allowed = NULL, **denied = NULL, **excluded = NULL,
                                  **protos = NULL;
        _cleanup_free_ uint16_t *ports = NULL;
        _cleanup_(egress_policy_freep) EgressPolicy *p = NULL;
        _cleanup_free_ char *kerr = NULL;
        EgressRequest req = {};
        const char *key;
        size_t n_ports = 0, cap_protos = 0, cap_ports = 0;
        ParseError e;
        Service *s = NULL;
        int r;

        /* Validated: peer, signature "sssasa(sq)asasas". Next: every field
         * (arrays are read only up to their limits), then state (the VIPs
         * must be granted to this service), then one nft transaction. */
        r = sd_bus_message_read(msg, "sss", &key, &req.vip4, &req.vip6);
        if (r < 0)
                return r;
        r = parse_service(m, msg, key, false, &s, error);
        if (r <= 0)
                return r;
        r = read_strings(msg, "pods", KVNETD_MAX_PODS_PER_SERVICE, &pods, &req.n_pods, error);
        if (r <= 0)
                return r;
        req.pods = pods;

        r = sd_bus_message_enter_container(msg, 'a', "(sq)");
        if (r < 0)
                return r;
        for (;;) {
                const char *proto;
                uint16_t port;

                r = sd_bus_message_read(msg, "(sq)", &proto, &port);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n_ports >= KVNETD_MAX_PORTS)
                        return reply_error(
                                error, -E2BIG,
                                "ports: more than " STRINGIFY(KVNETD_MAX_PORTS) " entries (the limit)");
                if (ARRAY_RESERVE(protos, cap_protos, n_ports + 1) < 0 ||
                    ARRAY_RESERVE(ports, cap_ports, n_ports + 1) < 0)
                        return -ENOMEM;
                protos[n_ports] = proto;
                ports[n_ports++] = port;
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        req.port_protos = protos;
        req.port_numbers = ports;
        req.n_ports = n_ports;

        r = read_strings(msg, "allowed", KVNETD_MAX_NETWORKS, &allowed, &req.n_allowed, error);
        if (r <= 0)
                return r;
        r = read_strings(msg, "denied", KVNETD_MAX_NETWORKS, &denied, &req.n_denied, error);
        if (r <= 0)
                return r;
        r = read_strings(msg, "excluded", KVNETD_MAX_NETWORKS, &excluded, &req.n_excluded, error);
        if (r <= 0)
                return r;
        req.allowed = allowed;
        req.denied = denied;
        req.excluded = excluded;

        r = egress_request_validate(m->config, &req, &p, &e);
        if (r < 0)
                return reply_parse_error(error, r, &e);

        /* State: the VIPs must be this service's, granted (not merely
         * adopted from a previous run). */
        r = check_vip_granted(s, &p->vip4, "vip4", error);
        if (r <= 0)
                return r;
        r = check_vip_granted(s, &p->vip6, "vip6", error);
        if (r <= 0)
                return r;
        if (!s) {
                /* Nothing granted, so no VIP given either: nothing to remove. */
                if (p->n_pods == 0)
                        return sd_bus_reply_method_return(msg, NULL);
                return reply_error(error, -ENOENT, "service: holds no grant (GrantVip first)");
        }
        if (p->vip4.family == 0 && p->vip6.family == 0) {
                /* No VIP: no egress. The whole policy goes, arrays included. */
                egress_policy_free(TAKE_PTR(p));
        }

        /* Answered after the transaction that carries it (egress-batch.h);
         * a refusal the diff finds (a pod of another service, the pod
         * limit) is answered now. */
        r = egress_queue_set(m, s, TAKE_PTR(p), msg, &kerr);
        if (r < 0)
                return reply_error(error, r, kerr ? kerr : "egress transaction failed");
        return 1;
}

static int method_remove_service(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        const char *key;
        Service *s = NULL;
        int r;

        /* Validated: peer, signature "s". Next: the key. Removing a service
         * we do not know is a success (idempotent). */
        r = sd_bus_message_read(msg, KVNETD_SIG_REMOVE_SERVICE, &key);
        if (r < 0)
                return r;
        r = parse_service(m, msg, key, false, &s, error);
        if (r <= 0)
                return r;
        if (s) {
                r = manager_remove_service(m, s);
                if (r < 0)
                        return reply_error(error, -EIO, "removing the service failed; see kvnetd's log");
        }
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_list_vips(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        (void)error;
        r = bus_reply_array_new(msg, KVNETD_SIG_LIST_VIPS_REPLY, &reply);
        if (r < 0)
                return r;
        for (Service *s = m->services; s; s = s->next)
                for (size_t i = 0; i < s->n_vips; i++) {
                        char buf[INET6_ADDRSTRLEN];
                        /* An adopted VIP nobody has claimed yet shows with
                         * service "" until the grace period ends. */
                        r = sd_bus_message_append(reply, "(ssst)", s->vips[i]->adopted ? "" : s->key,
                                                  ip_addr_to_string(&s->vips[i]->addr, buf),
                                                  s->vips[i]->ifname, (uint64_t)s->deadline);
                        if (r < 0)
                                return r;
                }
        return bus_reply_array_send(reply);
}

static int append_policy(sd_bus_message *reply, const Service *s)
{
        const EgressPolicy *p = s->policy;
        char v4[INET6_ADDRSTRLEN] = "", v6[INET6_ADDRSTRLEN] = "";
        int r;

        if (p->vip4.family)
                ip_addr_to_string(&p->vip4, v4);
        if (p->vip6.family)
                ip_addr_to_string(&p->vip6, v6);
        r = sd_bus_message_open_container(reply, 'r', "sssasa(sq)asasas");
        if (r >= 0)
                r = sd_bus_message_append(reply, "sss", s->key, v4, v6);
        if (r >= 0)
                r = bus_append_addrs(reply, p->pods, p->n_pods);
        if (r >= 0)
                r = bus_append_ports(reply, p->ports, p->n_ports);
        if (r >= 0)
                r = bus_append_prefixes(reply, p->allowed, p->n_allowed);
        if (r >= 0)
                r = bus_append_prefixes(reply, p->denied, p->n_denied);
        if (r >= 0)
                r = bus_append_prefixes(reply, p->excluded, p->n_excluded);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_list_egress(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        (void)error;
        manager_egress_flush(m); /* as if every earlier request had been served in turn */
        r = bus_reply_array_new(msg, KVNETD_SIG_LIST_EGRESS_REPLY, &reply);
        if (r < 0)
                return r;
        for (Service *s = m->services; s; s = s->next)
                if (s->policy) {
                        r = append_policy(reply, s);
                        if (r < 0)
                                return r;
                }
        return bus_reply_array_send(reply);
}

/* The client's requests that kvnetd refused, logged where the operator can
 * act on them: each distinct refusal once per REFUSAL_QUIET_USEC (kvpd
 * retries a refused batch every 2 s), naming the method, service and field. */
#define REFUSAL_SLOTS 32
#define REFUSAL_QUIET_USEC (600 * USEC_PER_SEC)

struct RefusalLog {
        char *line[REFUSAL_SLOTS];
        usec_t at[REFUSAL_SLOTS];
};

struct RefusalLog *refusal_log_free(struct RefusalLog *l)
{
        if (!l)
                return NULL;
        for (size_t i = 0; i < REFUSAL_SLOTS; i++)
                free(l->line[i]);
        free(l);
        return NULL;
}

/* True if line was not logged in the quiet period; remembers it. */
static bool refusal_is_news(Manager *m, char **line)
{
        usec_t now = now_usec();
        size_t oldest = 0;

        if (!m->refusals && !(m->refusals = calloc(1, sizeof(struct RefusalLog))))
                return true;
        for (size_t i = 0; i < REFUSAL_SLOTS; i++) {
                if (m->refusals->line[i] && streq(m->refusals->line[i], *line)) {
                        if (now - m->refusals->at[i] < REFUSAL_QUIET_USEC)
                                return false;
                        m->refusals->at[i] = now;
                        return true;
                }
                if (m->refusals->at[i] < m->refusals->at[oldest])
                        oldest = i;
        }
        free(m->refusals->line[oldest]);
        m->refusals->line[oldest] = TAKE_PTR(*line);
        m->refusals->at[oldest] = now;
        return true;
}

static void log_refusal(Manager *m, sd_bus_message *msg, const sd_bus_error *error)
{
        _cleanup_free_ char *line = NULL;
        const char *key = NULL;
        bool input = sd_bus_error_has_name(error, KVNETD_ERROR_INVALID_ARGS);

        if (sd_bus_message_rewind(msg, true) >= 0)
                (void)sd_bus_message_read_basic(msg, 's', &key);
        if (asprintf(&line, "refused %s(%.128s): %s", sd_bus_message_get_member(msg), key ? key : "",
                     error->message ? error->message : error->name) < 0)
                return;
        log_debug("%s", line);
        if (!refusal_is_news(m, &line))
                return;
        log_event(LOG_WARNING, 0, input ? KVEGRESS_MESSAGE_INPUT_REJECTED : KVEGRESS_MESSAGE_EGRESS_REFUSED,
                  LOG_OBJECT(.service = key, .daemon = "kvnetd"), "refused %s(%.128s): %s",
                  sd_bus_message_get_member(msg), key ? key : "",
                  error->message ? error->message : error->name);
}

void bus_reply_deferred(Manager *m, sd_bus_message *msg, int r, const char *message)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        if (r >= 0) {
                (void)sd_bus_reply_method_return(msg, NULL);
                return;
        }
        r = reply_error(&error, r, message);
        if (!sd_bus_error_is_set(&error))
                (void)sd_bus_error_set_errno(&error, r);
        log_refusal(m, msg, &error);
        (void)sd_bus_reply_method_error(msg, &error);
}

#define LOGGED(handler)                                                                                     \
        static int handler##_logged(sd_bus_message *msg, void *userdata, sd_bus_error *error)               \
        {                                                                                                   \
                int r = handler(msg, userdata, error);                                                      \
                if (sd_bus_error_is_set(error))                                                             \
                        log_refusal(userdata, msg, error);                                                  \
                return r;                                                                                   \
        }
LOGGED(method_grant_vip)
LOGGED(method_renew_grant)
LOGGED(method_release_vip)
LOGGED(method_set_egress)
LOGGED(method_remove_service)

/* Every method is UNPRIVILEGED in sd-bus's sense: without the flag sd-bus
 * demands CAP_SYS_ADMIN of the caller, which kvpd (rightly) lacks. Who may
 * call is decided once per connection, from SO_PEERCRED, in bus-server.c. */
static const sd_bus_vtable net_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_GRANT_VIP, KVNETD_SIG_GRANT_VIP,
                                 SD_BUS_PARAM(service) SD_BUS_PARAM(address) SD_BUS_PARAM(ifname)
                                         SD_BUS_PARAM(deadline_usec),
                                 "", , method_grant_vip_logged, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_RENEW_GRANT, KVNETD_SIG_RENEW_GRANT,
                                 SD_BUS_PARAM(service) SD_BUS_PARAM(deadline_usec), "", ,
                                 method_renew_grant_logged, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_RELEASE_VIP, KVNETD_SIG_RELEASE_VIP,
                                 SD_BUS_PARAM(service) SD_BUS_PARAM(address), "", ,
                                 method_release_vip_logged, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_SET_EGRESS, KVNETD_SIG_SET_EGRESS,
                                 SD_BUS_PARAM(service) SD_BUS_PARAM(vip4) SD_BUS_PARAM(vip6)
                                         SD_BUS_PARAM(pods) SD_BUS_PARAM(ports) SD_BUS_PARAM(allowed)
                                                 SD_BUS_PARAM(denied) SD_BUS_PARAM(excluded),
                                 "", , method_set_egress_logged, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_REMOVE_SERVICE, KVNETD_SIG_REMOVE_SERVICE,
                                 SD_BUS_PARAM(service), "", , method_remove_service_logged,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_LIST_VIPS, "", , KVNETD_SIG_LIST_VIPS_REPLY,
                                 SD_BUS_PARAM(vips), method_list_vips, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_LIST_EGRESS, "", , KVNETD_SIG_LIST_EGRESS_REPLY,
                                 SD_BUS_PARAM(services), method_list_egress, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_GET_METRICS, "", , "s", SD_BUS_PARAM(metrics),
                                 introspect_method_get_metrics, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVNETD_METHOD_DESCRIBE_SERVICE, KVNETD_SIG_DESCRIBE_SERVICE,
                                 SD_BUS_PARAM(service), "s", SD_BUS_PARAM(rules),
                                 introspect_method_describe_service, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES(KVNETD_SIGNAL_GRANT_EXPIRED, KVNETD_SIG_GRANT_EXPIRED,
                                 SD_BUS_PARAM(service), 0),
        SD_BUS_VTABLE_END,
};

int bus_setup_connection(sd_bus *bus, void *userdata)
{
        int r;

        r = sd_bus_add_object_vtable(bus, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE, net_vtable, userdata);
        if (r < 0)
                return r;
        /* The fence drains every connection before it fires. */
        return manager_add_connection(userdata, bus);
}
