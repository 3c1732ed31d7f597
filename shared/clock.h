/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The clocks, in microseconds: one helper for every daemon and shared/kube.
 * Deadlines, timeouts and durations use now_usec() (CLOCK_MONOTONIC, the
 * clock sd-event's timers and kvnetd's grant deadlines are on); only what is
 * shown to people or written to the API (timestamps) uses realtime_usec(). */

#include <stdint.h>
#include <time.h>

#include "macros.h"

static inline uint64_t clock_usec(clockid_t id)
{
        struct timespec ts;

        (void)clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

static inline uint64_t now_usec(void)
{
        return clock_usec(CLOCK_MONOTONIC);
}

static inline uint64_t realtime_usec(void)
{
        return clock_usec(CLOCK_REALTIME);
}
