/* SPDX-License-Identifier: Apache-2.0 */
/* kvnetd's record and the pod diff (service.h). No kernel calls. */
#include "service.h"

#include <stdio.h>

#include "array.h"
#include "dad.h"
#include "manager.h"
#include "nft.h"
#include "validate.h"

Service *manager_find_service(Manager *m, const char *key)
{
        return strmap_get(&m->services_by_key, key);
}

/* --- the deadline heap --------------------------------------------------- */

static void heap_swap(Manager *m, size_t a, size_t b)
{
        Service *t = m->deadlines[a];

        m->deadlines[a] = m->deadlines[b];
        m->deadlines[b] = t;
        m->deadlines[a]->heap_index = a;
        m->deadlines[b]->heap_index = b;
}

static void heap_up(Manager *m, size_t i)
{
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (m->deadlines[parent]->deadline <= m->deadlines[i]->deadline)
                        break;
                heap_swap(m, i, parent);
                i = parent;
        }
}

static void heap_down(Manager *m, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, min = i;

                if (l < m->n_deadlines && m->deadlines[l]->deadline < m->deadlines[min]->deadline)
                        min = l;
                if (r < m->n_deadlines && m->deadlines[r]->deadline < m->deadlines[min]->deadline)
                        min = r;
                if (min == i)
                        return;
                heap_swap(m, i, min);
                i = min;
        }
}

static void heap_remove(Manager *m, Service *s)
{
        size_t i = s->heap_index, last = m->n_deadlines - 1;

        if (i != last) {
                heap_swap(m, i, last);
                m->n_deadlines--;
                heap_up(m, i);
                heap_down(m, i);
        } else
                m->n_deadlines--;
        s->heap_index = SIZE_MAX;
}

void service_set_deadline(Manager *m, Service *s, usec_t deadline)
{
        usec_t old = s->deadline;

        s->deadline = deadline;
        if (s->heap_index == SIZE_MAX)
                return;
        if (deadline < old)
                heap_up(m, s->heap_index);
        else
                heap_down(m, s->heap_index);
}

Service *service_earliest(const Manager *m)
{
        return m->n_deadlines > 0 ? m->deadlines[0] : NULL;
}

/* --- services and VIPs ----------------------------------------------------- */

int manager_add_service(Manager *m, const char *key, Service **ret)
{
        _cleanup_free_ Service *s = NULL;
        int r;

        if (m->n_services >= m->max_services)
                return -E2BIG;
        if (ARRAY_RESERVE(m->deadlines, m->cap_deadlines, m->n_deadlines + 1) < 0)
                return -ENOMEM;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->key = strdup(key);
        if (!s->key)
                return -ENOMEM;
        r = strmap_put(&m->services_by_key, key, s);
        if (r < 0) {
                free(s->key);
                return r;
        }
        s->next = m->services;
        if (m->services)
                m->services->prev = s;
        m->services = s;
        m->n_services++;
        s->deadline = UINT64_MAX;
        s->heap_index = m->n_deadlines;
        m->deadlines[m->n_deadlines++] = s;
        heap_up(m, s->heap_index);
        *ret = TAKE_PTR(s);
        return 0;
}

void service_free(Manager *m, Service *s)
{
        if (s->prev)
                s->prev->next = s->next;
        else
                m->services = s->next;
        if (s->next)
                s->next->prev = s->prev;
        m->n_services--;
        strmap_remove(&m->services_by_key, s->key);
        service_drop_egress(m, s);
        if (s->heap_index != SIZE_MAX)
                heap_remove(m, s);
        for (size_t i = 0; i < s->n_vips; i++) {
                podmap_remove(&m->vips_by_addr, &s->vips[i]->addr);
                vip_dad_done(s->vips[i], -ENOENT,
                             "address: released before duplicate-address detection ended");
                free(s->vips[i]);
        }
        m->n_vips -= s->n_vips;
        for (size_t i = 0; i < s->n_pods; i++)
                if (podmap_get(&m->pods, &s->pods[i]) == s)
                        podmap_remove(&m->pods, &s->pods[i]);
        free(s->pods);
        egress_policy_free(s->policy);
        free(s->key);
        free(s);
}

/* --- egress classes ------------------------------------------------------- */

EgressClass *egress_class_find(Manager *m, const char *name)
{
        return strmap_get(&m->classes_by_name, name);
}

EgressClass *egress_class_get(Manager *m, const char *name, uint64_t fingerprint, unsigned sets)
{
        EgressClass *c = egress_class_find(m, name);

        if (c)
                return c;
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->fingerprint = fingerprint;
        c->sets = sets;
        if (strmap_put(&m->classes_by_name, c->name, c) < 0) {
                free(c);
                return NULL;
        }
        c->next = m->classes;
        if (m->classes)
                m->classes->prev = c;
        m->classes = c;
        m->n_classes++;
        return c;
}

static void class_free(Manager *m, EgressClass *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                m->classes = c->next;
        if (c->next)
                c->next->prev = c->prev;
        m->n_classes--;
        strmap_remove(&m->classes_by_name, c->name);
        free(c->text);
        free(c);
}

void egress_class_maybe_free(Manager *m, EgressClass *c)
{
        if (c && c->refs == 0 && !c->in_kernel)
                class_free(m, c);
}

void egress_classes_gc(Manager *m)
{
        EgressClass *next;

        for (EgressClass *c = m->classes; c; c = next) {
                next = c->next;
                egress_class_maybe_free(m, c);
        }
}

void service_drop_egress(Manager *m, Service *s)
{
        EgressClass *c = s->cls;

        if (c) {
                c->refs--;
                s->cls = NULL;
                egress_class_maybe_free(m, c);
        }
        if (s->legacy) {
                s->legacy = false;
                s->legacy_sets = 0;
                m->n_legacy--;
        }
        s->vip4 = s->vip6 = (IpAddr){};
}

Vip *manager_find_vip(Manager *m, const IpAddr *a)
{
        return podmap_get(&m->vips_by_addr, a);
}

int service_reserve_vip(Manager *m)
{
        return podmap_reserve(&m->vips_by_addr, 1);
}

void service_attach_vip(Manager *m, Service *s, Vip *v, bool is_new)
{
        v->service = s;
        s->vips[s->n_vips++] = v;
        if (is_new) {
                /* Room was reserved: cannot fail. */
                (void)podmap_put(&m->vips_by_addr, &v->addr, v);
                m->n_vips++;
        }
}

void service_detach_vip(Manager *m, Vip *v, bool forget)
{
        Service *s = v->service;

        for (size_t i = 0; s && i < s->n_vips; i++)
                if (s->vips[i] == v) {
                        s->vips[i] = s->vips[--s->n_vips];
                        break;
                }
        v->service = NULL;
        if (forget) {
                podmap_remove(&m->vips_by_addr, &v->addr);
                m->n_vips--;
        }
}

/* --- the pod diff ---------------------------------------------------------- */

void egress_diff_done(EgressDiff *d)
{
        free(d->added);
        free(d->removed);
        free(d->stolen);
        free(d->flush);
        free(d->new_pods);
        free(d->cls_text);
        *d = (EgressDiff){};
}

static IpAddr *addrs_alloc(size_t n)
{
        return calloc(MAX(n, (size_t)1), sizeof(IpAddr));
}

int service_egress_diff(Manager *m, Service *s, const EgressPolicy *p, EgressDiff *d, char **ret_error)
{
        size_t n_new = p ? p->n_pods : 0, i = 0, k = 0, total;
        char name[24];

        *d = (EgressDiff){};
        if (p) {
                EgressClass *c;

                if (nft_policy_class(p, name, &d->fingerprint, &d->cls_text) < 0)
                        return -ENOMEM;
                c = egress_class_find(m, name);
                if (c && c->text && !streq(c->text, d->cls_text)) {
                        if (ret_error)
                                (void)asprintf(ret_error,
                                               "service: its egress class name %s is another policy's "
                                               "(a hash collision)",
                                               name);
                        egress_diff_done(d);
                        return -EEXIST;
                }
        }
        d->added = addrs_alloc(n_new);
        d->removed = addrs_alloc(s->n_pods);
        d->stolen = addrs_alloc(n_new);
        d->flush = addrs_alloc(s->n_pods + n_new);
        d->new_pods = addrs_alloc(n_new);
        if (!d->added || !d->removed || !d->stolen || !d->flush || !d->new_pods)
                goto oom;

        /* Pods of another service: refused if that service is live, taken
         * over if it is an adopted leftover nobody claimed. */
        for (size_t j = 0; j < n_new; j++) {
                Service *owner = podmap_get(&m->pods, &p->pods[j]);
                if (!owner || owner == s)
                        continue;
                if (owner->claimed && owner->policy) {
                        if (ret_error)
                                (void)asprintf(ret_error, "pods: %s is mapped by service %s",
                                               ip_addr_to_string(&p->pods[j], (char[INET6_ADDRSTRLEN]){}),
                                               owner->key);
                        egress_diff_done(d);
                        return -EBUSY;
                }
                d->stolen[d->n_stolen++] = p->pods[j];
        }
        total = m->pods.n - s->n_pods - d->n_stolen + n_new;
        if (total > m->max_pods_total) {
                if (ret_error)
                        (void)asprintf(ret_error,
                                       "pods: %zu pod mappings on this node would pass the limit of %zu",
                                       total, m->max_pods_total);
                egress_diff_done(d);
                return -E2BIG;
        }

        /* Both lists are sorted: one merge gives what to add and remove. */
        while (i < s->n_pods || k < n_new) {
                int c = i >= s->n_pods ? 1 : k >= n_new ? -1 : ip_addr_compare(&s->pods[i], &p->pods[k]);
                if (c < 0)
                        d->removed[d->n_removed++] = s->pods[i++];
                else if (c > 0)
                        d->added[d->n_added++] = p->pods[k++];
                else {
                        i++;
                        k++;
                }
        }
        if (n_new > 0)
                memcpy(d->new_pods, p->pods, n_new * sizeof(IpAddr));
        d->n_new = n_new;
        if (p) {
                d->class_change = !s->cls || !streq(s->cls->name, name);
                d->vip_change =
                        !s->cls || !ip_addr_equal(&s->vip4, &p->vip4) || !ip_addr_equal(&s->vip6, &p->vip6);
        }
        d->rules_change = d->class_change || d->vip_change;

        /* Every pod whose SNAT changes: added, removed, taken over, and all
         * of them when the rules (VIP, ports, networks) change. */
        if (!p || (d->rules_change && service_has_egress(s))) {
                if (s->n_pods)
                        memcpy(d->flush, s->pods, s->n_pods * sizeof(IpAddr));
                d->n_flush = s->n_pods;
                if (d->n_added)
                        memcpy(d->flush + d->n_flush, d->added, d->n_added * sizeof(IpAddr));
                d->n_flush += d->n_added;
        } else {
                if (d->n_removed)
                        memcpy(d->flush, d->removed, d->n_removed * sizeof(IpAddr));
                d->n_flush = d->n_removed;
                if (d->n_added)
                        memcpy(d->flush + d->n_flush, d->added, d->n_added * sizeof(IpAddr));
                d->n_flush += d->n_added;
        }
        /* The pod index must take the added pods without growing later. */
        if (podmap_reserve(&m->pods, d->n_added) < 0)
                goto oom;
        /* Last, so that a refused change leaves no class behind. */
        if (p) {
                d->cls = egress_class_get(m, name, d->fingerprint, nft_policy_sets(p));
                if (!d->cls)
                        goto oom;
                d->class_rewrite = d->cls->in_kernel && d->cls->fingerprint != d->fingerprint;
        }
        return 0;
oom:
        egress_diff_done(d);
        return -ENOMEM;
}

static void pods_remove_one(Service *s, const IpAddr *a)
{
        size_t lo = 0, hi = s->n_pods;

        /* Sorted: binary search. */
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = ip_addr_compare(&s->pods[mid], a);
                if (c == 0) {
                        memmove(&s->pods[mid], &s->pods[mid + 1], (s->n_pods - mid - 1) * sizeof(IpAddr));
                        s->n_pods--;
                        return;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
}

void service_egress_apply(Manager *m, Service *s, EgressPolicy *p, EgressDiff *d)
{
        for (size_t j = 0; j < d->n_stolen; j++) {
                Service *owner = podmap_get(&m->pods, &d->stolen[j]);
                if (owner && owner != s)
                        pods_remove_one(owner, &d->stolen[j]);
        }
        for (size_t j = 0; j < d->n_removed; j++)
                podmap_remove(&m->pods, &d->removed[j]);
        if (!p)
                for (size_t j = 0; j < s->n_pods; j++)
                        podmap_remove(&m->pods, &s->pods[j]);
        for (size_t j = 0; j < d->n_added; j++)
                (void)podmap_put(&m->pods, &d->added[j], s); /* reserved: cannot fail */
        for (size_t j = 0; j < d->n_stolen; j++)
                (void)podmap_put(&m->pods, &d->stolen[j], s); /* an existing entry: no growth */

        free(s->pods);
        s->pods = TAKE_PTR(d->new_pods);
        s->n_pods = d->n_new;
        if (s->n_pods == 0)
                s->pods = mfree(s->pods);
        if (p) {
                EgressClass *c = d->cls;

                if (s->cls != c) {
                        c->refs++;
                        service_drop_egress(m, s); /* after the new class is held: it cannot go */
                        s->cls = c;
                }
                if (!c->text)
                        c->text = TAKE_PTR(d->cls_text);
                c->fingerprint = d->fingerprint;
                c->sets = nft_policy_sets(p);
                s->vip4 = p->vip4;
                s->vip6 = p->vip6;
        } else
                service_drop_egress(m, s);
        egress_policy_free(s->policy);
        s->policy = p;
}

int service_all_pods(Manager *m, IpAddr **ret, size_t *ret_n)
{
        IpAddr *all = NULL;
        size_t n = 0, cap = 0;

        for (Service *s = m->services; s; s = s->next)
                if (s->policy) {
                        if (ARRAY_RESERVE(all, cap, n + s->n_pods) < 0) {
                                free(all);
                                return -ENOMEM;
                        }
                        if (s->n_pods)
                                memcpy(all + n, s->pods, s->n_pods * sizeof(IpAddr));
                        n += s->n_pods;
                }
        *ret = all;
        *ret_n = n;
        return 0;
}

void service_record_done(Manager *m)
{
        while (m->services)
                service_free(m, m->services);
        strmap_done(&m->services_by_key);
        while (m->classes) {
                m->classes->refs = 0;
                m->classes->in_kernel = false;
                class_free(m, m->classes);
        }
        strmap_done(&m->classes_by_name);
        podmap_done(&m->vips_by_addr);
        podmap_done(&m->pods);
        m->deadlines = mfree(m->deadlines);
        m->n_deadlines = m->cap_deadlines = 0;
}
