/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvnetd/nft.c: the nft batches kvnetd composes, against
 * golden files (tests/kvnetd/golden/), and the class name and fingerprint
 * that let services of the same policy share a chain and a restarted
 * kvnetd recognise its own rules. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "nft.h"
#include "validate.h"

#ifndef GOLDEN_DIR
#error "GOLDEN_DIR must be defined"
#endif

static EgressPolicy *policy(void)
{
        const char *pods[] = {"10.244.1.6", "10.244.1.5", "fd00:244:0:1::5"};
        const char *protos[] = {"udp", "tcp"};
        const uint16_t ports[] = {5060, 8080};
        const char *allowed[] = {"198.51.100.0/24", "2001:db8::/32"};
        const char *denied[] = {"203.0.113.7", "10.96.0.1/32"};
        const char *excluded[] = {"10.244.0.0/16", "10.96.0.0/12", "fd00:244::/48", "fd00:96::/112"};
        static IpPrefix ranges[2];
        static char *ifs[] = {"eth1", NULL};
        Config c = {.vip_ranges = ranges, .n_vip_ranges = 2, .interfaces = ifs};
        EgressRequest req = {
                .vip4 = "192.168.0.245",
                .vip6 = "fd00:192::245",
                .pods = pods,
                .n_pods = 3,
                .port_protos = protos,
                .port_numbers = ports,
                .n_ports = 2,
                .allowed = allowed,
                .n_allowed = 2,
                .denied = denied,
                .n_denied = 2,
                .excluded = excluded,
                .n_excluded = 4,
        };
        EgressPolicy *p = NULL;
        ParseError e = {};

        ck_assert_int_eq(ip_prefix_parse("192.168.0.224/27", AF_UNSPEC, false, &ranges[0], NULL), 0);
        ck_assert_int_eq(ip_prefix_parse("fd00:192::200/120", AF_UNSPEC, false, &ranges[1], NULL), 0);
        ck_assert_msg(egress_request_validate(&c, &req, &p, &e) == 0, "%s", e.message);
        return p;
}

/* The batch as nft text; the same batch built as netlink has as many
 * messages and no build error. */
static char *build(void (*fn)(NftBatch *b, const EgressPolicy *p, const char *cls), const EgressPolicy *p)
{
        char *buf = NULL, cls[NFT_NAME_MAX];
        size_t n = 0, n_text, n_netlink;
        FILE *f = open_memstream(&buf, &n);
        NftBatch *b = NULL;

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(nft_policy_class(p, cls, NULL, NULL), 0);
        ck_assert_int_eq(nft_batch_new(false, f, &b), 0);
        fn(b, p, cls);
        n_text = nft_batch_messages(b);
        nft_batch_free(b);
        fclose(f);
        ck_assert_int_eq(nft_batch_new(true, NULL, &b), 0);
        fn(b, p, cls);
        n_netlink = nft_batch_messages(b);
        nft_batch_free(b);
        ck_assert_uint_eq(n_text, n_netlink);
        return buf;
}

static void compare_golden(const char *name, const char *got)
{
        char path[512], *want = NULL;
        size_t n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", GOLDEN_DIR, name);
        if (getenv("KVEGRESS_UPDATE_GOLDEN")) {
                f = fopen(path, "we");
                ck_assert_ptr_nonnull(f);
                fputs(got, f);
                fclose(f);
                return;
        }
        f = fopen(path, "re");
        ck_assert_msg(f, "missing golden file %s (run with KVEGRESS_UPDATE_GOLDEN=1)", path);
        ck_assert_int_ge(getdelim(&want, &n, '\0', f), 0);
        fclose(f);
        ck_assert_msg(streq(want, got), "%s differs; got:\n%s", name, got);
        free(want);
}

/* The first service of a new class on an empty node. */
static void new_service(NftBatch *b, const EgressPolicy *p, const char *cls)
{
        const char *classes[] = {cls};

        nft_batch_skeleton(b, "kvegress");
        nft_batch_class(b, "kvegress", cls, p, false, 0);
        nft_batch_class_pods(b, "kvegress", cls, "default/web", p->pods, p->n_pods, true);
        nft_batch_vip_pods(b, "kvegress", "default/web", &p->vip4, &p->vip6, p->pods, p->n_pods, true);
        nft_batch_dispatch(b, "kvegress", false, classes, 1);
}

/* One pod replaced by another: elements only. */
static void pod_change(NftBatch *b, const EgressPolicy *p, const char *cls)
{
        IpAddr gone;

        ck_assert_int_eq(ip_addr_parse("10.244.1.9", AF_UNSPEC, &gone, NULL), 0);
        nft_batch_class_pods(b, "kvegress", cls, NULL, &gone, 1, false);
        nft_batch_class_pods(b, "kvegress", cls, "default/web", p->pods, 1, true);
        nft_batch_vip_pods(b, "kvegress", NULL, NULL, NULL, &gone, 1, false);
        nft_batch_vip_pods(b, "kvegress", "default/web", &p->vip4, &p->vip6, p->pods, 1, true);
}

/* A policy change (ports dropped): the pods move to a new class, the old
 * one (no other service in it) goes after the base chain no longer
 * refers to it. */
static void policy_change(NftBatch *b, const EgressPolicy *p, const char *cls)
{
        EgressPolicy q = *p;
        char to[NFT_NAME_MAX];
        const char *classes[1] = {to};

        q.n_ports = 0;
        ck_assert_int_eq(nft_policy_class(&q, to, NULL, NULL), 0);
        ck_assert_str_ne(to, cls);
        nft_batch_class(b, "kvegress", to, &q, false, 0);
        nft_batch_class_pods(b, "kvegress", cls, NULL, p->pods, p->n_pods, false);
        nft_batch_class_pods(b, "kvegress", to, "default/web", p->pods, p->n_pods, true);
        nft_batch_dispatch(b, "kvegress", false, classes, 1);
        nft_batch_remove_class(b, "kvegress", cls, nft_policy_sets(p));
}

static void remove_service(NftBatch *b, const EgressPolicy *p, const char *cls)
{
        nft_batch_class_pods(b, "kvegress", cls, NULL, p->pods, p->n_pods, false);
        nft_batch_vip_pods(b, "kvegress", NULL, NULL, NULL, p->pods, p->n_pods, false);
        nft_batch_dispatch(b, "kvegress", false, NULL, 0);
        nft_batch_remove_class(b, "kvegress", cls, nft_policy_sets(p));
}

/* An upgraded node: a service leaves its chain of the previous layout for
 * its class; it was the last, so the old pod maps go too. */
static void legacy_move(NftBatch *b, const EgressPolicy *p, const char *cls)
{
        const char *classes[] = {cls};
        char chain[NFT_NAME_MAX];

        nft_legacy_chain_name("default/web", chain);
        ck_assert_str_eq(chain, "svc_9d2ba50824d634bb");
        nft_batch_skeleton(b, "kvegress");
        nft_batch_class(b, "kvegress", cls, p, false, 0);
        nft_batch_class_pods(b, "kvegress", cls, "default/web", p->pods, p->n_pods, true);
        nft_batch_vip_pods(b, "kvegress", "default/web", &p->vip4, &p->vip6, p->pods, p->n_pods, true);
        nft_batch_remove_legacy(b, "kvegress", chain, p->pods, p->n_pods, NFT_SET_ALL);
        nft_batch_dispatch(b, "kvegress", false, classes, 1);
        nft_batch_remove_legacy_maps(b, "kvegress");
}

START_TEST(test_golden_batches)
{
        EgressPolicy *p = policy();
        char *s;

        compare_golden("new-service.nft", s = build(new_service, p));
        free(s);
        compare_golden("pod-change.nft", s = build(pod_change, p));
        free(s);
        compare_golden("policy-change.nft", s = build(policy_change, p));
        free(s);
        compare_golden("remove-service.nft", s = build(remove_service, p));
        free(s);
        compare_golden("legacy-move.nft", s = build(legacy_move, p));
        free(s);
        egress_policy_free(p);
}
END_TEST

START_TEST(test_class)
{
        EgressPolicy *p = policy(), *q = policy();
        char a[NFT_NAME_MAX], b[NFT_NAME_MAX];
        uint64_t fa, fb;
        char *ta, *tb;

        ck_assert_int_eq(nft_policy_class(p, a, &fa, &ta), 0);
        ck_assert_int_eq(strlen(a), 20);
        ck_assert(strncmp(a, "cls_", 4) == 0);
        ck_assert_int_eq(nft_policy_class(q, b, &fb, &tb), 0);
        ck_assert_str_eq(a, b);
        ck_assert_uint_eq(fa, fb);
        ck_assert_str_eq(ta, tb);
        free(tb);
        /* Neither the pods nor the VIPs are part of the class. */
        q->n_pods = 1;
        q->vip4 = (IpAddr){};
        ck_assert_int_eq(nft_policy_class(q, b, &fb, NULL), 0);
        ck_assert_str_eq(a, b);
        ck_assert_uint_eq(fa, fb);
        /* Its rules are. */
        q->n_ports = 1;
        ck_assert_int_eq(nft_policy_class(q, b, &fb, &tb), 0);
        ck_assert_str_ne(a, b);
        ck_assert_uint_ne(fa, fb);
        ck_assert_str_ne(ta, tb);
        free(ta);
        free(tb);
        egress_policy_free(p);
        egress_policy_free(q);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kvnetd-nft");
        TCase *tc = tcase_create("batches");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_golden_batches);
        tcase_add_test(tc, test_class);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
