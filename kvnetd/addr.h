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
/* /32 or /128, preferred_lft 0 (never chosen as a source by the node),
 * valid forever; IFA_F_NODAD for IPv6 when configured. Idempotent. */
int addr_add(Manager *m, const Vip *v);
int addr_del(Manager *m, const Vip *v);
/* Host addresses (/32, /128) inside the VIP ranges on allowed interfaces. */
int addr_list_vips(Manager *m, AddrInfo **ret, size_t *ret_n);
/* Re-adds every held VIP that the kernel lost. */
int addr_reconcile(Manager *m);
