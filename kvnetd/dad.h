/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* GrantVip answered once the VIP is usable. An IPv6 VIP bound with
 * duplicate-address detection (the default; --ipv6-nodad or vip_skipdad
 * turn it off) is tentative for 1-2 s: the node answers no neighbour
 * solicitation for it, so nothing comes back to it yet. kvpd waits for the
 * answer before it moves a Service's SNAT from a working VIP to a new one
 * (a VIP change), so flows keep the old VIP until the new one works. */

#include <systemd/sd-bus.h>

#include "service.h"

/* Longest wait for the end of DAD; then the grant is answered anyway. */
#define DAD_WAIT_MAX_USEC (5 * USEC_PER_SEC)

/* Answers msg when v's DAD ends (vip_dad_done()). Returns 1, or a negative
 * errno (then the caller answers at once). */
int vip_wait_dad(Manager *m, Vip *v, sd_bus_message *msg);
/* DAD of v ended (error 0), failed (-EADDRINUSE), or v goes (-ENOENT):
 * answers every GrantVip waiting for it. */
void vip_dad_done(Vip *v, int error, const char *message);
