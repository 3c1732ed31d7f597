/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvnetd needs CAP_NET_ADMIN (addresses, nftables, conntrack, a forced
 * netlink receive buffer) and CAP_NET_RAW (gratuitous ARP on AF_PACKET,
 * Neighbour Advertisements on a raw ICMPv6 socket), and nothing else. */

#include "manager.h"

/* Started as root with user set: switches to that user keeping the two
 * capabilities. Then drops every other capability from all sets (and the
 * bounding set when allowed to), sets no_new_privs, and verifies: more than
 * the two left is refused unless allow_extra; CAP_NET_ADMIN missing is
 * always refused. */
int caps_setup(const Config *c);
