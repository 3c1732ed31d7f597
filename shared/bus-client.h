/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A client connection to a peer-to-peer sd-bus server (kvnetd, kvelectd)
 * that reconnects by itself with backoff. The owner is told on every
 * (re)connect, so it can replay its whole desired state, and on every
 * disconnect. */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macros.h"

typedef struct BusClient BusClient;

/* bus is the live connection after a connect, NULL after a disconnect. */
typedef void (*BusClientStateFn)(BusClient *c, sd_bus *bus, void *userdata);

int bus_client_new(sd_event *event, const char *socket_path, BusClientStateFn state_fn, void *userdata,
                   BusClient **ret);
BusClient *bus_client_free(BusClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(BusClient *, bus_client_free);

/* The connection, or NULL while disconnected. */
sd_bus *bus_client_get(BusClient *c);
const char *bus_client_socket_path(const BusClient *c);
