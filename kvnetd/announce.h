/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Tells the link that a VIP moved here: gratuitous ARP (both the request and
 * the reply form, as switches and hosts differ in which they learn from) for
 * IPv4, an unsolicited Neighbour Advertisement (Override set, target
 * link-layer address option) to all-nodes for IPv6. Sent at once on bind,
 * then ANNOUNCE_REPEAT - 1 more times, one second apart, from a timer. */

#include "manager.h"

#define ANNOUNCE_REPEAT 3

int announce_open(Manager *m);
void announce_close(Manager *m);
/* Sends now and schedules the repeats. Failures are logged, not returned:
 * the VIP is bound either way and the repeats may get through. */
void announce_start(Manager *m, Vip *v);
int announce_send(Manager *m, const Vip *v);
