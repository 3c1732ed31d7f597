/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Addresses and prefixes on the bus: the interfaces carry them as strings
 * ("as"), in shared/netaddr's text form; destination ports as "a(sq)". */

#include <systemd/sd-bus.h>

#include "netaddr.h"

/* Appends v as an "as" array. */
int bus_append_addrs(sd_bus_message *m, const IpAddr *v, size_t n);
int bus_append_prefixes(sd_bus_message *m, const IpPrefix *v, size_t n);
/* Appends v as the "a(sq)" of destination ports: (protocol, port). */
int bus_append_ports(sd_bus_message *m, const PortSpec *v, size_t n);
