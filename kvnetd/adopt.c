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
 * the kernel switches from the old table to the rebuilt one atomically. */
static int nft_rebuild(Manager *m)
{
        _cleanup_(nft_batch_freep) NftBatch *b = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_free_ IpAddr *all = NULL;
        const char *table = m->config->table;
        size_t n_all = 0;
        int r;

        r = service_all_pods(m, &all, &n_all);
        if (r < 0)
                return r;
        r = nft_batch_new(true, NULL, &b);
        if (r < 0)
                return r;
        nft_batch_skeleton(b, table);
        nft_batch_delete_table(b, table);
        nft_batch_skeleton(b, table);
        for (Service *s = m->services; s; s = s->next)
                if (s->policy) {
                        nft_batch_service(b, table, s->chain, s->key, s->policy, false, 0);
                        nft_batch_pods(b, table, s->pods, s->n_pods, s->chain);
                }
        r = manager_nft_commit(m, b, &err);
        if (r < 0)
                return log_error_errno(r, "cannot rebuild table inet %s: %s", table, err ? err : "");
        for (Service *s = m->services; s; s = s->next) {
                if (s->policy) {
                        s->sets = nft_policy_sets(s->policy);
                        continue;
                }
                if (s->has_chain) {
                        /* An adopted chain we cannot rebuild: forget it. */
                        for (size_t i = 0; i < s->n_pods; i++)
                                podmap_remove(&m->pods, &s->pods[i]);
                        s->pods = mfree(s->pods);
                        s->n_pods = 0;
                        s->has_chain = false;
                        s->sets = 0;
                }
        }
        manager_queue_conntrack(m, all, n_all);
        return 0;
}

/* Whether the kernel holds what we last programmed: the skeleton, for each
 * service with a chain that chain with our fingerprint and exactly our pods
 * in the maps, and no other chain of ours. Returns 1 if so, 0 if not (with
 * a reason), negative errno if the table could not be read. */
static int nft_table_matches(Manager *m, const char **ret_reason)
{
        _cleanup_(nft_table_info_done) NftTableInfo t = {};
        size_t expected = 0;
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
        for (Service *s = m->services; s; s = s->next) {
                const NftChainInfo *c;

                if (!s->has_chain)
                        continue;
                expected++;
                c = nft_table_info_find(&t, s->chain);
                if (!c || c->fingerprint != s->fingerprint) {
                        *ret_reason = "a service chain or its rules changed";
                        return 0;
                }
                if (c->n_pods != s->n_pods) {
                        *ret_reason = "pod mappings changed";
                        return 0;
                }
                /* Both sorted with ip_addr_compare(). */
                for (size_t i = 0; i < s->n_pods; i++)
                        if (!ip_addr_equal(&c->pods[i], &s->pods[i])) {
                                *ret_reason = "pod mappings changed";
                                return 0;
                        }
        }
        if (t.n_chains != expected) {
                *ret_reason = "a chain we did not make appeared, or pods map to one";
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

static void batch_remove_chain(NftBatch *b, Manager *m, const void *arg)
{
        const NftChainInfo *c = arg;

        nft_batch_pods(b, m->config->table, c->pods, c->n_pods, NULL);
        nft_batch_remove_service(b, m->config->table, c->chain, c->sets);
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
        bool adopted = false, have_gen;
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
        if (t.exists && !t.skeleton_ok) {
                log_warning("table inet %s is not as kvnetd makes it: recreating it", m->config->table);
                (void)apply_one(m, batch_delete_table, NULL, NULL);
                nft_table_info_done(&t);
        }
        if (!t.exists || !t.skeleton_ok) {
                _cleanup_free_ char *err = NULL;
                r = apply_one(m, batch_skeleton, NULL, &err);
                if (r < 0) {
                        log_error("cannot create table inet %s: %s", m->config->table, err ? err : "");
                        goto finish;
                }
        }
        for (size_t i = 0; i < t.n_chains; i++) {
                NftChainInfo *c = &t.chains[i];
                Service *s;

                if (!c->key) {
                        /* Not identifiable: remove it with its pods now. */
                        log_warning("removing chain %s: not one kvnetd made", c->chain);
                        (void)apply_one(m, batch_remove_chain, c, NULL);
                        continue;
                }
                r = service_get_or_add(m, c->key, grace, &s);
                if (r < 0)
                        goto finish;
                if (podmap_reserve(&m->pods, c->n_pods) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                s->has_chain = true;
                s->fingerprint = c->fingerprint;
                s->sets = c->sets;
                s->pods = TAKE_PTR(c->pods);
                s->n_pods = c->n_pods;
                for (size_t k = 0; k < s->n_pods; k++)
                        (void)podmap_put(&m->pods, &s->pods[k], s);
                adopted = true;
                log_info("adopted egress chain of %s with %zu pods until replayed", s->key, s->n_pods);
        }
        m->grace_end = adopted ? grace : 0;
        r = 0;
finish:
        podmap_done(&by_addr);
        nft_table_info_done(&t);
        state_entries_free(entries, n_entries);
        return r;
}
