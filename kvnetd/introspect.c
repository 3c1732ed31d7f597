/* SPDX-License-Identifier: Apache-2.0 */
/* io.kvegress.Net1's read-only methods for kvctl, and the read-only peer
 * policy. A read-only peer's connection carries a filter (bus-server.c) that
 * answers every method not in KVNETD_READ_ONLY_METHODS with AccessDenied
 * before a handler runs, so GrantVip and friends stay the configured
 * client's (kvpd's) alone. */
#include "introspect.h"

#include <grp.h>
#include <stdio.h>

#include "bus-server.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "validate.h"

static const char *const read_only_methods[] = KVNETD_READ_ONLY_METHODS;

int introspect_setup(Manager *m)
{
        struct group *g = getgrnam(KVEGRESS_READ_ONLY_GROUP);
        gid_t gid = g ? g->gr_gid : 0;

        /* Root is admitted read-only unless it is the configured client
         * (then the full policy admitted it already). */
        return bus_server_set_read_only(
                m->bus, &(BusPeerPolicy){.gids = g ? &gid : NULL, .n_gids = g ? 1 : 0, .allow_root = true},
                read_only_methods);
}

int introspect_method_describe_service(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        const char *key;
        ParseError e;
        Service *s;
        int r;

        /* Validated: peer (full or read-only), signature "s". Next: the key;
         * then only reads: the chain name is ours (a hash of the key), never
         * client text. */
        r = sd_bus_message_read(msg, "s", &key);
        if (r < 0)
                return r;
        r = validate_service_key("service", key, &e);
        if (r < 0)
                return sd_bus_error_set(error, KVNETD_ERROR_INVALID_ARGS, e.message);
        s = manager_find_service(m, key);
        if (!s || !s->has_chain)
                return sd_bus_error_setf(error, KVNETD_ERROR_NOT_GRANTED,
                                         "service: %s has no egress on this node", key);

        r = introspect_list_nft(m, s, &text, &size);
        if (r < 0)
                return r;
        if (size > KVNETD_MAX_DESCRIBE) {
                static const char cut[] = "\n# ... cut at " STRINGIFY(KVNETD_MAX_DESCRIBE) " bytes\n";
                memcpy(text + KVNETD_MAX_DESCRIBE - sizeof(cut), cut, sizeof(cut));
        }
        return sd_bus_reply_method_return(msg, "s", text ? text : "");
}
