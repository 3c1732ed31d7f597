/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* NAT is decided on the first packet of a flow and kept in its conntrack
 * entry. When a pod's mapping is added, changed or removed, its entries are
 * deleted, so the next packet starts a new flow that meets the new rules
 * (kube-vip #865: a flow opened before the rule kept the node's address).
 *
 * Plain ctnetlink over libmnl, no state but two sockets: this code runs on
 * the conntrack worker thread (ctworker.c), never on the event loop. */

#include <stdatomic.h>
#include <stdint.h>

#include "netaddr.h"
#include "podmap.h"

typedef struct Conntrack {
        struct mnl_socket *dump; /* GET requests and their dumps */
        struct mnl_socket *del;  /* deletes, sent while a dump is read */
        uint32_t seq;
} Conntrack;

int conntrack_open(Conntrack *ct);
void conntrack_close(Conntrack *ct);

/* Up to this many IPv4 addresses, one kernel-filtered dump each
 * (CTA_FILTER on the original source: the kernel walks its table and sends
 * only the matching entries). Above it, one dump of the family's whole
 * table costs less: measured here, one filtered walk of 250,000 entries
 * took 65 ms of CPU and a whole dump 330 ms (5 x); at 10^6, 0.5 s against
 * about 1.3 s. IPv6 is always dumped whole (conntrack.c says why). */
#define CONNTRACK_FILTERED_MAX 4

/* Deletes every entry whose original source is one of the addresses in
 * want (values ignored), each by its own tuple and id: an entry created
 * after the dump with the same tuple (already under the new rules) stays.
 * Returns the number deleted, or a negative errno; stops early (-ECANCELED)
 * once *abort is set. */
int64_t conntrack_delete_sources(Conntrack *ct, const PodMap *want, const atomic_bool *abort);
