/* SPDX-License-Identifier: Apache-2.0 */
#include "carry.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "macros.h"
#include "manager.h"
#include "plan.h"

#define KUBE_VIP_LEASE_PREFIX "kubevip-"

static bool carrying(const Manager *m)
{
        return m->startup.phase == KVPD_PHASE_WAITING_FOR_SYNC && !m->stopping;
}

void carry_forget(Manager *m)
{
        const char *key;
        void *value;

        for (size_t i = 0; hashmap_next(&m->carry.keys, &i, &key, &value);)
                free(value);
        hashmap_done(&m->carry.keys);
        m->carry.list_slot = sd_bus_slot_unref(m->carry.list_slot);
}

static int on_list_vips(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const char *key, *vip, *iface;
        uint64_t deadline;
        int r;
        (void)ret_error;

        m->carry.list_slot = sd_bus_slot_unref(m->carry.list_slot);
        if (sd_bus_message_is_method_error(reply, NULL) || !carrying(m))
                return 0;
        carry_forget(m);
        r = sd_bus_message_enter_container(reply, 'a', "(ssst)");
        while (r > 0) {
                char *k;

                r = sd_bus_message_read(reply, "(ssst)", &key, &vip, &iface, &deadline);
                if (r <= 0)
                        break;
                /* One entry per Service, however many VIPs it has. */
                if (hashmap_get(&m->carry.keys, key))
                        continue;
                k = strdup(key);
                if (!k || hashmap_put(&m->carry.keys, k, k) < 0) {
                        free(k);
                        break;
                }
        }
        if (r < 0)
                log_warning_errno(r, "kvnetd: cannot read its grants: %m");
        if (hashmap_size(&m->carry.keys) > 0)
                log_notice("not synced with the API yet: kvnetd's %zu grant(s) are renewed on kvelectd's "
                           "renewals "
                           "of their kube-vip Leases until kvpd is",
                           hashmap_size(&m->carry.keys));
        return 0;
}

void carry_list_grants(Manager *m)
{
        sd_bus *bus = bus_client_get(m->kvnetd);
        int r;

        if (!bus || !carrying(m))
                return;
        m->carry.list_slot = sd_bus_slot_unref(m->carry.list_slot);
        r = sd_bus_call_method_async(bus, &m->carry.list_slot, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE,
                                     KVNETD_METHOD_LIST_VIPS, on_list_vips, m, NULL);
        if (r < 0)
                log_warning_errno(r, "kvnetd: cannot list its grants: %m");
}

void carry_renewed(Manager *m, const char *lease_namespace, const char *lease_name, uint64_t deadline_usec)
{
        sd_bus *bus = bus_client_get(m->kvnetd);
        char key[KVNETD_MAX_SERVICE_KEY + 2];
        uint64_t now = now_usec(), grant;
        const size_t prefix = strlen(KUBE_VIP_LEASE_PREFIX);

        if (!carrying(m)) {
                if (hashmap_size(&m->carry.keys) > 0)
                        carry_forget(m);
                return;
        }
        if (!bus || strncmp(lease_name, KUBE_VIP_LEASE_PREFIX, prefix) != 0)
                return;
        /* Lease ns/kubevip-NAME belongs to Service ns/NAME: one lookup. */
        if ((size_t)snprintf(key, sizeof(key), "%s/%s", lease_namespace, lease_name + prefix) >=
                    sizeof(key) ||
            !hashmap_get(&m->carry.keys, key))
                return;
        grant = plan_grant_deadline(deadline_usec, m->config.grant_margin_usec, now);
        if (grant <= now)
                return;
        log_debug("%s: carried: renewing its grant on the renewal of Lease %s/%s", key, lease_namespace,
                  lease_name);
        (void)sd_bus_call_method_async(bus, NULL, NULL, KVNETD_BUS_PATH, KVNETD_BUS_INTERFACE,
                                       KVNETD_METHOD_RENEW_GRANT, NULL, NULL, KVNETD_SIG_RENEW_GRANT, key,
                                       grant);
}
