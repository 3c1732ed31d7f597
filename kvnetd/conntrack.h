/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* NAT is decided on the first packet of a flow and kept in its conntrack
 * entry. When a pod's mapping is added, changed or removed, its entries are
 * deleted, so the next packet starts a new flow that meets the new rules
 * (kube-vip #865: a flow opened before the rule kept the node's address). */

#include "manager.h"

int conntrack_open(Manager *m);
void conntrack_close(Manager *m);
/* Deletes every entry whose original source is one of addrs: one dump, then
 * one delete per matching entry. Returns the number deleted. */
int conntrack_flush_sources(Manager *m, const IpAddr *addrs, size_t n);
