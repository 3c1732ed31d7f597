/* SPDX-License-Identifier: Apache-2.0 */
/* A test client for kvelectd's peer-to-peer bus (busctl insists on Hello(),
 * which a peer-to-peer server does not answer). Reads commands on stdin, one
 * per line:
 *     campaign NS NAME | withdraw NS NAME | list
 * and writes one JSON object per line on stdout for every reply and every
 * signal, stamped with CLOCK_MONOTONIC usec ("t"), the clock kvelectd's
 * deadlines are on:
 *     {"t":..,"reply":"campaign","ok":true}
 *     {"t":..,"reply":"list","campaigns":[{"namespace":..,"name":..,"leading":..,"holder":..,"deadline":..}]}
 *     {"t":..,"signal":"LeadershipChanged","namespace":..,"name":..,"leading":..,"deadline":..,"holder":..}
 *     {"t":..,"signal":"Renewed","namespace":..,"name":..,"deadline":..}
 * Exits when stdin has closed and every reply is in, or the connection drops. */
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "kvelectd-bus.h"
#include "macros.h"

typedef struct Client {
        sd_event *event;
        sd_bus *bus;
        char line[4096];
        size_t len;
        unsigned n_pending;
        bool eof;
} Client;

static Client *the_client; /* for the reply callbacks, whose userdata is the command name */

static void reply_done(void)
{
        Client *c = the_client;

        c->n_pending--;
        if (c->eof && c->n_pending == 0)
                (void)sd_event_exit(c->event, 0);
}

static unsigned long long now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long)ts.tv_sec * USEC_PER_SEC + (unsigned long long)ts.tv_nsec / 1000;
}

static void put_string(const char *s)
{
        putchar('"');
        for (; s && *s; s++) {
                if (*s == '"' || *s == '\\')
                        printf("\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        printf("\\u%04x", *s);
                else
                        putchar(*s);
        }
        putchar('"');
}

static void reply_error(const char *what, const sd_bus_error *e, int r)
{
        printf("{\"t\":%llu,\"reply\":", now_usec());
        put_string(what);
        printf(",\"ok\":false,\"error\":");
        put_string(e && e->name ? e->name : strerror(-r));
        printf(",\"message\":");
        put_string(e && e->message ? e->message : "");
        printf("}\n");
        fflush(stdout);
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        const char *what = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        int r;

        if (e) {
                reply_error(what, e, 0);
                reply_done();
                return 0;
        }
        if (!streq(what, "list")) {
                printf("{\"t\":%llu,\"reply\":\"%s\",\"ok\":true}\n", now_usec(), what);
                fflush(stdout);
                reply_done();
                return 0;
        }
        printf("{\"t\":%llu,\"reply\":\"list\",\"ok\":true,\"campaigns\":[", now_usec());
        r = sd_bus_message_enter_container(m, 'a', "(ssbst)");
        for (bool first = true; r >= 0;) {
                const char *ns, *name, *holder;
                int leading;
                uint64_t deadline;

                r = sd_bus_message_read(m, "(ssbst)", &ns, &name, &leading, &holder, &deadline);
                if (r <= 0)
                        break;
                printf("%s{\"namespace\":", first ? "" : ",");
                put_string(ns);
                printf(",\"name\":");
                put_string(name);
                printf(",\"leading\":%s,\"holder\":", leading ? "true" : "false");
                put_string(holder);
                printf(",\"deadline\":%llu}", (unsigned long long)deadline);
                first = false;
        }
        printf("]}\n");
        fflush(stdout);
        reply_done();
        return 0;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        const char *ns, *name, *holder;
        uint64_t deadline;
        int leading;

        if (sd_bus_message_is_signal(m, KVELECTD_BUS_INTERFACE, KVELECTD_SIGNAL_LEADERSHIP)) {
                if (sd_bus_message_read(m, KVELECTD_SIG_LEADERSHIP, &ns, &name, &leading, &deadline,
                                        &holder) < 0)
                        return 0;
                printf("{\"t\":%llu,\"signal\":\"LeadershipChanged\",\"namespace\":", now_usec());
                put_string(ns);
                printf(",\"name\":");
                put_string(name);
                printf(",\"leading\":%s,\"deadline\":%llu,\"holder\":", leading ? "true" : "false",
                       (unsigned long long)deadline);
                put_string(holder);
                printf("}\n");
        } else if (sd_bus_message_is_signal(m, KVELECTD_BUS_INTERFACE, KVELECTD_SIGNAL_RENEWED)) {
                if (sd_bus_message_read(m, KVELECTD_SIG_RENEWED, &ns, &name, &deadline) < 0)
                        return 0;
                printf("{\"t\":%llu,\"signal\":\"Renewed\",\"namespace\":", now_usec());
                put_string(ns);
                printf(",\"name\":");
                put_string(name);
                printf(",\"deadline\":%llu}\n", (unsigned long long)deadline);
        } else
                return 0;
        fflush(stdout);
        return 0;
}

static void run_command(Client *c, char *line)
{
        char *save = NULL, *cmd = strtok_r(line, " \t", &save);
        char *ns, *name;
        int r;

        if (!cmd)
                return;
        if (streq(cmd, "list")) {
                r = sd_bus_call_method_async(c->bus, NULL, NULL, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE,
                                             KVELECTD_METHOD_LIST, on_reply, (void *)"list", NULL);
        } else if (streq(cmd, "campaign") || streq(cmd, "withdraw")) {
                ns = strtok_r(NULL, " \t", &save);
                name = strtok_r(NULL, " \t", &save);
                if (!ns || !name) {
                        reply_error(cmd, NULL, -EINVAL);
                        return;
                }
                r = sd_bus_call_method_async(
                        c->bus, NULL, NULL, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE,
                        streq(cmd, "campaign") ? KVELECTD_METHOD_CAMPAIGN : KVELECTD_METHOD_WITHDRAW,
                        on_reply, (void *)(streq(cmd, "campaign") ? "campaign" : "withdraw"), "ss", ns,
                        name);
        } else {
                reply_error(cmd, NULL, -EOPNOTSUPP);
                return;
        }
        if (r < 0)
                reply_error(cmd, NULL, r);
        else
                c->n_pending++;
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Client *c = userdata;
        ssize_t n;

        n = read(fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
        if (n <= 0) {
                c->eof = true;
                (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return c->n_pending == 0 ? sd_event_exit(c->event, 0) : 0;
        }
        c->len += (size_t)n;
        for (;;) {
                char *nl = memchr(c->line, '\n', c->len);
                size_t used;

                if (!nl) {
                        if (c->len >= sizeof(c->line) - 1)
                                c->len = 0; /* overlong line: drop it */
                        break;
                }
                *nl = '\0';
                run_command(c, c->line);
                used = (size_t)(nl - c->line) + 1;
                memmove(c->line, nl + 1, c->len - used);
                c->len -= used;
        }
        return 0;
}

static int on_disconnect(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Client *c = userdata;

        printf("{\"t\":%llu,\"disconnected\":true}\n", now_usec());
        fflush(stdout);
        return sd_event_exit(c->event, 1);
}

int main(int argc, char *argv[])
{
        _cleanup_free_ char *address = NULL;
        Client c = {};
        int r;

        the_client = &c;
        if (argc != 2) {
                fprintf(stderr, "Usage: %s SOCKET < commands\n", argv[0]);
                return EXIT_FAILURE;
        }
        if (asprintf(&address, "unix:path=%s", argv[1]) < 0)
                return EXIT_FAILURE;
        r = sd_event_default(&c.event);
        if (r >= 0)
                r = sd_bus_new(&c.bus);
        if (r >= 0)
                r = sd_bus_set_address(c.bus, address);
        if (r >= 0)
                r = sd_bus_start(c.bus);
        if (r >= 0)
                r = sd_bus_attach_event(c.bus, c.event, 0);
        if (r >= 0)
                r = sd_bus_add_filter(c.bus, NULL, on_signal, &c);
        if (r >= 0)
                r = sd_bus_match_signal(c.bus, NULL, "org.freedesktop.DBus.Local",
                                        "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                        "Disconnected", on_disconnect, &c);
        if (r >= 0)
                r = sd_event_add_io(c.event, NULL, STDIN_FILENO, EPOLLIN, on_stdin, &c);
        if (r < 0) {
                fprintf(stderr, "cannot connect to %s: %s\n", argv[1], strerror(-r));
                return EXIT_FAILURE;
        }
        printf("{\"t\":%llu,\"connected\":true}\n", now_usec());
        fflush(stdout);
        r = sd_event_loop(c.event);
        sd_bus_flush_close_unref(c.bus);
        sd_event_unref(c.event);
        return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
