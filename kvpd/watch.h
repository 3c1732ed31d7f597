/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The informers: what kvpd lists and watches, what the caches keep (read
 * them through cache.h), and what a change marks for reconciliation. */

#include "manager.h"

int watch_start(Manager *m);
void watch_done(Manager *m);
const char *watch_kind_to_string(WatchKind k);
