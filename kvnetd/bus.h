/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The io.kvegress.Net1 object on each admitted connection (shared/kvnetd-bus.h
 * is the contract). */

#include "manager.h"

int bus_setup_connection(sd_bus *bus, void *userdata);

/* The refusals logged recently (each distinct one once per REFUSAL_QUIET_USEC). */
struct RefusalLog *refusal_log_free(struct RefusalLog *l);

/* Answers a request whose reply was deferred (egress-batch.c): success, or
 * the error r maps to with message, logged as a refusal like any other. */
void bus_reply_deferred(Manager *m, sd_bus_message *msg, int r, const char *message);
