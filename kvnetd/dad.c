/* SPDX-License-Identifier: Apache-2.0 */
/* GrantVip answered once the VIP is usable (dad.h). */
#include "dad.h"

#include "array.h"
#include "bus.h"
#include "log.h"
#include "manager.h"

static int on_dad_timeout(sd_event_source *source, uint64_t usec, void *userdata)
{
        Vip *v = userdata;
        (void)source;
        (void)usec;

        log_warning("VIP %s: duplicate-address detection has not ended after %llu s; answering its grant",
                    ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}),
                    (unsigned long long)(DAD_WAIT_MAX_USEC / USEC_PER_SEC));
        vip_dad_done(v, 0, NULL);
        return 0;
}

int vip_wait_dad(Manager *m, Vip *v, sd_bus_message *msg)
{
        int r;

        if (ARRAY_RESERVE(v->dad_waiting, v->cap_dad_waiting, v->n_dad_waiting + 1) < 0)
                return -ENOMEM;
        if (!v->dad_timer && m->event) {
                r = sd_event_add_time_relative(m->event, &v->dad_timer, CLOCK_MONOTONIC, DAD_WAIT_MAX_USEC,
                                               0, on_dad_timeout, v);
                if (r < 0)
                        return r;
        }
        v->dad_manager = m;
        v->dad_waiting[v->n_dad_waiting++] = sd_bus_message_ref(msg);
        return 1;
}

void vip_dad_done(Vip *v, int error, const char *message)
{
        v->tentative = false;
        v->dad_timer = sd_event_source_disable_unref(v->dad_timer);
        for (size_t i = 0; i < v->n_dad_waiting; i++) {
                bus_reply_deferred(v->dad_manager, v->dad_waiting[i], error, message);
                sd_bus_message_unref(v->dad_waiting[i]);
        }
        v->dad_waiting = mfree(v->dad_waiting);
        v->n_dad_waiting = v->cap_dad_waiting = 0;
}
