/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Read-only introspection for operators (kvctl): who is admitted read-only,
 * and the handlers that only read kvnetd's state. Nothing here changes the
 * kernel or the service table. */

#include <systemd/sd-bus.h>

#include "manager.h"

/* Admits root (unless root is the configured client) and the kvegress group,
 * if it exists, to KVNETD_READ_ONLY_METHODS. */
int introspect_setup(Manager *m);

/* GetMetrics() -> s */
int introspect_method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error);

/* DescribeService(s) -> s */
int introspect_method_describe_service(sd_bus_message *msg, void *userdata, sd_bus_error *error);

/* The text `nft list` prints for s's chain and each of its sets (malloc'd). */
int introspect_list_nft(Manager *m, const Service *s, char **ret, size_t *ret_size);
