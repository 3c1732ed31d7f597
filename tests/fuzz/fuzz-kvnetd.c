/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kvnetd's request handlers (kvnetd/bus.c) and validators
 * (kvnetd/validate.c), the code between an unprivileged client and
 * CAP_NET_ADMIN.
 *
 * Bus mode (any input not starting with 'V'): a script of method calls, one
 * per line, fields separated by '|', list entries by ',':
 *   G|service|address|ifname|deadline_ms    GrantVip (deadline relative to now)
 *   R|service|deadline_ms                    RenewGrant
 *   X|service|address                        ReleaseVip
 *   S|service|vip4|vip6|pods|proto:port,...|allowed|denied|excluded
 *   D|service                                RemoveService
 *   L / E                                    ListVips / ListEgress
 * Each call is built with sd_bus_message_append on a real peer-to-peer
 * sd-bus connection (a socketpair) and dispatched by sd-bus to the real
 * handlers, which act on an in-memory Manager (fuzz-kvnetd-manager.c) that
 * checks what each handler promised to validate. Every call must get a
 * reply: a method return, or an error named in kvnetd-bus.h.
 *
 * Validator mode ('V' then a selector byte): the validators called directly
 * with raw strings, including what sd-bus would refuse (invalid UTF-8). */
#include <errno.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>

#include "bus.h"
#include "fuzz-kvnetd.h"
#include "kvnetd-bus.h"
#include "log.h"

static Manager manager;
static Config config;
static sd_bus *server, *client;

static int setup(void)
{
        static IpPrefix ranges[2];
        static char *interfaces[] = {"lo", "nosuchif0", NULL};
        sd_id128_t id = SD_ID128_MAKE(6b, 76, 6e, 65, 74, 64, 66, 75, 7a, 7a, 00, 00, 00, 00, 00, 01);
        int fds[2];

        if (server)
                return 0;
        log_set_max_level(LOG_CRIT);
        fuzz_assert(ip_prefix_parse("192.168.0.224/27", AF_UNSPEC, false, &ranges[0], NULL) == 0);
        fuzz_assert(ip_prefix_parse("fd00:192::200/120", AF_UNSPEC, false, &ranges[1], NULL) == 0);
        config = (Config){.vip_ranges = ranges, .n_vip_ranges = 2, .interfaces = interfaces};
        manager = (Manager){.config = &config,
                            .max_services = KVNETD_MAX_SERVICES,
                            .max_vips = KVNETD_MAX_VIPS,
                            .max_pods_total = KVNETD_MAX_PODS_TOTAL};

        fuzz_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0);
        fuzz_assert(sd_bus_new(&server) >= 0);
        fuzz_assert(sd_bus_set_fd(server, fds[0], fds[0]) >= 0);
        fuzz_assert(sd_bus_set_server(server, 1, id) >= 0);
        fuzz_assert(sd_bus_set_anonymous(server, false) >= 0);
        fuzz_assert(bus_setup_connection(server, &manager) >= 0);
        fuzz_assert(sd_bus_start(server) >= 0);
        fuzz_assert(sd_bus_new(&client) >= 0);
        fuzz_assert(sd_bus_set_fd(client, fds[1], fds[1]) >= 0);
        fuzz_assert(sd_bus_set_bus_client(client, false) >= 0);
        fuzz_assert(sd_bus_start(client) >= 0);
        return 0;
}

/* One step of both ends, until the reply has arrived. */
typedef struct Call {
        bool done;
        bool error;
        char error_name[128];
} Call;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Call *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        (void)ret_error;
        c->done = true;
        if (e) {
                c->error = true;
                snprintf(c->error_name, sizeof(c->error_name), "%s", e->name);
        } else {
                /* Replies to the List methods must read back by their
                 * documented signature. */
                const char *sig = sd_bus_message_get_signature(m, true);
                fuzz_assert(sig);
                fuzz_assert(streq(sig, "") || streq(sig, KVNETD_SIG_LIST_VIPS_REPLY) ||
                            streq(sig, KVNETD_SIG_LIST_EGRESS_REPLY));
        }
        return 0;
}

static void call(sd_bus_message *msg)
{
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        Call c = {};

        fuzz_assert(sd_bus_call_async(client, &slot, msg, on_reply, &c, 0) >= 0);
        for (unsigned i = 0; !c.done; i++) {
                int a, b;
                /* Every request gets its answer within a few steps; a
                 * handler that never replies would hang a real client. */
                fuzz_assert(i < 10000);
                a = sd_bus_process(server, NULL);
                b = sd_bus_process(client, NULL);
                fuzz_assert(a >= 0 && b >= 0);
        }
        if (c.error)
                fuzz_assert(streq(c.error_name, KVNETD_ERROR_INVALID_ARGS) ||
                            streq(c.error_name, KVNETD_ERROR_NOT_GRANTED) ||
                            streq(c.error_name, KVNETD_ERROR_LIMIT) ||
                            streq(c.error_name, KVNETD_ERROR_KERNEL) ||
                            streq(c.error_name, KVNETD_ERROR_CONFLICT));
}

/* Splits s at sep (in place) into at most max fields; returns the count. */
static size_t split(char *s, char sep, char **fields, size_t max)
{
        size_t n = 0;

        if (max == 0)
                return 0;
        fields[n++] = s;
        for (char *p = s; *p && n < max; p++)
                if (*p == sep) {
                        *p = '\0';
                        fields[n++] = p + 1;
                }
        return n;
}

static const char *field(char **f, size_t n, size_t i)
{
        return i < n ? f[i] : "";
}

static uint64_t deadline_from(const char *ms)
{
        long long v = strtoll(ms, NULL, 10);
        uint64_t now = now_usec();

        /* Relative to now, so scripts stay valid; large values wrap on
         * purpose to reach the edges of validate_deadline(). */
        return now + (uint64_t)v * 1000;
}

static int append_strings(sd_bus_message *m, char *list)
{
        static char *items[KVNETD_MAX_PODS_PER_SERVICE + 2];
        size_t n = *list ? split(list, ',', items, ELEMENTSOF(items)) : 0;
        int r = sd_bus_message_open_container(m, 'a', "s");

        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append_basic(m, 's', items[i]);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

static int append_ports(sd_bus_message *m, char *list)
{
        static char *items[KVNETD_MAX_PORTS + 8];
        size_t n = *list ? split(list, ',', items, ELEMENTSOF(items)) : 0;
        int r = sd_bus_message_open_container(m, 'a', "(sq)");

        for (size_t i = 0; r >= 0 && i < n; i++) {
                char *colon = strchr(items[i], ':');
                uint16_t port = 0;
                if (colon) {
                        *colon = '\0';
                        port = (uint16_t)strtoul(colon + 1, NULL, 10);
                }
                r = sd_bus_message_append(m, "(sq)", items[i], port);
        }
        return r < 0 ? r : sd_bus_message_close_container(m);
}

static void run_line(char *line)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *member;
        char *f[10];
        size_t n = split(line, '|', f, ELEMENTSOF(f));
        int r;

        switch (line[0]) {
        case 'G':
                member = KVNETD_METHOD_GRANT_VIP;
                break;
        case 'R':
                member = KVNETD_METHOD_RENEW_GRANT;
                break;
        case 'X':
                member = KVNETD_METHOD_RELEASE_VIP;
                break;
        case 'S':
                member = KVNETD_METHOD_SET_EGRESS;
                break;
        case 'D':
                member = KVNETD_METHOD_REMOVE_SERVICE;
                break;
        case 'L':
                member = KVNETD_METHOD_LIST_VIPS;
                break;
        case 'E':
                member = KVNETD_METHOD_LIST_EGRESS;
                break;
        default:
                return;
        }
        if (sd_bus_message_new_method_call(client, &m, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE, member) <
            0)
                return;
        switch (line[0]) {
        case 'G':
                r = sd_bus_message_append(m, KVNETD_SIG_GRANT_VIP, field(f, n, 1), field(f, n, 2),
                                          field(f, n, 3), deadline_from(field(f, n, 4)));
                break;
        case 'R':
                r = sd_bus_message_append(m, KVNETD_SIG_RENEW_GRANT, field(f, n, 1),
                                          deadline_from(field(f, n, 2)));
                break;
        case 'X':
                r = sd_bus_message_append(m, KVNETD_SIG_RELEASE_VIP, field(f, n, 1), field(f, n, 2));
                break;
        case 'S': {
                char empty[5][1] = {""};
                char *lists[5];
                for (size_t i = 0; i < 5; i++)
                        lists[i] = 4 + i < n ? f[4 + i] : empty[i];
                r = sd_bus_message_append(m, "sss", field(f, n, 1), field(f, n, 2), field(f, n, 3));
                if (r >= 0)
                        r = append_strings(m, lists[0]);
                if (r >= 0)
                        r = append_ports(m, lists[1]);
                for (size_t i = 2; r >= 0 && i < 5; i++)
                        r = append_strings(m, lists[i]);
                break;
        }
        case 'D':
                r = sd_bus_message_append(m, KVNETD_SIG_REMOVE_SERVICE, field(f, n, 1));
                break;
        default:
                r = 0;
        }
        /* sd-bus refuses invalid UTF-8 at append; so would it on receipt. */
        if (r < 0)
                return;
        call(m);
}

/* Validators on raw strings. */
static void run_validators(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *s = NULL;
        ParseError e = {};
        IpAddr a;
        int r;

        if (size < 1)
                return;
        s = fuzz_strdup(data + 1, size - 1);
        if (!s)
                return;
        switch (data[0] % 5) {
        case 0:
                r = validate_vip(&config, "address", s,
                                 (int[]){AF_UNSPEC, AF_INET, AF_INET6}[data[0] / 5 % 3], &a, &e);
                if (r == 0) {
                        char buf[INET6_ADDRSTRLEN];
                        IpAddr again;
                        fuzz_assert(a.family == AF_INET || a.family == AF_INET6);
                        /* What kvnetd binds prints and re-validates as itself. */
                        fuzz_assert(validate_vip(&config, "address", ip_addr_to_string(&a, buf), AF_UNSPEC,
                                                 &again, NULL) == 0 &&
                                    ip_addr_equal(&a, &again));
                } else
                        fuzz_assert(strncmp(e.message, "address: ", 9) == 0);
                break;
        case 1:
                r = validate_ifname(&config, "ifname", s, &e);
                fuzz_assert(r < 0 ? strncmp(e.message, "ifname: ", 8) == 0 : ifname_valid(s));
                break;
        case 2:
                r = validate_service_key("service", s, &e);
                if (r == 0) {
                        fuzz_assert(strlen(s) <= KVNETD_MAX_SERVICE_KEY);
                        fuzz_assert(strchr(s, '/'));
                } else
                        fuzz_assert(strncmp(e.message, "service: ", 9) == 0);
                break;
        case 3: {
                /* A list of prefixes, normalised: no entry contains another. */
                _cleanup_free_ IpPrefix *v = NULL;
                size_t n = 0;
                if (ip_prefix_list_parse(s, AF_UNSPEC, KVNETD_MAX_NETWORKS, &v, &n, NULL) < 0)
                        break;
                prefixes_normalize(v, &n);
                for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < n; j++) {
                                IpAddr x = {.family = v[j].family, .addr = v[j].addr};
                                if (i != j)
                                        fuzz_assert(!ip_prefix_contains(&v[i], &x));
                        }
                break;
        }
        default: {
                uint64_t now = 0, deadline = 0;
                memcpy(&now, data + 1, MIN(size - 1, sizeof(now)));
                if (size > 9)
                        memcpy(&deadline, data + 9, MIN(size - 9, sizeof(deadline)));
                r = validate_deadline(now, deadline, "deadline", &e);
                fuzz_assert((r == 0) == (deadline > now && deadline - now <= KVNETD_MAX_GRANT_USEC));
        }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *script = NULL;
        char *save = NULL;

        if (size < 1 || size > 64 * 1024)
                return 0;
        setup();
        if (data[0] == 'V') {
                run_validators(data + 1, size - 1);
                return 0;
        }

        /* Fresh state for every input, with one VIP adopted at start (found
         * in the kernel, not yet claimed), as after a restart. */
        fuzz_manager_reset(&manager);
        {
                Service *s = NULL;
                IpAddr a;
                fuzz_assert(manager_add_service(&manager, "kube-system/adopted", &s) == 0);
                fuzz_assert(ip_addr_parse("192.168.0.231", AF_INET, &a, NULL) == 0);
                fuzz_assert(manager_grant_vip(&manager, s, &a, "lo", now_usec() + USEC_PER_SEC) == 0);
                s->vips[0]->adopted = true;
                /* with an adopted egress class */
                s->cls = egress_class_get(&manager, "cls_0000000000000000", 1, 0);
                fuzz_assert(s->cls);
                s->cls->refs++;
        }

        script = fuzz_strdup(data, size);
        if (!script)
                return 0;
        /* At most 64 calls per input: each is a round trip on the socket. */
        unsigned calls = 0;
        for (char *line = strtok_r(script, "\n", &save); line && calls < 64;
             line = strtok_r(NULL, "\n", &save), calls++)
                run_line(line);
        return 0;
}
