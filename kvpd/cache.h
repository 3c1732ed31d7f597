/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Reading the informer caches watch.c fills: hash lookups, no I/O. */

#include "manager.h"

/* The cached Service (NULL if absent; &service_item_stub if not ours). */
ServiceItem *cache_service_item(Manager *m, const char *namespace, const char *name);
/* Its JSON (a new reference: json_decref() it): an empty object for one
 * that is neither egress nor carries vipHost (nothing of it is kept, and
 * nothing of it is ours to clear), NULL if absent (or out of memory). */
json_t *cache_service_json(Manager *m, const char *namespace, const char *name);
/* The Service's EndpointSlices, or NULL. */
SliceGroup *cache_slices(Manager *m, const char *key);
