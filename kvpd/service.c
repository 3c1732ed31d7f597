/* SPDX-License-Identifier: Apache-2.0 */
/* The table of Services kvpd tracks, and what it records on each (the
 * standing error kvctl shows, the change-to-SNAT time). */
#include <stdio.h>

#include "array.h"
#include "clock.h"
#include "service.h"

Service *service_free(Service *s)
{
        if (!s)
                return NULL;
        egress_policy_free(s->policy);
        egress_policy_free(s->programmed);
        free(s->programmed_ifname);
        free(s->net_pending);
        free(s->status_last_body);
        free(s->status_last_rv);
        free(s->last_error_logged);
        free(s->last_error_event);
        free(s->last_warning_event);
        free(s->error);
        free(s->key);
        free(s->namespace);
        free(s->name);
        free(s);
        return NULL;
}

void lease_drop_service(Lease *l, Service *s)
{
        for (size_t i = 0; i < l->n_services; i++)
                if (l->services[i] == s) {
                        l->services[i] = l->services[--l->n_services];
                        return;
                }
}

void service_drop(Service *s)
{
        Manager *m = s->manager;

        (void)hashmap_remove(&m->services_by_key, s->key);
        if (s->lease)
                lease_drop_service(s->lease, s);
        m->services[s->index] = m->services[--m->n_services];
        m->services[s->index]->index = s->index;
        service_free(s);
}

Service *service_get(Manager *m, const char *key)
{
        return hashmap_get(&m->services_by_key, key);
}

int service_ensure(Manager *m, const char *namespace, const char *name, Service **ret)
{
        _cleanup_free_ char *key = NULL;
        Service *s;

        if (asprintf(&key, "%s/%s", namespace, name) < 0)
                return -ENOMEM;
        s = service_get(m, key);
        if (s) {
                *ret = s;
                return 0;
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->manager = m;
        s->key = TAKE_PTR(key);
        s->namespace = strdup(namespace);
        s->name = strdup(name);
        if (!s->namespace || !s->name ||
            ARRAY_RESERVE(m->services, m->cap_services, m->n_services + 1) < 0 ||
            hashmap_put(&m->services_by_key, s->key, s) < 0) {
                service_free(s);
                return -ENOMEM;
        }
        s->index = m->n_services;
        m->services[m->n_services++] = s;
        *ret = s;
        return 0;
}

bool service_error_set(Service *s, const char *from, const char *msg)
{
        bool news = !s->error_failing || !streq_ptr(s->error_from, from) || !streq_ptr(s->error, msg);
        char *copy = strdup(msg ? msg : "");

        s->manager->metrics.reconcile_errors++;
        if (!copy)
                return news;
        free(s->error);
        s->error = copy;
        s->error_from = from;
        s->error_usec = realtime_usec();
        s->error_failing = true;
        return news;
}

void service_error_clear(Service *s, const char *from)
{
        if (s->error_failing && streq_ptr(s->error_from, from))
                s->error_failing = false;
}

void service_note_confirmed(Service *s)
{
        uint64_t now = 0;

        if (s->batch_change_usec == 0)
                return;
        (void)sd_event_now(s->manager->event, CLOCK_MONOTONIC, &now);
        if (now > s->batch_change_usec)
                metric_histogram_observe(&s->manager->metrics.change_to_snat_seconds,
                                         (double)(now - s->batch_change_usec) / USEC_PER_SEC);
        s->batch_change_usec = 0;
}
