/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one thing the kernel cannot tell a restarted kvnetd: which service
 * holds which VIP, and until when. Kept in <state-dir>/vips (a tmpfs under
 * /run, so it dies with the boot, as CLOCK_MONOTONIC deadlines do), written
 * atomically (temporary file + rename), plus a journal of the grants made
 * since (state_append()). A restarted kvnetd keeps an adopted
 * VIP only until min(its recorded deadline, the end of the grace period), so
 * a restart never stretches a grant. */

#include "manager.h"

typedef struct StateEntry {
        char *key;
        IpAddr addr;
        char ifname[IFNAMSIZ];
        usec_t deadline;
} StateEntry;

int state_save(Manager *m);
/* Records one grant (v to service key until deadline) in O(1): a line appended to
 * <state-dir>/vips.journal, read after the snapshot by state_load() (a
 * later line wins) and emptied by state_save(). A GrantVip writes it before
 * the address is added, so no crash can leave a VIP of ours that the files
 * do not name, without rewriting every VIP per grant. */
int state_append(Manager *m, const char *key, const Vip *v, usec_t deadline);
void state_close(Manager *m);
/* Missing file: 0 entries. Malformed lines are skipped with a warning. */
int state_load(const Config *c, StateEntry **ret, size_t *ret_n);
void state_entries_free(StateEntry *e, size_t n);
