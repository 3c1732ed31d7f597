/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvnetd/ctworker.c and conntrack.c, each in a network
 * namespace of its own (unshare in Check's forked child: the host's
 * conntrack table is never read): the queue's bound, the report back to the
 * event loop, deletion of exactly the entries of the queued sources (IPv4
 * kernel-filtered, IPv4 whole-table, IPv6), and finishing on exit. Needs
 * root; skipped (77) otherwise. */
#include <check.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctworker.h"
#include "netaddr.h"

#include <arpa/inet.h>

typedef struct Ctx {
        CtWorker *w;
        PodMap from;
        uint64_t deleted;
        unsigned reports;
        int error;
} Ctx;

static void on_done(CtWorker *w, uint64_t deleted, int error, void *userdata)
{
        Ctx *c = userdata;

        c->deleted += deleted;
        c->reports++;
        if (error < 0)
                c->error = error;
        (void)ct_worker_take(w, &c->from); /* as manager.c refeeds */
}

static void own_netns(void)
{
        ck_assert_int_eq(unshare(CLONE_NEWNET), 0);
}

static void put(PodMap *m, const char *s)
{
        IpAddr a;

        ck_assert_int_eq(ip_addr_parse(s, AF_UNSPEC, &a, NULL), 0);
        ck_assert_int_eq(podmap_put(m, &a, (void *)1), 0);
}

static void put_range(PodMap *m, int family, const char *first, unsigned n)
{
        IpAddr a;

        ck_assert_int_eq(ip_addr_parse(first, family, &a, NULL), 0);
        for (unsigned i = 0; i < n; i++) {
                IpAddr b = a;
                uint32_t *low = family == AF_INET ? &b.addr.in.s_addr : &b.addr.in6.s6_addr32[3];
                *low = htonl(ntohl(*low) + i);
                ck_assert_int_eq(podmap_put(m, &b, (void *)1), 0);
        }
}

static long ct_count(void)
{
        FILE *f = fopen("/proc/sys/net/netfilter/nf_conntrack_count", "re");
        long n = -1;

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fscanf(f, "%ld", &n), 1);
        fclose(f);
        return n;
}

static void fill(unsigned count, const char *first, unsigned nsrc, const char *dst)
{
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "%s %u %s %u %s >/dev/null", CTFILL, count, first, nsrc, dst);
        ck_assert_int_eq(system(cmd), 0);
}

/* Runs the loop until every queued address is done (at most 20 s). */
static void run_until_done(sd_event *e, Ctx *c)
{
        for (int i = 0; i < 2000 && (c->from.n > 0 || ct_worker_pending(c->w) > 0); i++)
                ck_assert_int_ge(sd_event_run(e, 10 * USEC_PER_MSEC), 0);
        ck_assert_uint_eq(c->from.n, 0);
        ck_assert_uint_eq(ct_worker_pending(c->w), 0);
        /* The last pass's report may still be on its way. */
        for (int i = 0; i < 10; i++)
                (void)sd_event_run(e, 10 * USEC_PER_MSEC);
}

START_TEST(test_bound_and_report)
{
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Ctx c = {};

        own_netns();
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(ct_worker_new(e, on_done, &c, &c.w), 0);
        put_range(&c.from, AF_INET, "10.1.0.0", 5000);
        /* One hand-off moves at most the bound; the rest waits with the
         * loop until the worker reports. */
        ck_assert_uint_eq(ct_worker_take(c.w, &c.from), CT_WORKER_QUEUE_MAX);
        ck_assert_uint_eq(c.from.n, 5000 - CT_WORKER_QUEUE_MAX);
        run_until_done(e, &c);
        ck_assert_uint_ge(c.reports, 2);
        ck_assert_int_eq(c.error, 0);
        ck_assert_uint_eq(c.deleted, 0); /* an empty table */
        c.w = ct_worker_free(c.w);
        podmap_done(&c.from);
}
END_TEST

START_TEST(test_deletes_exactly_the_sources)
{
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Ctx c = {};

        own_netns();
        fill(1000, "10.1.0.0", 10, "198.51.100.1"); /* 100 entries from each of 10.1.0.0-9 */
        fill(100, "fd00::", 10, "2001:db8::1");     /* 10 from each of fd00::0-9 */
        ck_assert_int_eq(ct_count(), 1100);
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(ct_worker_new(e, on_done, &c, &c.w), 0);

        /* Few IPv4 sources: kernel-filtered dumps; IPv6: the whole family. */
        put(&c.from, "10.1.0.3");
        put(&c.from, "fd00::3");
        put(&c.from, "10.9.9.9"); /* no entries */
        (void)ct_worker_take(c.w, &c.from);
        run_until_done(e, &c);
        ck_assert_int_eq(c.error, 0);
        ck_assert_uint_eq(c.deleted, 110);
        ck_assert_int_eq(ct_count(), 990);

        /* More than CONNTRACK_FILTERED_MAX IPv4 sources: one dump of the
         * family, matched in kvnetd; fd00::3 again (already gone). */
        put_range(&c.from, AF_INET, "10.1.0.0", 3);
        put_range(&c.from, AF_INET, "10.2.0.0", 40);
        put(&c.from, "fd00::3");
        (void)ct_worker_take(c.w, &c.from);
        run_until_done(e, &c);
        ck_assert_int_eq(c.error, 0);
        ck_assert_uint_eq(c.deleted, 110 + 300);
        ck_assert_int_eq(ct_count(), 690);

        /* On exit, what is queued is finished. */
        put(&c.from, "10.1.0.9");
        put(&c.from, "fd00::9");
        ck_assert_uint_eq(ct_worker_finish(c.w, &c.from, 10 * USEC_PER_SEC), 0);
        ck_assert_int_eq(ct_count(), 580);
        c.w = ct_worker_free(c.w);
        podmap_done(&c.from);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("ctworker");
        TCase *tc = tcase_create("ctworker");
        SRunner *sr;
        int failed;

        if (geteuid() != 0) {
                fprintf(stderr, "needs root (a network namespace of its own)\n");
                return 77;
        }
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_bound_and_report);
        tcase_add_test(tc, test_deletes_exactly_the_sources);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
