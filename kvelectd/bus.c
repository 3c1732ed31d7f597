/* SPDX-License-Identifier: Apache-2.0 */
/* io.kvegress.Elect1 (shared/kvelectd-bus.h): what kvpd calls, and the
 * signals it hears. Peers were admitted by uid/gid in shared/bus-server.c
 * before a byte was read; here every argument is still checked. */
#include "kvelectd-bus.h"
#include "lease-record.h"
#include "netaddr.h"
#include "log.h"
#include "manager.h"

static int read_lease_args(sd_bus_message *msg, const char **ret_ns, const char **ret_name,
                           sd_bus_error *error)
{
        const char *ns, *name;
        int r;

        r = sd_bus_message_read(msg, "ss", &ns, &name);
        if (r < 0)
                return r;
        if (!k8s_dns_label_valid(ns))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid namespace (not a DNS-1123 label): %.64s", ns);
        if (!k8s_dns_subdomain_valid(name))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid Lease name (not a DNS-1123 subdomain): %.64s", name);
        *ret_ns = ns;
        *ret_name = name;
        return 0;
}

static int method_campaign(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        const char *ns = NULL, *name = NULL;
        int r;

        r = read_lease_args(msg, &ns, &name, error);
        if (r < 0)
                return r;
        r = manager_campaign(m, ns, name);
        if (r == -EBUSY)
                return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "kvelectd is stopping");
        if (r == -E2BIG)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "More than %d campaigns",
                                         KVELECTD_MAX_CAMPAIGNS);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_withdraw(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        const char *ns = NULL, *name = NULL;
        int r;

        r = read_lease_args(msg, &ns, &name, error);
        if (r < 0)
                return r;
        r = manager_withdraw(m, ns, name);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_list(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = bus_reply_array_new(msg, KVELECTD_SIG_LIST_REPLY, &reply);
        if (r < 0)
                return r;
        for (Campaign *c = m->campaigns; c; c = c->next) {
                Election *e = c->election;

                if (!election_is_campaigning(e))
                        continue; /* withdrawn, still releasing */
                r = sd_bus_message_append(reply, "(ssbst)", election_namespace(e), election_name(e),
                                          (int)election_is_leading(e), election_holder(e),
                                          (uint64_t)election_deadline(e));
                if (r < 0)
                        return r;
        }
        return bus_reply_array_send(reply);
}

static const sd_bus_vtable elect_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES(KVELECTD_METHOD_CAMPAIGN, KVELECTD_SIG_CAMPAIGN,
                                 SD_BUS_PARAM(namespace) SD_BUS_PARAM(name), "", SD_BUS_PARAM(),
                                 method_campaign, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVELECTD_METHOD_WITHDRAW, KVELECTD_SIG_WITHDRAW,
                                 SD_BUS_PARAM(namespace) SD_BUS_PARAM(name), "", SD_BUS_PARAM(),
                                 method_withdraw, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVELECTD_METHOD_LIST, "", SD_BUS_PARAM(), KVELECTD_SIG_LIST_REPLY,
                                 SD_BUS_PARAM(campaigns), method_list, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES(KVELECTD_METHOD_GET_METRICS, "", SD_BUS_PARAM(), "s", SD_BUS_PARAM(metrics),
                                 introspect_method_get_metrics, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES(KVELECTD_SIGNAL_LEADERSHIP, KVELECTD_SIG_LEADERSHIP,
                                 SD_BUS_PARAM(namespace) SD_BUS_PARAM(name) SD_BUS_PARAM(leading)
                                         SD_BUS_PARAM(deadline_usec) SD_BUS_PARAM(holder),
                                 0),
        SD_BUS_SIGNAL_WITH_NAMES(KVELECTD_SIGNAL_RENEWED, KVELECTD_SIG_RENEWED,
                                 SD_BUS_PARAM(namespace) SD_BUS_PARAM(name) SD_BUS_PARAM(deadline_usec), 0),
        SD_BUS_VTABLE_END,
};

int manager_bus_setup(sd_bus *bus, void *userdata)
{
        return sd_bus_add_object_vtable(bus, NULL, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE, elect_vtable,
                                        userdata);
}

void bus_emit_leadership_changed(Manager *m, Campaign *c)
{
        Election *e = c->election;
        int r;

        if (!m->bus)
                return;
        r = bus_server_emit_signal(m->bus, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE,
                                   KVELECTD_SIGNAL_LEADERSHIP, KVELECTD_SIG_LEADERSHIP,
                                   election_namespace(e), election_name(e), (int)election_is_leading(e),
                                   (uint64_t)election_deadline(e), election_holder(e));
        if (r < 0)
                log_warning_errno(r, "%s: cannot emit %s: %m", c->key, KVELECTD_SIGNAL_LEADERSHIP);
}

void bus_emit_renewed(Manager *m, Campaign *c)
{
        Election *e = c->election;
        int r;

        if (!m->bus)
                return;
        r = bus_server_emit_signal(m->bus, KVELECTD_BUS_PATH, KVELECTD_BUS_INTERFACE,
                                   KVELECTD_SIGNAL_RENEWED, KVELECTD_SIG_RENEWED, election_namespace(e),
                                   election_name(e), (uint64_t)election_deadline(e));
        if (r < 0)
                log_warning_errno(r, "%s: cannot emit %s: %m", c->key, KVELECTD_SIGNAL_RENEWED);
}
