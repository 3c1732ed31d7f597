/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* VIP addresses through rtnetlink (libnl-route-3): bind and unbind, list
 * the ones in our ranges, and watch for removals by anyone else. */

#include "manager.h"

typedef struct AddrInfo {
        IpAddr addr;
        char ifname[IFNAMSIZ];
} AddrInfo;

int addr_open(Manager *m);
void addr_close(Manager *m);
/* How an address says it is kvnetd's, in the kernel itself: IFA_PROTO (the
 * "originator" field of an address, Linux 5.18; `ip -d addr` shows "proto
 * 0x6b"). It survives a kvnetd restart with the address, unlike anything in
 * kvnetd's memory, changes nothing in routing (unlike IFA_F_NOPREFIXROUTE,
 * which NetworkManager and others set too), and exists for both families
 * (unlike the IPv4-only label). Only an address with this marker is
 * adopted at start; any other is someone else's and never changed. */
#define KVNETD_ADDR_PROTO 0x6b

/* /32 or /128, preferred_lft 0 (never chosen as a source by the node),
 * valid forever, marked KVNETD_ADDR_PROTO; IFA_F_NODAD for IPv6 when
 * configured. Creates only: an address already there (-EEXIST) is left
 * as it is. */
int addr_add(Manager *m, const Vip *v);
/* 0 if a is on no interface of the node (any prefix length); else
 * -EADDRINUSE and a message naming the owner (interface, prefix), or
 * another negative errno if the addresses cannot be listed. */
int addr_check_unused(Manager *m, const IpAddr *a, char *ret_message, size_t size);
int addr_del(Manager *m, const Vip *v);
/* Our addresses: marked KVNETD_ADDR_PROTO, /32 or /128, inside the VIP
 * ranges, on allowed interfaces. */
int addr_list_vips(Manager *m, AddrInfo **ret, size_t *ret_n);
/* The IPv6 link-local address of interface ifindex, if it has one. */
bool addr_link_local(Manager *m, int ifindex, struct in6_addr *ret);
/* Re-adds every held VIP that the kernel lost. */
int addr_reconcile(Manager *m);
