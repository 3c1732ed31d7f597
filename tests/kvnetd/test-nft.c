/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kvnetd/nft.c: the nft batches kvnetd composes, against
 * golden files (tests/kvnetd/golden/), and the fingerprint that lets a
 * restarted kvnetd recognise its own rules. */
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
static char *build(void (*fn)(NftBatch *b, const EgressPolicy *p, const char *chain), const EgressPolicy *p)
{
        char *buf = NULL, chain[24];
        size_t n = 0, n_text, n_netlink;
        FILE *f = open_memstream(&buf, &n);
        NftBatch *b = NULL;

        ck_assert_ptr_nonnull(f);
        nft_chain_name("default/web", chain);
        ck_assert_int_eq(nft_batch_new(false, f, &b), 0);
        fn(b, p, chain);
        n_text = nft_batch_messages(b);
        nft_batch_free(b);
        fclose(f);
        ck_assert_int_eq(nft_batch_new(true, NULL, &b), 0);
        fn(b, p, chain);
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

static void new_service(NftBatch *b, const EgressPolicy *p, const char *chain)
{
        nft_batch_skeleton(b, "kvegress");
        nft_batch_service(b, "kvegress", chain, "default/web", p, false, 0);
        nft_batch_pods(b, "kvegress", p->pods, p->n_pods, chain);
}

/* From the layout before named exclusion sets went (ex4, ex6 present). */
static void replace_service(NftBatch *b, const EgressPolicy *p, const char *chain)
{
        IpAddr gone;

        ck_assert_int_eq(ip_addr_parse("10.244.1.9", AF_UNSPEC, &gone, NULL), 0);
        nft_batch_service(b, "kvegress", chain, "default/web", p, true, NFT_SET_ALL);
        nft_batch_pods(b, "kvegress", &gone, 1, NULL);
        nft_batch_pods(b, "kvegress", p->pods, 1, chain);
}

static void remove_service(NftBatch *b, const EgressPolicy *p, const char *chain)
{
        nft_batch_pods(b, "kvegress", p->pods, p->n_pods, NULL);
        nft_batch_remove_service(b, "kvegress", chain, nft_policy_sets(p));
}

START_TEST(test_golden_batches)
{
        EgressPolicy *p = policy();
        char *s;

        compare_golden("new-service.nft", s = build(new_service, p));
        free(s);
        compare_golden("replace-service.nft", s = build(replace_service, p));
        free(s);
        compare_golden("remove-service.nft", s = build(remove_service, p));
        free(s);
        egress_policy_free(p);
}
END_TEST

START_TEST(test_fingerprint)
{
        EgressPolicy *p = policy(), *q = policy();
        char chain[24];
        uint64_t a, b;

        nft_chain_name("default/web", chain);
        ck_assert_str_eq(chain, "svc_9d2ba50824d634bb");
        a = nft_policy_fingerprint("kvegress", chain, "default/web", p);
        b = nft_policy_fingerprint("kvegress", chain, "default/web", q);
        ck_assert_uint_eq(a, b);
        /* Pods are diffed element by element, not part of the rules. */
        q->n_pods = 1;
        ck_assert_uint_eq(nft_policy_fingerprint("kvegress", chain, "default/web", q), a);
        q->n_ports = 1;
        ck_assert_uint_ne(nft_policy_fingerprint("kvegress", chain, "default/web", q), a);
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
        tcase_add_test(tc, test_fingerprint);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
