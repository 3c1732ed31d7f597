/* SPDX-License-Identifier: Apache-2.0 */
#include "bus-client.h"

#include <stdio.h>
#include <time.h>

#include "bus-server.h"
#include "log.h"

#define RECONNECT_MIN_USEC (100 * USEC_PER_MSEC)
#define RECONNECT_MAX_USEC (5 * USEC_PER_SEC)

struct BusClient {
        sd_event *event;
        char *socket_path;
        sd_bus *bus;
        sd_bus_slot *disconnect_slot;
        sd_event_source *retry_source;
        uint64_t backoff_usec;
        BusClientStateFn state_fn;
        void *userdata;
};

static void schedule_reconnect(BusClient *c);

static void drop_bus(BusClient *c)
{
        c->disconnect_slot = sd_bus_slot_unref(c->disconnect_slot);
        if (c->bus) {
                sd_bus_detach_event(c->bus);
                c->bus = sd_bus_flush_close_unref(c->bus);
        }
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        BusClient *c = userdata;
        (void)m;
        (void)error;

        log_info("lost connection to %s, reconnecting", c->socket_path);
        drop_bus(c);
        if (c->state_fn)
                c->state_fn(c, NULL, c->userdata);
        schedule_reconnect(c);
        return 0;
}

static int try_connect(BusClient *c)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *address = NULL;
        int r;

        if (asprintf(&address, "unix:path=%s", c->socket_path) < 0)
                return -ENOMEM;
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        /* Peer-to-peer: there is no broker to say Hello to. */
        r = sd_bus_set_bus_client(bus, false);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        r = sd_bus_match_signal(bus, &c->disconnect_slot, "org.freedesktop.DBus.Local",
                                "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local", "Disconnected",
                                on_disconnected, c);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, c->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                c->disconnect_slot = sd_bus_slot_unref(c->disconnect_slot);
                return r;
        }
        c->bus = TAKE_PTR(bus);
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        BusClient *c = userdata;
        int r;
        (void)s;
        (void)usec;

        r = try_connect(c);
        if (r < 0) {
                log_debug_errno(r, "connect to %s failed: %m", c->socket_path);
                c->backoff_usec = MIN(c->backoff_usec * 2, RECONNECT_MAX_USEC);
                schedule_reconnect(c);
                return 0;
        }
        log_info("connected to %s", c->socket_path);
        c->backoff_usec = RECONNECT_MIN_USEC;
        if (c->state_fn)
                c->state_fn(c, c->bus, c->userdata);
        return 0;
}

static void schedule_reconnect(BusClient *c)
{
        uint64_t now = 0;
        int r;

        (void)sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (c->retry_source) {
                r = sd_event_source_set_time(c->retry_source, now + c->backoff_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->retry_source, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time(c->event, &c->retry_source, CLOCK_MONOTONIC, now + c->backoff_usec, 0,
                                      on_retry, c);
        if (r < 0)
                log_error_errno(r, "cannot schedule reconnect to %s: %m", c->socket_path);
}

int bus_client_new(sd_event *event, const char *socket_path, BusClientStateFn state_fn, void *userdata,
                   BusClient **ret)
{
        _cleanup_(bus_client_freep) BusClient *c = NULL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->socket_path = strdup(socket_path);
        if (!c->socket_path)
                return -ENOMEM;
        c->state_fn = state_fn;
        c->userdata = userdata;
        c->backoff_usec = RECONNECT_MIN_USEC;
        /* First attempt on the next loop iteration, so the caller has its
         * own state in place when the connect callback runs. */
        c->backoff_usec = 0;
        schedule_reconnect(c);
        c->backoff_usec = RECONNECT_MIN_USEC;
        *ret = TAKE_PTR(c);
        return 0;
}

BusClient *bus_client_free(BusClient *c)
{
        if (!c)
                return NULL;
        drop_bus(c);
        sd_event_source_disable_unref(c->retry_source);
        sd_event_unref(c->event);
        free(c->socket_path);
        free(c);
        return NULL;
}

sd_bus *bus_client_get(BusClient *c)
{
        return c ? c->bus : NULL;
}

const char *bus_client_socket_path(const BusClient *c)
{
        return c->socket_path;
}
