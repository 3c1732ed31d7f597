/* SPDX-License-Identifier: Apache-2.0 */
/* Adoption at start (what a previous kvnetd left: our addresses and our
 * table, kept for the grace period) and the periodic comparison of the
 * table with the record, which rebuilds the table on any difference. */
#include <inttypes.h>
#include <nftables/libnftables.h>
#include <stdio.h>

#include "addr.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "manager.h"
#include "nft.h"
#include "state.h"

/* Holds VIPs found in the kernel that no state entry names; not a valid
 * service key, so no client can claim it by name. */
#define UNOWNED_KEY ":unowned"

int manager_nft_commit(Manager *m, NftBatch *b, char **ret_error)
{
        uint32_t gen;
        int r;

        r = nft_commit(m->nft_nl, b, ret_error);
        if (nft_batch_is_empty(b) || !m->nft_gen_known)
                return r;
        /* A committed transaction adds one to the generation, an aborted
         * one nothing: any other figure means someone else's transaction
         * came in between, and the next reconcile reads the table. */
        if (nft_get_gen(m->nft_nl, &gen) < 0 || gen != m->nft_gen + (r >= 0 ? 1u : 0u))
                m->nft_gen_known = false;
        else
                m->nft_gen = gen;
        return r;
}

/* Rebuilds our table from the record when someone removed or changed it.
 * One transaction: "add table; delete table" removes whatever is there
 * (and is harmless when nothing is), then everything is created again, so
 * the kernel switches from the old table to the rebuilt one atomically.
 * Only what the record knows the policy of can be rebuilt: an adopted
 * egress not yet replayed (and a legacy chain) is forgotten. */
static int nft_rebuild(Manager *m)
{
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_free_ IpAddr *all = NULL;
        _cleanup_free_ const char **names = NULL;
        const char *table = m->config->table;
        size_t n_all = 0, n = 0;
        int r;

        r = service_all_pods(m, &all, &n_all);
        if (r < 0)
                return r;
        names = calloc(MAX(m->n_classes, (size_t)1), sizeof(*names));
        if (!names)
                return -ENOMEM;
        r = nft_batch_new(true, NULL, &b);
        if (r < 0)
                return r;
        nft_batch_skeleton(b, table);
        nft_batch_delete_table(b, table);
        nft_batch_skeleton(b, table);
        /* Each class from the policy of one of its services ("touched":
         * rebuilt). */
        for (Service *s = m->services; s; s = s->next)
                if (s->policy && s->cls && !s->cls->touched) {
                        nft_batch_class(b, table, s->cls->name, s->policy, false, 0);
                        s->cls->touched = true;
                        names[n++] = s->cls->name;
                }
        for (Service *s = m->services; s; s = s->next)
                if (s->policy && s->cls) {
                        nft_batch_class_pods(b, table, s->cls->name, s->key, s->pods, s->n_pods, true);
                        nft_batch_vip_pods(b, table, s->key, &s->vip4, &s->vip6, s->pods, s->n_pods, true);
                }
        nft_batch_dispatch(b, table, false, names, n);
        r = manager_nft_commit(m, b, &err);
        for (EgressClass *c = m->classes; c; c = c->next) {
                if (r >= 0)
                        c->in_kernel = c->touched;
                c->touched = false;
        }
        if (r < 0)
                return log_error_errno(r, "cannot rebuild table inet %s: %s", table, err ? err : "");
        for (Service *s = m->services; s; s = s->next) {
                if (s->policy || !service_has_egress(s))
                        continue;
                /* An adopted egress we cannot rebuild: forget it. */
                for (size_t i = 0; i < s->n_pods; i++)
                        if (podmap_get(&m->pods, &s->pods[i]) == s)
                                podmap_remove(&m->pods, &s->pods[i]);
                s->pods = mfree(s->pods);
                s->n_pods = 0;
                service_drop_egress(m, s);
        }
        egress_classes_gc(m);
        manager_queue_conntrack(m, all, n_all);
        return 0;
}

/* Whether the kernel holds what we last programmed: the skeleton; each
 * class in the kernel with our fingerprint, its sets and its two base chain
 * rules, and no other; for each service exactly its pods in its class's
 * sets and in the VIP maps to its VIPs, commented with its key, and no
 * other element; legacy chains as adopted. Returns 1 if so, 0 if not (with
 * a reason), negative errno if the table could not be read. */
static int nft_table_matches(Manager *m, const char **ret_reason)
{
        _cleanup_(nft_table_info_done) NftTableInfo t = {};
        size_t classes = 0, services = 0, legacy = 0;
        int r;

        r = nft_read_table(m->nft, m->config->table, &t);
        if (r < 0)
                return r;
        if (!t.exists) {
                *ret_reason = "the table was removed";
                return 0;
        }
        if (!t.skeleton_ok) {
                *ret_reason = "its maps or base chain changed";
                return 0;
        }
        if (t.foreign) {
                *ret_reason = t.foreign;
                return 0;
        }
        if ((m->n_legacy > 0) != t.legacy_maps || (m->n_legacy > 0) != t.legacy_rules) {
                *ret_reason = "the old pod maps or their rules changed";
                return 0;
        }
        for (EgressClass *c = m->classes; c; c = c->next) {
                const NftClassInfo *ci;

                if (!c->in_kernel)
                        continue;
                classes++;
                ci = nft_table_info_class(&t, c->name);
                if (!ci || ci->fingerprint != c->fingerprint || ci->sets != c->sets || !ci->p4 || !ci->p6 ||
                    !ci->dispatch4 || !ci->dispatch6) {
                        *ret_reason = "a class chain, its sets or its base chain rules changed";
                        return 0;
                }
        }
        if (t.n_classes != classes) {
                *ret_reason = "a class kvnetd did not make appeared";
                return 0;
        }
        for (Service *s = m->services; s; s = s->next) {
                const NftServiceInfo *si;

                if (s->legacy) {
                        char chain[NFT_NAME_MAX];
                        const NftLegacyInfo *li;
                        uintptr_t i;

                        legacy++;
                        nft_legacy_chain_name(s->key, chain);
                        i = (uintptr_t)strmap_get(&t.legacy_index, chain);
                        li = i ? &t.legacy[i - 1] : NULL;
                        if (!li || !streq_ptr(li->key, s->key) || li->n_pods != s->n_pods) {
                                *ret_reason = "an old service chain or its pods changed";
                                return 0;
                        }
                        for (size_t k = 0; k < s->n_pods; k++)
                                if (!ip_addr_equal(&li->pods[k], &s->pods[k])) {
                                        *ret_reason = "an old service chain or its pods changed";
                                        return 0;
                                }
                }
                if (!s->cls)
                        continue;
                si = nft_table_info_service(&t, s->key);
                if (s->n_pods == 0) {
                        if (si) {
                                *ret_reason = "elements of a service with no pods appeared";
                                return 0;
                        }
                        continue;
                }
                services++;
                if (!si || si->split || !streq(si->cls, s->cls->name) || si->n_pods != s->n_pods) {
                        *ret_reason = "pod set elements changed";
                        return 0;
                }
                if (si->n_vips != s->n_pods) {
                        *ret_reason = "VIP map elements changed";
                        return 0;
                }
                /* All sorted with ip_addr_compare(). */
                for (size_t i = 0; i < s->n_pods; i++) {
                        const IpAddr *vip = s->pods[i].family == AF_INET ? &s->vip4 : &s->vip6;
                        if (!ip_addr_equal(&si->pods[i], &s->pods[i])) {
                                *ret_reason = "pod set elements changed";
                                return 0;
                        }
                        if (!ip_addr_equal(&si->vips[i].pod, &s->pods[i]) ||
                            !ip_addr_equal(&si->vips[i].vip, vip)) {
                                *ret_reason = "VIP map elements changed";
                                return 0;
                        }
                }
        }
        if (t.n_services != services) {
                *ret_reason = "elements of a service kvnetd does not know appeared";
                return 0;
        }
        if (t.n_legacy != legacy) {
                *ret_reason = "an old chain kvnetd does not know appeared";
                return 0;
        }
        return 1;
}

int manager_reconcile_table(Manager *m)
{
        const char *reason = NULL;
        uint32_t before, after;
        bool have_gen;
        int r;

        /* Someone else's nft command (a firewall manager's flush, an
         * operator's typo) must not leave pods SNATed wrongly, or not at all,
         * until the next change: compare, and rebuild on any difference.
         * Queued changes first: a rebuild rewrites the record they were
         * diffed against. */
        manager_egress_flush(m);
        /* The listing costs O(table) in time and memory (seconds and
         * 100 MiB at 10,000 services): not when no transaction but kvnetd's
         * own came since the table last matched the record. The generation
         * counts every table's transactions, so on a node where others
         * commit often the table is read as before. */
        have_gen = nft_get_gen(m->nft_nl, &before) >= 0;
        if (have_gen && m->nft_gen_known && before == m->nft_gen) {
                m->metrics.table_reads_skipped++;
                log_debug("table inet %s: ruleset generation %" PRIu32
                          " unchanged since kvnetd's last commit or read, not read",
                          m->config->table, before);
                return 0;
        }
        m->nft_gen_known = false;
        m->metrics.table_reads++;
        r = nft_table_matches(m, &reason);
        if (r < 0)
                return log_warning_errno(r, "cannot read table inet %s: %m", m->config->table);
        if (r == 0) {
                log_notice("table inet %s differs from what kvnetd programmed (%s): rebuilding it",
                           m->config->table, reason);
                return nft_rebuild(m);
        }
        /* It matched at this generation if none came during the read. */
        if (have_gen && nft_get_gen(m->nft_nl, &after) >= 0 && after == before) {
                m->nft_gen = after;
                m->nft_gen_known = true;
        }
        log_debug("table inet %s read at ruleset generation %" PRIu32 ": as kvnetd programmed it",
                  m->config->table, before);
        return 0;
}

static int service_get_or_add(Manager *m, const char *key, usec_t deadline, Service **ret)
{
        Service *s = manager_find_service(m, key);
        int r;

        if (!s) {
                r = manager_add_service(m, key, &s);
                if (r < 0)
                        return r;
        }
        service_set_deadline(m, s, MIN(s->deadline, deadline));
        *ret = s;
        return 0;
}

static int apply_one(Manager *m, void (*fn)(NftBatch *b, Manager *m, const void *arg), const void *arg,
                     char **ret_error)
{
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        int r;

        r = nft_batch_new(true, NULL, &b);
        if (r < 0)
                return r;
        fn(b, m, arg);
        return manager_nft_commit(m, b, ret_error);
}

static void batch_delete_table(NftBatch *b, Manager *m, const void *arg)
{
        (void)arg;
        nft_batch_delete_table(b, m->config->table);
}

static void batch_skeleton(NftBatch *b, Manager *m, const void *arg)
{
        (void)arg;
        nft_batch_skeleton(b, m->config->table);
}

/* What adoption removes at once, in one transaction: what cannot be
 * adopted (old chains with no key, VIP map elements of a service with no
 * class), classes no service is in, and the old pod maps when no old chain
 * is left; the base chain is rewritten when a class or the maps go. */
static int adopt_fixup(Manager *m, const NftTableInfo *t)
{
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        _cleanup_free_ const char **names = NULL;
        _cleanup_free_ char *err = NULL;
        const char *table = m->config->table;
        bool rewrite = t->legacy_maps && m->n_legacy == 0;
        size_t n = 0;
        int r;

        r = nft_batch_new(true, NULL, &b);
        if (r < 0)
                return r;
        for (size_t i = 0; i < t->n_legacy; i++)
                if (!t->legacy[i].key) {
                        log_warning("removing chain %s: not one kvnetd made", t->legacy[i].chain);
                        nft_batch_remove_legacy(b, table, t->legacy[i].chain, t->legacy[i].pods,
                                                t->legacy[i].n_pods, t->legacy[i].sets);
                }
        for (size_t i = 0; i < t->n_services; i++)
                if (!t->services[i].cls[0]) {
                        const NftServiceInfo *si = &t->services[i];
                        log_warning("removing the VIP map elements of %s: its pods are in no class",
                                    si->key);
                        for (size_t k = 0; k < si->n_vips; k++)
                                nft_batch_vip_pods(b, table, NULL, NULL, NULL, &si->vips[k].pod, 1, false);
                }
        for (EgressClass *c = m->classes; c; c = c->next)
                rewrite |= c->refs == 0;
        if (rewrite) {
                names = calloc(MAX(m->n_classes, (size_t)1), sizeof(*names));
                if (!names)
                        return -ENOMEM;
                for (EgressClass *c = m->classes; c; c = c->next)
                        if (c->refs > 0)
                                names[n++] = c->name;
                nft_batch_dispatch(b, table, m->n_legacy > 0, names, n);
                for (EgressClass *c = m->classes; c; c = c->next)
                        if (c->refs == 0) {
                                log_info("removing class %s: no service is in it", c->name);
                                nft_batch_remove_class(b, table, c->name, c->sets);
                        }
                if (t->legacy_maps && m->n_legacy == 0)
                        nft_batch_remove_legacy_maps(b, table);
        }
        if (nft_batch_is_empty(b))
                return 0;
        r = manager_nft_commit(m, b, &err);
        if (r < 0)
                return log_warning_errno(r, "cannot remove what kvnetd cannot adopt in table inet %s: %s",
                                         table, err ? err : "");
        for (EgressClass *c = m->classes; c; c = c->next)
                if (c->refs == 0)
                        c->in_kernel = false;
        egress_classes_gc(m);
        return 0;
}

/* The record takes what the table holds. False if something there is not
 * as kvnetd makes it (the reconcile will read the table and rebuild it). */
static int adopt_table(Manager *m, NftTableInfo *t, usec_t grace, bool *adopted, bool *ret_consistent)
{
        bool consistent = !t->foreign;
        int r;

        for (size_t i = 0; i < t->n_legacy; i++) {
                NftLegacyInfo *li = &t->legacy[i];
                Service *s;

                if (!li->key)
                        continue; /* adopt_fixup() */
                r = service_get_or_add(m, li->key, grace, &s);
                if (r < 0)
                        return r;
                if (podmap_reserve(&m->pods, li->n_pods) < 0)
                        return -ENOMEM;
                s->legacy = true;
                s->legacy_sets = li->sets;
                m->n_legacy++;
                s->pods = TAKE_PTR(li->pods);
                s->n_pods = li->n_pods;
                for (size_t k = 0; k < s->n_pods; k++)
                        (void)podmap_put(&m->pods, &s->pods[k], s);
                *adopted = true;
                log_info("adopted egress chain (previous layout) of %s with %zu pods until replayed", s->key,
                         s->n_pods);
        }
        for (size_t i = 0; i < t->n_classes; i++) {
                const NftClassInfo *ci = &t->classes[i];
                EgressClass *c = egress_class_get(m, ci->name, ci->fingerprint, ci->sets);

                if (!c)
                        return -ENOMEM;
                c->in_kernel = true;
                if (!ci->fingerprint || !ci->p4 || !ci->p6 || !ci->dispatch4 || !ci->dispatch6)
                        consistent = false;
        }
        for (size_t i = 0; i < t->n_services; i++) {
                NftServiceInfo *si = &t->services[i];
                Service *s;

                if (!si->cls[0])
                        continue; /* adopt_fixup() */
                r = service_get_or_add(m, si->key, grace, &s);
                if (r < 0)
                        return r;
                if (service_has_egress(s) || podmap_reserve(&m->pods, si->n_pods) < 0) {
                        if (!service_has_egress(s))
                                return -ENOMEM;
                        consistent = false;
                        continue;
                }
                s->cls = egress_class_find(m, si->cls);
                s->cls->refs++;
                for (size_t k = 0; k < si->n_vips; k++) {
                        IpAddr *vip = si->vips[k].vip.family == AF_INET ? &s->vip4 : &s->vip6;
                        if (vip->family == 0)
                                *vip = si->vips[k].vip;
                }
                s->pods = TAKE_PTR(si->pods);
                s->n_pods = si->n_pods;
                consistent &= !si->split && si->n_vips == s->n_pods;
                for (size_t k = 0; k < s->n_pods; k++) {
                        const IpAddr *vip = s->pods[k].family == AF_INET ? &s->vip4 : &s->vip6;
                        if (podmap_get(&m->pods, &s->pods[k]))
                                consistent = false;
                        (void)podmap_put(&m->pods, &s->pods[k], s);
                        if (k < si->n_vips && (!ip_addr_equal(&si->vips[k].pod, &s->pods[k]) ||
                                               !ip_addr_equal(&si->vips[k].vip, vip)))
                                consistent = false;
                }
                *adopted = true;
                log_info("adopted egress of %s in class %s with %zu pods until replayed", s->key,
                         s->cls->name, s->n_pods);
        }
        *ret_consistent = consistent;
        return 0;
}

/* Reads what a previous kvnetd left: our addresses and our table. Nothing
 * is changed here; the grace period decides. */
int manager_adopt(Manager *m)
{
        _cleanup_free_ AddrInfo *addrs = NULL;
        StateEntry *entries = NULL;
        NftTableInfo t = {};
        PodMap by_addr = {};
        size_t n_addrs = 0, n_entries = 0;
        usec_t grace = now_usec() + m->config->grace_usec;
        uint32_t gen = 0, gen_after = 0;
        bool adopted = false, have_gen, consistent = true;
        int r;

        r = state_load(m->config, &entries, &n_entries);
        if (r < 0)
                return r;
        for (size_t k = 0; k < n_entries; k++)
                if (podmap_put(&by_addr, &entries[k].addr, &entries[k]) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
        r = addr_list_vips(m, &addrs, &n_addrs);
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < n_addrs; i++) {
                const StateEntry *e = podmap_get(&by_addr, &addrs[i].addr);
                const char *key = UNOWNED_KEY;
                usec_t deadline = grace;
                Service *s;
                Vip *v;

                if (e && streq(e->ifname, addrs[i].ifname)) {
                        key = e->key;
                        deadline = MIN(grace, e->deadline);
                }
                if (manager_find_vip(m, &addrs[i].addr))
                        continue; /* the same address on two interfaces: keep the first */
                r = service_get_or_add(m, key, deadline, &s);
                if (r < 0)
                        goto finish;
                if (s->n_vips >= KVNETD_MAX_VIPS_PER_SERVICE)
                        continue;
                if (service_reserve_vip(m) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                v = calloc(1, sizeof(*v));
                if (!v) {
                        r = -ENOMEM;
                        goto finish;
                }
                *v = (Vip){.addr = addrs[i].addr, .adopted = true};
                memcpy(v->ifname, addrs[i].ifname, sizeof(v->ifname));
                service_attach_vip(m, s, v, true);
                adopted = true;
                log_info("adopted VIP %s on %s (%s) until claimed",
                         ip_addr_to_string(&v->addr, (char[64]){}), v->ifname, s->key);
        }

        have_gen = nft_get_gen(m->nft_nl, &gen) >= 0;
        r = nft_read_table(m->nft, m->config->table, &t);
        if (r < 0) {
                log_error_errno(r, "cannot read table inet %s: %m", m->config->table);
                goto finish;
        }
        /* The record below is what was read, and every change made from
         * here on goes through manager_nft_commit(): the generation is
         * known if none came during the read, and the first reconcile after
         * a start need not list the table again. */
        if (have_gen && nft_get_gen(m->nft_nl, &gen_after) >= 0 && gen_after == gen) {
                m->nft_gen = gen;
                m->nft_gen_known = true;
        }
        if (t.exists && !t.skeleton_ok && !t.legacy_maps) {
                log_warning("table inet %s is not as kvnetd makes it: recreating it", m->config->table);
                (void)apply_one(m, batch_delete_table, NULL, NULL);
                nft_table_info_done(&t);
        }
        if (!t.exists || !t.skeleton_ok) {
                /* A new table, or the previous layout (an upgrade): its
                 * chains keep SNATing until each service is replayed. */
                _cleanup_free_ char *err = NULL;
                if (t.exists)
                        log_notice(
                                "table inet %s has the previous layout: moving each service to the new one "
                                "as it is replayed",
                                m->config->table);
                r = apply_one(m, batch_skeleton, NULL, &err);
                if (r < 0) {
                        log_error("cannot create table inet %s: %s", m->config->table, err ? err : "");
                        goto finish;
                }
        }
        r = adopt_table(m, &t, grace, &adopted, &consistent);
        if (r < 0)
                goto finish;
        (void)adopt_fixup(m, &t);
        if (!consistent) {
                log_warning("table inet %s is not all as kvnetd makes it (%s): comparing it at the next "
                            "reconcile",
                            m->config->table, t.foreign ? t.foreign : "elements out of place");
                m->nft_gen_known = false;
        }
        m->grace_end = adopted ? grace : 0;
        r = 0;
finish:
        podmap_done(&by_addr);
        nft_table_info_done(&t);
        state_entries_free(entries, n_entries);
        return r;
}
