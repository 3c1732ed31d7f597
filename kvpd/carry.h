/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Grants carried across a kvpd restart until its first sync.
 *
 * Before every watch has listed once kvpd knows no Service, so kvelectd's
 * renewals have nowhere to go, and kvnetd would fence the VIPs that the
 * previous kvpd programmed although this node still holds their Leases
 * (kvelectd kept its campaigns across the restart). That happens whenever
 * kvpd restarts while it cannot read the API: an outage, or a kubeconfig
 * with refused credentials. Then the Service has no egress anywhere, since
 * no other node can take a Lease this node keeps renewing.
 *
 * So, until the first sync, a renewal of Lease ns/kubevip-NAME (kube-vip's
 * name for Service ns/NAME's Lease) renews kvnetd's grant of ns/NAME, if
 * kvnetd holds one: the node stays as it was (fail-static) while kvelectd
 * leads. A lost Lease is not renewed, so kvnetd still fences on time.
 * Services whose Lease has another name (kube-vip.io/leaseName) are not
 * carried. After the first sync the planner decides as usual. */

#include <stdint.h>

typedef struct Manager Manager;

/* kvnetd connected: list its grants if kvpd has not synced yet. */
void carry_list_grants(Manager *m);
/* A renewal of a Lease kvpd does not know (yet). */
void carry_renewed(Manager *m, const char *lease_namespace, const char *lease_name, uint64_t deadline_usec);
void carry_forget(Manager *m);
