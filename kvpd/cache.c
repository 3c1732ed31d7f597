/* SPDX-License-Identifier: Apache-2.0 */
/* Reading the informer caches (watch.c fills them). */
#include "cache.h"

ServiceItem *cache_service_item(Manager *m, const char *namespace, const char *name)
{
        return kube_informer_get_item(m->informers[WATCH_SERVICES], namespace, name);
}

json_t *cache_service_json(Manager *m, const char *namespace, const char *name)
{
        ServiceItem *it = cache_service_item(m, namespace, name);

        if (!it)
                return NULL;
        if (it == &service_item_stub)
                return json_incref(m->empty_object);
        return json_loads(it->json, JSON_ALLOW_NUL, NULL); /* as the informer read it */
}

SliceGroup *cache_slices(Manager *m, const char *key)
{
        return hashmap_get(&m->slice_groups, key);
}
