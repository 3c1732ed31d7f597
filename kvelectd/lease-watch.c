/* SPDX-License-Identifier: Apache-2.0 */
/* One Lease informer per namespace that has campaigns. The watch is what
 * lets a non-holder stay silent while the holder renews and still take a
 * released Lease within one round trip of the release. */
#include "log.h"
#include "manager.h"

static const char *object_name(json_t *o, const char **ret_namespace)
{
        json_t *meta = json_object_get(o, "metadata");

        *ret_namespace = json_string_value(json_object_get(meta, "namespace"));
        return json_string_value(json_object_get(meta, "name"));
}

static void on_event(KubeInformer *inf, KubeWatchEventType type, json_t *object, void *userdata)
{
        LeaseWatch *w = userdata;
        const char *ns, *name = object_name(object, &ns);
        Campaign *c;

        if (!name)
                return;
        c = manager_find(w->manager, ns ?: w->namespace, name);
        if (!c || c->watch != w)
                return;
        campaign_observe(c, type == KUBE_WATCH_DELETED ? NULL : object);
}

static void on_synced(KubeInformer *inf, void *userdata)
{
        LeaseWatch *w = userdata;
        Campaign *next;

        log_debug("leases in namespace %s: watch synced (%zu cached)", w->namespace,
                  kube_informer_size(inf));
        for (Campaign *c = w->manager->campaigns; c; c = next) {
                next = c->next;
                if (c->watch != w)
                        continue;
                campaign_set_view(c, ELECTION_VIEW_WATCHED,
                                  kube_informer_get(inf, w->namespace, election_name(c->election)));
        }
}

static const KubeInformerOps informer_ops = {
        .event = on_event,
        .synced = on_synced,
};

int lease_watch_ref(Manager *m, const char *namespace, LeaseWatch **ret)
{
        LeaseWatch *w;
        KubeInformerOptions opts = {};
        int r;

        for (w = m->watches; w; w = w->next)
                if (streq(w->namespace, namespace)) {
                        w->n_campaigns++;
                        *ret = w;
                        return 0;
                }

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->manager = m;
        w->namespace = strdup(namespace);
        if (!w->namespace) {
                free(w);
                return -ENOMEM;
        }
        opts.namespace = w->namespace;
        r = kube_informer_new(m->client, &kube_resource_leases, &opts, &informer_ops, w, &w->informer);
        if (r < 0) {
                free(w->namespace);
                free(w);
                return r;
        }
        w->n_campaigns = 1;
        w->next = m->watches;
        if (w->next)
                w->next->prev = w;
        m->watches = w;
        log_debug("leases in namespace %s: watching", namespace);
        *ret = w;
        return 0;
}

void lease_watch_unref(LeaseWatch *w)
{
        if (!w || --w->n_campaigns > 0)
                return;
        if (w->prev)
                w->prev->next = w->next;
        else
                w->manager->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        kube_informer_free(w->informer);
        free(w->namespace);
        free(w);
}

ElectionView lease_watch_view(LeaseWatch *w, const char *name, json_t **ret_lease)
{
        if (!kube_informer_synced(w->informer)) {
                *ret_lease = NULL;
                return ELECTION_VIEW_PENDING;
        }
        *ret_lease = kube_informer_get(w->informer, w->namespace, name);
        return ELECTION_VIEW_WATCHED;
}
