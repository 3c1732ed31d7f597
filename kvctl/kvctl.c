/* SPDX-License-Identifier: Apache-2.0 */
/* kvctl: what the three daemons of this node are doing, for an operator.
 *
 * It asks each daemon over its own socket (read-only introspection: root or
 * the kvegress group), all at once, and gives up on the ones that have not
 * answered when --timeout runs out, so it never hangs on a stuck daemon and
 * says which one did not answer. Nothing here changes any state.
 *
 * Exit status: 0 healthy; 1 degraded (kvelectd unreachable, kvpd not synced
 * or not connected to a daemon, or a Service with a standing error); 2 down
 * (kvpd or kvnetd unreachable: egress cannot be changed on this node); 64
 * usage. */
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "kvelectd-bus.h"
#include "kvnetd-bus.h"
#include "kvpd-bus.h"
#include "netaddr.h"

#define EXIT_HEALTHY 0
#define EXIT_DEGRADED 1
#define EXIT_DOWN 2
#define EXIT_USAGE 64

typedef enum Daemon { D_KVPD, D_KVNETD, D_KVELECTD, _D_MAX } Daemon;
static const char *const daemon_names[_D_MAX] = {"kvpd", "kvnetd", "kvelectd"};

typedef struct Call {
        struct Ctl *ctl;
        Daemon d;
        const char *member;
        sd_bus_message *reply; /* NULL: no answer (yet) */
        bool answered;         /* a reply or an error reply came */
        char *error;
} Call;

typedef struct Ctl {
        sd_event *event;
        sd_bus *bus[_D_MAX];
        char *bus_error[_D_MAX]; /* why the daemon could not be reached */
        Call calls[8];
        size_t n_calls;
        unsigned pending;
} Ctl;

static const char *arg_socket[_D_MAX];
static uint64_t arg_timeout_usec = 2 * USEC_PER_SEC;
static bool arg_json;
static bool arg_http;

static void ctl_done(Ctl *c)
{
        for (size_t i = 0; i < c->n_calls; i++) {
                sd_bus_message_unref(c->calls[i].reply);
                free(c->calls[i].error);
        }
        for (int d = 0; d < _D_MAX; d++) {
                /* No flush: it would wait for a stuck daemon without bound. */
                if (c->bus[d])
                        sd_bus_close_unref(c->bus[d]);
                free(c->bus_error[d]);
        }
        sd_event_unref(c->event);
}

/* Ends the wait. The buses are closed first: sd-bus flushes an attached bus
 * when its event loop exits, and a stuck daemon would hold that flush (the
 * authentication) for ever. */
static void ctl_stop(Ctl *c)
{
        for (int d = 0; d < _D_MAX; d++)
                if (c->bus[d])
                        sd_bus_close(c->bus[d]);
        (void)sd_event_exit(c->event, 0);
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Call *call = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        (void)ret_error;

        /* sd-bus answers a call whose connection closed with an error of
         * its own; that is no answer from the daemon. */
        call->answered = !sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) &&
                         sd_bus_is_open(sd_bus_message_get_bus(m)) > 0;
        if (e) {
                if (asprintf(&call->error, "%s", e->message ? e->message : e->name) < 0)
                        call->error = NULL;
        } else
                call->reply = sd_bus_message_ref(m);
        if (--call->ctl->pending == 0)
                ctl_stop(call->ctl);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Ctl *c = userdata;
        (void)s;
        (void)usec;
        ctl_stop(c);
        return 0;
}

/* Connects to d (once); a failure is remembered, not fatal: the others are
 * still asked. */
static sd_bus *ctl_bus(Ctl *c, Daemon d)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        char address[256];
        int r;

        if (c->bus[d] || c->bus_error[d])
                return c->bus[d];
        (void)snprintf(address, sizeof(address), "unix:path=%s", arg_socket[d]);
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, false);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_attach_event(bus, c->event, 0);
        if (r < 0) {
                if (asprintf(&c->bus_error[d], "cannot connect to %s: %s", arg_socket[d], strerror(-r)) < 0)
                        c->bus_error[d] = NULL;
                return NULL;
        }
        c->bus[d] = TAKE_PTR(bus);
        return c->bus[d];
}

/* Queues a call; its reply (or error) lands in the returned Call. */
static Call *ctl_call(Ctl *c, Daemon d, const char *member, const char *sig, ...)
{
        static const char *const paths[_D_MAX] = {KVPD_BUS_PATH, KVNETD_BUS_PATH, KVELECTD_BUS_PATH};
        static const char *const ifaces[_D_MAX] = {KVPD_BUS_INTERFACE, KVNETD_BUS_INTERFACE,
                                                   KVELECTD_BUS_INTERFACE};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus *bus = ctl_bus(c, d);
        Call *call = &c->calls[c->n_calls];
        va_list ap;
        int r;

        if (c->n_calls >= ELEMENTSOF(c->calls))
                return NULL;
        c->n_calls++;
        *call = (Call){.ctl = c, .d = d, .member = member};
        if (!bus) {
                call->error = strdup(c->bus_error[d] ? c->bus_error[d] : "cannot connect");
                return call;
        }
        r = sd_bus_message_new_method_call(bus, &m, NULL, paths[d], ifaces[d], member);
        if (r >= 0 && sig) {
                va_start(ap, sig);
                r = sd_bus_message_appendv(m, sig, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call_async(bus, NULL, m, on_reply, call, arg_timeout_usec);
        if (r < 0) {
                if (asprintf(&call->error, "%s: %s", member, strerror(-r)) < 0)
                        call->error = NULL;
                return call;
        }
        c->pending++;
        return call;
}

/* Runs until every call is answered or the timeout; unanswered calls get
 * an error naming the timeout. */
static int ctl_run(Ctl *c)
{
        int r;

        if (c->pending > 0) {
                r = sd_event_add_time_relative(c->event, NULL, CLOCK_MONOTONIC, arg_timeout_usec, 0,
                                               on_timeout, c);
                if (r < 0)
                        return r;
                r = sd_event_loop(c->event);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < c->n_calls; i++)
                if (!c->calls[i].reply && !c->calls[i].error &&
                    asprintf(&c->calls[i].error, "no answer within %.1fs",
                             (double)arg_timeout_usec / USEC_PER_SEC) < 0)
                        c->calls[i].error = NULL;
        return 0;
}

/* ------------------------------------------------------------------ data */

static json_t *read_strings(sd_bus_message *m)
{
        json_t *a = json_array();
        const char *s;

        if (sd_bus_message_enter_container(m, 'a', "s") < 0)
                return a;
        while (sd_bus_message_read_basic(m, 's', &s) > 0)
                json_array_append_new(a, json_string(s));
        (void)sd_bus_message_exit_container(m);
        return a;
}

static json_t *read_ports(sd_bus_message *m)
{
        json_t *a = json_array();
        const char *proto;
        uint16_t port;

        if (sd_bus_message_enter_container(m, 'a', "(sq)") < 0)
                return a;
        while (sd_bus_message_read(m, "(sq)", &proto, &port) > 0)
                json_array_append_new(a, json_pack("{s:s, s:i}", "protocol", proto, "port", (int)port));
        (void)sd_bus_message_exit_container(m);
        return a;
}

static json_t *in_ms(uint64_t deadline, uint64_t now)
{
        if (deadline == 0)
                return json_null();
        return json_integer(deadline > now ? (json_int_t)((deadline - now) / USEC_PER_MSEC)
                                           : -(json_int_t)((now - deadline) / USEC_PER_MSEC));
}

static json_t *rfc3339(uint64_t realtime_usec)
{
        char buf[64];
        time_t t = (time_t)(realtime_usec / USEC_PER_SEC);
        struct tm tm;

        if (realtime_usec == 0 || !gmtime_r(&t, &tm))
                return json_null();
        (void)strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_string(buf);
}

static json_t *service_entry(json_t *services, const char *key)
{
        json_t *s = json_object_get(services, key);

        if (!s) {
                s = json_pack("{s:s}", "service", key);
                json_object_set_new(services, key, s);
        }
        return s;
}

/* Everything `status` shows, as one JSON object; the text output is printed
 * from it too, so both always say the same. */
static json_t *collect_status(Ctl *c, int *ret_exit)
{
        Call *node, *svcs, *vips, *egress, *camps;
        json_t *out, *daemons, *services, *list, *campaigns;
        uint64_t now = now_usec();
        bool degraded = false, down = false;
        const char *health;

        node = ctl_call(c, D_KVPD, KVPD_METHOD_GET_NODE, NULL);
        svcs = ctl_call(c, D_KVPD, KVPD_METHOD_LIST_SERVICES, NULL);
        vips = ctl_call(c, D_KVNETD, KVNETD_METHOD_LIST_VIPS, NULL);
        egress = ctl_call(c, D_KVNETD, KVNETD_METHOD_LIST_EGRESS, NULL);
        camps = ctl_call(c, D_KVELECTD, KVELECTD_METHOD_LIST, NULL);
        (void)ctl_run(c);

        out = json_object();
        daemons = json_object();
        services = json_object();
        campaigns = json_object();

        /* kvpd: the node, and what it wants per Service. */
        if (node->reply) {
                const char *name, *version;
                int synced, netd, electd;

                if (sd_bus_message_read(node->reply, KVPD_SIG_GET_NODE_REPLY, &name, &version, &synced,
                                        &netd, &electd) >= 0) {
                        json_object_set_new(out, "node", json_string(name));
                        json_object_set_new(out, "version", json_string(version));
                        json_object_set_new(daemons, "kvpd",
                                            json_pack("{s:b, s:b, s:b, s:b}", "reachable", 1, "synced",
                                                      synced, "kvnetd_connected", netd, "kvelectd_connected",
                                                      electd));
                        degraded |= !synced || !netd || !electd;
                }
        }
        if (!json_object_get(daemons, "kvpd")) {
                json_object_set_new(daemons, "kvpd",
                                    json_pack("{s:b, s:s?}", "reachable", 0, "error",
                                              node->error ? node->error : svcs->error));
                down = true;
        }
        if (svcs->reply && sd_bus_message_enter_container(svcs->reply, 'a', KVPD_SIG_SERVICE) >= 0) {
                while (sd_bus_message_enter_container(svcs->reply, 'r', "sssbstsasasa(sq)asasbsstb") > 0) {
                        const char *key, *state, *lease, *holder, *ifname, *err, *from;
                        int leading, programmed, failing;
                        uint64_t deadline, err_usec;
                        json_t *s;

                        if (sd_bus_message_read(svcs->reply, "sssbsts", &key, &state, &lease, &leading,
                                                &holder, &deadline, &ifname) < 0)
                                break;
                        s = service_entry(services, key);
                        json_object_set_new(s, "state", json_string(state));
                        json_object_set_new(s, "lease", *lease ? json_string(lease) : json_null());
                        json_object_set_new(s, "role",
                                            json_string(leading  ? "holder"
                                                        : *lease ? "candidate"
                                                                 : "none"));
                        json_object_set_new(s, "holder", *holder ? json_string(holder) : json_null());
                        json_object_set_new(s, "lease_deadline_in_ms", in_ms(deadline, now));
                        json_object_set_new(s, "interface", json_string(ifname));
                        json_object_set_new(s, "vips_wanted", read_strings(svcs->reply));
                        json_object_set_new(s, "pods", read_strings(svcs->reply));
                        json_object_set_new(s, "ports", read_ports(svcs->reply));
                        json_object_set_new(s, "allowed", read_strings(svcs->reply));
                        json_object_set_new(s, "denied", read_strings(svcs->reply));
                        if (sd_bus_message_read(svcs->reply, "bsstb", &programmed, &err, &from, &err_usec,
                                                &failing) < 0)
                                break;
                        json_object_set_new(s, "programmed", json_boolean(programmed));
                        json_object_set_new(s, "last_error",
                                            *err ? json_pack("{s:s, s:s, s:o, s:b}", "message", err, "from",
                                                             from, "at", rfc3339(err_usec), "standing",
                                                             failing)
                                                 : json_null());
                        degraded |= failing;
                        (void)sd_bus_message_exit_container(svcs->reply);
                }
                (void)sd_bus_message_exit_container(svcs->reply);
        }

        /* kvnetd: where each VIP is bound, until when, and what is SNATed. */
        if (vips->reply && sd_bus_message_enter_container(vips->reply, 'a', "(ssst)") >= 0) {
                const char *key, *addr, *ifname;
                uint64_t deadline;

                while (sd_bus_message_read(vips->reply, "(ssst)", &key, &addr, &ifname, &deadline) > 0) {
                        json_t *s = service_entry(services, *key ? key : "(unclaimed)"), *bound;

                        bound = json_object_get(s, "vips_bound");
                        if (!bound) {
                                bound = json_array();
                                json_object_set_new(s, "vips_bound", bound);
                        }
                        json_array_append_new(bound, json_pack("{s:s, s:s, s:o}", "address", addr,
                                                               "interface", ifname, "grant_expires_in_ms",
                                                               in_ms(deadline, now)));
                }
        }
        if (egress->reply && sd_bus_message_enter_container(egress->reply, 'a', "(sssasa(sq)asasas)") >= 0) {
                while (sd_bus_message_enter_container(egress->reply, 'r', "sssasa(sq)asasas") > 0) {
                        const char *key, *v4, *v6;
                        json_t *s, *k;

                        if (sd_bus_message_read(egress->reply, "sss", &key, &v4, &v6) < 0)
                                break;
                        s = service_entry(services, key);
                        k = json_pack("{s:s?, s:s?}", "vip4", *v4 ? v4 : NULL, "vip6", *v6 ? v6 : NULL);
                        json_object_set_new(k, "pods", read_strings(egress->reply));
                        json_object_set_new(k, "ports", read_ports(egress->reply));
                        json_object_set_new(k, "allowed", read_strings(egress->reply));
                        json_object_set_new(k, "denied", read_strings(egress->reply));
                        json_object_set_new(k, "excluded", read_strings(egress->reply));
                        json_object_set_new(s, "snat", k);
                        (void)sd_bus_message_exit_container(egress->reply);
                }
        }
        if (vips->reply && egress->reply)
                json_object_set_new(daemons, "kvnetd", json_pack("{s:b}", "reachable", 1));
        else {
                json_object_set_new(daemons, "kvnetd",
                                    json_pack("{s:b, s:s?}", "reachable", 0, "error",
                                              vips->error ? vips->error : egress->error));
                down = true;
        }

        /* kvelectd: every campaign, leading or not. */
        if (camps->reply && sd_bus_message_enter_container(camps->reply, 'a', "(ssbst)") >= 0) {
                const char *ns, *name, *holder;
                int leading;
                uint64_t deadline;

                json_object_set_new(daemons, "kvelectd", json_pack("{s:b}", "reachable", 1));
                while (sd_bus_message_read(camps->reply, "(ssbst)", &ns, &name, &leading, &holder,
                                           &deadline) > 0) {
                        char key[512];

                        (void)snprintf(key, sizeof(key), "%s/%s", ns, name);
                        json_object_set_new(campaigns, key,
                                            json_pack("{s:b, s:s?, s:o}", "leading", leading, "holder",
                                                      *holder ? holder : NULL, "deadline_in_ms",
                                                      in_ms(leading ? deadline : 0, now)));
                }
        } else {
                json_object_set_new(daemons, "kvelectd",
                                    json_pack("{s:b, s:s?}", "reachable", 0, "error", camps->error));
                degraded = true;
        }

        /* The services as a list, each with its campaign as kvelectd sees it. */
        list = json_array();
        {
                const char *key;
                json_t *s;

                json_object_foreach(services, key, s)
                {
                        json_t *lease = json_object_get(s, "lease");
                        if (json_is_string(lease) && json_object_get(campaigns, json_string_value(lease)))
                                json_object_set(s, "campaign",
                                                json_object_get(campaigns, json_string_value(lease)));
                        json_array_append(list, s);
                }
        }
        json_decref(services);

        health = down ? "down" : degraded ? "degraded" : "healthy";
        json_object_set_new(out, "health", json_string(health));
        json_object_set_new(out, "daemons", daemons);
        json_object_set_new(out, "services", list);
        json_object_set_new(out, "campaigns", campaigns);
        *ret_exit = down ? EXIT_DOWN : degraded ? EXIT_DEGRADED : EXIT_HEALTHY;
        return out;
}

/* ------------------------------------------------------------------ text */

static void print_ms(const char *what, json_t *ms)
{
        if (json_is_integer(ms))
                printf(" (%s %s%.1fs)", what, json_integer_value(ms) < 0 ? "passed " : "in ",
                       (double)llabs((long long)json_integer_value(ms)) / 1000.0);
}

static void print_list(const char *label, json_t *a)
{
        size_t i;
        json_t *v;

        if (!json_is_array(a) || json_array_size(a) == 0)
                return;
        printf("  %-11s", label);
        json_array_foreach(a, i, v)
        {
                if (json_is_string(v))
                        printf(" %s", json_string_value(v));
                else if (json_is_object(v))
                        printf(" %s:%d", json_string_value(json_object_get(v, "protocol")),
                               (int)json_integer_value(json_object_get(v, "port")));
        }
        printf("\n");
}

static void print_status(json_t *st)
{
        json_t *daemons = json_object_get(st, "daemons"), *services = json_object_get(st, "services"), *s;
        size_t i;

        printf("node %s (kvegress %s): %s\n", json_string_value(json_object_get(st, "node")) ?: "?",
               json_string_value(json_object_get(st, "version")) ?: "?",
               json_string_value(json_object_get(st, "health")));
        for (int d = 0; d < _D_MAX; d++) {
                json_t *o = json_object_get(daemons, daemon_names[d]);

                printf("  %-9s ", daemon_names[d]);
                if (!json_is_true(json_object_get(o, "reachable"))) {
                        printf("DOWN: %s\n", json_string_value(json_object_get(o, "error")) ?: "no answer");
                        continue;
                }
                printf("up");
                if (d == D_KVPD) {
                        if (!json_is_true(json_object_get(o, "synced")))
                                printf(", API watches not synced yet");
                        if (!json_is_true(json_object_get(o, "kvnetd_connected")))
                                printf(", not connected to kvnetd");
                        if (!json_is_true(json_object_get(o, "kvelectd_connected")))
                                printf(", not connected to kvelectd");
                }
                printf("\n");
        }
        if (json_array_size(services) == 0)
                printf("\nno egress Service on this node\n");
        json_array_foreach(services, i, s)
        {
                json_t *bound = json_object_get(s, "vips_bound"), *snat = json_object_get(s, "snat"),
                       *err = json_object_get(s, "last_error"), *v;
                const char *role = json_string_value(json_object_get(s, "role"));
                size_t j;

                printf("\n%s: ", json_string_value(json_object_get(s, "service")));
                if (!role)
                        printf("held by kvnetd, unknown to kvpd");
                else {
                        printf("%s, %s", json_string_value(json_object_get(s, "state")), role);
                        if (json_is_string(json_object_get(s, "lease")))
                                printf(" of lease %s", json_string_value(json_object_get(s, "lease")));
                        if (json_is_string(json_object_get(s, "holder")) && strcmp(role, "holder") != 0)
                                printf(" (held by %s)", json_string_value(json_object_get(s, "holder")));
                        print_ms("renew deadline", json_object_get(s, "lease_deadline_in_ms"));
                }
                printf("\n");
                print_list("VIPs", json_object_get(s, "vips_wanted"));
                json_array_foreach(bound, j, v)
                {
                        printf("  %-11s %s on %s", j == 0 ? "bound" : "",
                               json_string_value(json_object_get(v, "address")),
                               json_string_value(json_object_get(v, "interface")));
                        print_ms("grant expires", json_object_get(v, "grant_expires_in_ms"));
                        printf("\n");
                }
                if (snat) {
                        printf("  %-11s", "SNAT to");
                        if (json_is_string(json_object_get(snat, "vip4")))
                                printf(" %s", json_string_value(json_object_get(snat, "vip4")));
                        if (json_is_string(json_object_get(snat, "vip6")))
                                printf(" %s", json_string_value(json_object_get(snat, "vip6")));
                        printf(" for %zu pods\n", json_array_size(json_object_get(snat, "pods")));
                }
                print_list("pods", json_object_get(s, "pods"));
                print_list("ports", json_object_get(s, "ports"));
                print_list("allowed", json_object_get(s, "allowed"));
                print_list("denied", json_object_get(s, "denied"));
                if (json_is_string(json_object_get(s, "state")) &&
                    strcmp(json_string_value(json_object_get(s, "state")), "ready") == 0 && role &&
                    strcmp(role, "holder") == 0)
                        printf("  %-11s %s\n", "programmed",
                               json_is_true(json_object_get(s, "programmed")) ? "yes" : "NO");
                if (json_is_object(err))
                        printf("  %-11s %s (from %s, %s%s)\n", "last error",
                               json_string_value(json_object_get(err, "message")),
                               json_string_value(json_object_get(err, "from")),
                               json_string_value(json_object_get(err, "at")) ?: "?",
                               json_is_true(json_object_get(err, "standing")) ? ", standing"
                                                                              : ", resolved since");
        }
}

static void emit(json_t *o)
{
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);

        if (s) {
                puts(s);
                free(s);
        }
}

/* -------------------------------------------------------------- commands */

static int cmd_status(Ctl *c)
{
        int ret;
        json_t *st = collect_status(c, &ret);

        if (arg_json)
                emit(st);
        else
                print_status(st);
        json_decref(st);
        return ret;
}

/* A table's first line when daemon (of status st) did not answer. */
static void print_if_down(json_t *st, const char *daemon)
{
        json_t *d = json_object_get(json_object_get(st, "daemons"), daemon);

        if (!json_is_true(json_object_get(d, "reachable")))
                printf("%s DOWN: %s\n", daemon, json_string_value(json_object_get(d, "error")));
}

/* The last column of vips and leases: milliseconds as "1.5s", or "-". */
static void print_seconds_column(json_t *ms)
{
        if (json_is_integer(ms))
                printf("%.1fs\n", (double)json_integer_value(ms) / 1000.0);
        else
                printf("-\n");
}

static int cmd_vips(Ctl *c)
{
        int ret;
        json_t *st = collect_status(c, &ret), *out = json_array(), *s, *v;
        size_t i, j;

        json_array_foreach(json_object_get(st, "services"), i, s)
                json_array_foreach(json_object_get(s, "vips_bound"), j, v)
        {
                json_t *e = json_deep_copy(v);
                json_object_set(e, "service", json_object_get(s, "service"));
                json_array_append_new(out, e);
        }
        if (arg_json)
                emit(out);
        else {
                print_if_down(st, "kvnetd");
                printf("%-40s %-40s %-12s %s\n", "SERVICE", "VIP", "INTERFACE", "GRANT EXPIRES IN");
                json_array_foreach(out, i, v)
                {
                        json_t *ms = json_object_get(v, "grant_expires_in_ms");
                        printf("%-40s %-40s %-12s ", json_string_value(json_object_get(v, "service")),
                               json_string_value(json_object_get(v, "address")),
                               json_string_value(json_object_get(v, "interface")));
                        print_seconds_column(ms);
                }
        }
        json_decref(out);
        json_decref(st);
        return ret;
}

static int cmd_leases(Ctl *c)
{
        int ret;
        json_t *st = collect_status(c, &ret), *camps = json_object_get(st, "campaigns"), *v;
        const char *key;

        if (arg_json)
                emit(camps);
        else {
                print_if_down(st, "kvelectd");
                printf("%-50s %-8s %-30s %s\n", "LEASE", "LEADING", "HOLDER", "RENEW DEADLINE IN");
                json_object_foreach(camps, key, v)
                {
                        json_t *ms = json_object_get(v, "deadline_in_ms");
                        printf("%-50s %-8s %-30s ", key,
                               json_is_true(json_object_get(v, "leading")) ? "yes" : "no",
                               json_string_value(json_object_get(v, "holder")) ?: "-");
                        print_seconds_column(ms);
                }
        }
        json_decref(st);
        return ret;
}

static int cmd_rules(Ctl *c, const char *service)
{
        ParseError e;
        const char *text = NULL;
        Call *call;

        /* kvnetd checks it again; this is for a clear message here. */
        if (service_key_parse(service, NULL, NULL, &e) < 0) {
                fprintf(stderr, "kvctl: rules %s: %s\n", service, e.message);
                return EXIT_USAGE;
        }
        call = ctl_call(c, D_KVNETD, KVNETD_METHOD_DESCRIBE_SERVICE, "s", service);
        (void)ctl_run(c);
        if (!call->reply || sd_bus_message_read(call->reply, "s", &text) < 0) {
                if (arg_json) {
                        json_t *o = json_pack("{s:s, s:n, s:s?}", "service", service, "rules", "error",
                                              call->error);
                        emit(o);
                        json_decref(o);
                } else
                        fprintf(stderr, "kvctl: kvnetd: %s\n", call->error ? call->error : "no answer");
                /* kvnetd refused (unknown service): 1; did not answer: 2. */
                return call->answered ? EXIT_DEGRADED : EXIT_DOWN;
        }
        if (arg_json) {
                json_t *o = json_pack("{s:s, s:s}", "service", service, "rules", text);
                emit(o);
                json_decref(o);
        } else
                fputs(text, stdout);
        return EXIT_HEALTHY;
}

/* ---------------------------------------------------------------- metrics */

/* One metric family: its HELP and TYPE lines and its samples, gathered from
 * every daemon so each family appears once, as the format requires. */
typedef struct Family {
        char *name, *header;
        char *samples;
        size_t size;
        FILE *f;
} Family;

/* Families are allocated one by one: each holds a memstream that points
 * into it, so they must not move. */
static Family *family_get(Family ***v, size_t *n, size_t *cap, const char *name)
{
        Family *fam;

        for (size_t i = 0; i < *n; i++)
                if (streq((*v)[i]->name, name))
                        return (*v)[i];
        if (array_reserve((void **)v, cap, *n + 1, sizeof(Family *)) < 0)
                return NULL;
        fam = calloc(1, sizeof(Family));
        if (!fam)
                return NULL;
        fam->name = strdup(name);
        fam->f = open_memstream(&fam->samples, &fam->size);
        (*v)[(*n)++] = fam;
        return fam->name && fam->f ? fam : NULL;
}

/* Adds one daemon's exposition. Samples follow their family's TYPE line. */
static void families_add(Family ***v, size_t *n, size_t *cap, const char *text)
{
        _cleanup_free_ char *copy = strdup(text);
        char *save = NULL;
        Family *cur = NULL;

        for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
             line = strtok_r(NULL, "\n", &save)) {
                char name[256];

                if (strncmp(line, "# HELP ", 7) == 0 && sscanf(line + 7, "%255s", name) == 1) {
                        /* A family another daemon described already keeps that text. */
                        cur = family_get(v, n, cap, name);
                        if (cur && !cur->header)
                                cur->header = strdup(line);
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0 && sscanf(line + 7, "%255s", name) == 1) {
                        cur = family_get(v, n, cap, name);
                        if (cur && cur->header && !strstr(cur->header, "\n# TYPE")) {
                                char *h = NULL;
                                if (asprintf(&h, "%s\n%s", cur->header, line) >= 0) {
                                        free(cur->header);
                                        cur->header = h;
                                }
                        }
                        continue;
                }
                if (cur && cur->f && line[0] != '#')
                        fprintf(cur->f, "%s\n", line);
        }
}

static int collect_metrics(Ctl *c, char **ret)
{
        static const char *const members[_D_MAX] = {KVPD_METHOD_GET_METRICS, KVNETD_METHOD_GET_METRICS,
                                                    KVELECTD_METHOD_GET_METRICS};
        Call *calls[_D_MAX];
        Family **v = NULL;
        size_t n = 0, cap = 0, size = 0;
        char *out = NULL;
        FILE *f;

        for (int d = 0; d < _D_MAX; d++)
                calls[d] = ctl_call(c, d, members[d], NULL);
        (void)ctl_run(c);
        f = open_memstream(&out, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f,
                "# HELP kube_vip_build_info kvegress's version (kube-vip's metric name)\n"
                "# TYPE kube_vip_build_info gauge\n"
                "kube_vip_build_info{version=\"%s\",implementation=\"kvegress\"} 1\n",
                PROJECT_VERSION);
        fprintf(f, "# HELP kvegress_daemon_up 1 if the daemon answered kvctl within its timeout\n"
                   "# TYPE kvegress_daemon_up gauge\n");
        for (int d = 0; d < _D_MAX; d++) {
                const char *text = NULL;
                bool up = calls[d]->reply && sd_bus_message_read(calls[d]->reply, "s", &text) >= 0;

                fprintf(f, "kvegress_daemon_up{daemon=\"%s\"} %d\n", daemon_names[d], up ? 1 : 0);
                if (up)
                        families_add(&v, &n, &cap, text);
        }
        for (size_t i = 0; i < n; i++) {
                if (v[i]->f)
                        (void)fclose(v[i]->f);
                if (v[i]->header)
                        fprintf(f, "%s\n", v[i]->header);
                if (v[i]->samples)
                        fputs(v[i]->samples, f);
                free(v[i]->name);
                free(v[i]->header);
                free(v[i]->samples);
                free(v[i]);
        }
        free(v);
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = out;
        return 0;
}

/* Under kvegress-metrics.socket (Accept=yes) stdin and stdout are one HTTP
 * connection: one GET /metrics, one answer, done. The request is read with a
 * bound on its size and on the time it takes. */
static int serve_http(const char *body)
{
        char req[4096];
        size_t n = 0;
        const char *status = "200 OK";
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        uint64_t deadline = now_usec() + arg_timeout_usec;

        while (n < sizeof(req) - 1 && !memmem(req, n, "\r\n\r\n", 4) && !memmem(req, n, "\n\n", 2)) {
                uint64_t now = now_usec();
                ssize_t k;

                if (now >= deadline || poll(&p, 1, (int)((deadline - now) / USEC_PER_MSEC) + 1) <= 0)
                        break;
                k = read(STDIN_FILENO, req + n, sizeof(req) - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t)k;
                req[n] = '\0';
        }
        req[n] = '\0';
        if (strncmp(req, "GET ", 4) != 0)
                status = "405 Method Not Allowed";
        else if (strncmp(req + 4, "/metrics ", 9) != 0 && strncmp(req + 4, "/ ", 2) != 0 &&
                 strncmp(req + 4, "/metrics?", 9) != 0)
                status = "404 Not Found";
        if (!streq(status, "200 OK"))
                body = "";
        printf("HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
               status, strlen(body), body);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

static int cmd_metrics(Ctl *c, bool http)
{
        _cleanup_free_ char *text = NULL;
        int r = collect_metrics(c, &text);

        if (r < 0) {
                fprintf(stderr, "kvctl: metrics: %s\n", strerror(-r));
                return EXIT_DOWN;
        }
        if (http)
                return serve_http(text) < 0 ? EXIT_DOWN : EXIT_HEALTHY;
        fputs(text, stdout);
        return EXIT_HEALTHY;
}

static void help(void)
{
        printf("Usage: kvctl [OPTIONS] COMMAND\n\n"
               "What kvegress is doing on this node (read-only; root or group kvegress).\n\n"
               "Commands:\n"
               "  status           Per Service: holder or candidate, lease deadline, VIPs and where\n"
               "                   they are bound, pods, ports and networks, last error and from which\n"
               "                   daemon; and which daemon does not answer\n"
               "  vips             The VIPs kvnetd holds\n"
               "  leases           The leases kvelectd campaigns for\n"
               "  rules SERVICE    The nft chain and sets kvnetd programmed for SERVICE (namespace/name)\n"
               "  metrics [--http] The three daemons' metrics in Prometheus's text format; with --http,\n"
               "                   answer one HTTP GET on stdin/stdout (kvegress-metrics.socket)\n\n"
               "Options:\n"
               "  -h --help        Show this help\n"
               "     --version     Show the version\n"
               "  -j --json        Print JSON\n"
               "     --timeout=SEC Give up on a daemon after this long (default 2)\n"
               "     --kvpd-socket=PATH      [KVEGRESS_KVPD_SOCKET] (" KVPD_SOCKET_PATH_DEFAULT ")\n"
               "     --kvnetd-socket=PATH    [KVNETD_SOCKET] (" KVNETD_SOCKET_PATH_DEFAULT ")\n"
               "     --kvelectd-socket=PATH  [KVELECTD_SOCKET] (" KVELECTD_SOCKET_PATH_DEFAULT ")\n\n"
               "Exit status: 0 healthy, 1 degraded (kvelectd does not answer, kvpd is not synced\n"
               "or not connected, or a Service has a standing error), 2 down (kvpd or kvnetd\n"
               "does not answer), 64 usage.\n");
}

static const char *env_or(const char *name, const char *def)
{
        const char *v = getenv(name);
        return v && *v ? v : def;
}

int main(int argc, char *argv[])
{
        enum { ARG_VERSION = 0x100, ARG_TIMEOUT, ARG_KVPD, ARG_KVNETD, ARG_KVELECTD, ARG_HTTP };
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"json", no_argument, NULL, 'j'},
                {"timeout", required_argument, NULL, ARG_TIMEOUT},
                {"kvpd-socket", required_argument, NULL, ARG_KVPD},
                {"kvnetd-socket", required_argument, NULL, ARG_KVNETD},
                {"kvelectd-socket", required_argument, NULL, ARG_KVELECTD},
                {"http", no_argument, NULL, ARG_HTTP},
                {},
        };
        Ctl ctl = {};
        const char *cmd;
        int opt, r;

        arg_socket[D_KVPD] = env_or("KVEGRESS_KVPD_SOCKET", KVPD_SOCKET_PATH_DEFAULT);
        arg_socket[D_KVNETD] = env_or("KVNETD_SOCKET", KVNETD_SOCKET_PATH_DEFAULT);
        arg_socket[D_KVELECTD] = env_or("KVELECTD_SOCKET", KVELECTD_SOCKET_PATH_DEFAULT);
        while ((opt = getopt_long(argc, argv, "hj", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("kvctl %s\n", PROJECT_VERSION);
                        return 0;
                case 'j':
                        arg_json = true;
                        break;
                case ARG_TIMEOUT: {
                        char *end;
                        double t = strtod(optarg, &end);
                        if (*end != '\0' || end == optarg || !(t > 0 && t <= 3600)) {
                                fprintf(stderr, "kvctl: --timeout=%s: seconds between 0 and 3600\n", optarg);
                                return EXIT_USAGE;
                        }
                        arg_timeout_usec = (uint64_t)(t * USEC_PER_SEC);
                        break;
                }
                case ARG_KVPD:
                        arg_socket[D_KVPD] = optarg;
                        break;
                case ARG_KVNETD:
                        arg_socket[D_KVNETD] = optarg;
                        break;
                case ARG_KVELECTD:
                        arg_socket[D_KVELECTD] = optarg;
                        break;
                case ARG_HTTP:
                        arg_http = true;
                        break;
                default:
                        return EXIT_USAGE;
                }
        cmd = optind < argc ? argv[optind] : "status";

        r = sd_event_new(&ctl.event);
        if (r < 0) {
                fprintf(stderr, "kvctl: cannot set up: %s\n", strerror(-r));
                return EXIT_DOWN;
        }
        if (streq(cmd, "status") && optind + 1 >= argc)
                r = cmd_status(&ctl);
        else if (streq(cmd, "vips") && optind + 1 >= argc)
                r = cmd_vips(&ctl);
        else if (streq(cmd, "leases") && optind + 1 >= argc)
                r = cmd_leases(&ctl);
        else if (streq(cmd, "rules") && optind + 2 == argc)
                r = cmd_rules(&ctl, argv[optind + 1]);
        else if (streq(cmd, "metrics") && optind + 1 >= argc)
                r = cmd_metrics(&ctl, arg_http);
        else {
                fprintf(stderr, "kvctl: unknown command or arguments: %s (see kvctl --help)\n", cmd);
                r = EXIT_USAGE;
        }
        ctl_done(&ctl);
        return r;
}
