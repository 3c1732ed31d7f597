/* SPDX-License-Identifier: Apache-2.0 */
/* What one pod change costs the kernel, by ruleset shape (issue 10 item 1):
 * builds N services in a network namespace of its own (unshare: the host's
 * ruleset is never touched), then times R transactions that each add one
 * pod mapping and delete another, and prints the median and the worst.
 *
 *   nft_shapes SHAPE N [R]     (root)
 *
 * Shapes (IPv4 only, one pod and one SNAT rule per service):
 *   vmap      kvnetd's: map pod4 { ipv4_addr : verdict }, each pod
 *             "goto svc_<i>", a chain per service. Adding a goto element
 *             makes the kernel validate the whole table at commit.
 *   twolevel  pod4 { ipv4_addr : mark } (plain data), svc { mark : verdict }
 *             and a chain per service, looked up in a row from a register:
 *             no validation, but nft 1.0.6 aborts listing such a rule.
 *   class     the services' pods in one set, their VIPs in a data map, one
 *             shared chain: "ip saddr @cls-p4 goto cls", "snat ip to ip
 *             saddr map @vip4". No verdict element, one chain.
 * The kernel also walks every chain of the namespace at each commit
 * (nf_tables_commit), so a chain per service costs O(services) anyway. */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TABLE "shapes"
#define TYPE_IPADDR 7
#define TYPE_MARK 19
#define ELEMS_PER_MSG 512

enum { VMAP, TWOLEVEL, CLASS };

static struct mnl_socket *nl;
static struct nftnl_batch *batch;
static uint32_t seq = 1, set_ids;

static void die(const char *what)
{
        perror(what);
        exit(1);
}

static void begin(void)
{
        batch = nftnl_batch_alloc(1u << 18, 1u << 18);
        if (!batch)
                die("nftnl_batch_alloc");
        nftnl_batch_begin(nftnl_batch_buffer(batch), seq++);
        nftnl_batch_update(batch);
}

static struct nlmsghdr *msg(uint16_t type, uint16_t flags)
{
        return nftnl_nlmsg_build_hdr(nftnl_batch_buffer(batch), type, NFPROTO_INET, flags, seq++);
}

static double now(void)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Sends the batch; returns the time from sendmsg() until the kernel had
 * committed it (sendmsg returns after the commit). */
static double commit(void)
{
        struct sockaddr_nl snl = {.nl_family = AF_NETLINK};
        struct iovec *iov;
        struct msghdr m;
        size_t total = 0;
        char buf[8192];
        ssize_t len;
        double t0, t1;
        int n, want;

        nftnl_batch_end(nftnl_batch_buffer(batch), seq++);
        nftnl_batch_update(batch);
        n = nftnl_batch_iovec_len(batch);
        iov = calloc((size_t)n, sizeof(*iov));
        if (!iov)
                die("calloc");
        nftnl_batch_iovec(batch, iov, n);
        for (int i = 0; i < n; i++)
                total += iov[i].iov_len;
        want = (int)(total + 65536);
        (void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want));
        m = (struct msghdr){
                .msg_name = &snl, .msg_namelen = sizeof(snl), .msg_iov = iov, .msg_iovlen = (size_t)n};
        t0 = now();
        if (sendmsg(mnl_socket_get_fd(nl), &m, 0) < 0)
                die("sendmsg");
        t1 = now();
        while ((len = recv(mnl_socket_get_fd(nl), buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
                const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
                int rem = (int)len;

                for (; mnl_nlmsg_ok(h, rem); h = mnl_nlmsg_next(h, &rem)) {
                        const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
                        if (h->nlmsg_type == NLMSG_ERROR && e->error != 0) {
                                fprintf(stderr, "nft_shapes: transaction failed: %s\n", strerror(-e->error));
                                exit(1);
                        }
                }
        }
        free(iov);
        nftnl_batch_free(batch);
        return t1 - t0;
}

static void add_table(void)
{
        struct nftnl_table *t = nftnl_table_alloc();

        nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
        nftnl_table_set_str(t, NFTNL_TABLE_NAME, TABLE);
        nftnl_table_nlmsg_build_payload(msg(NFT_MSG_NEWTABLE, NLM_F_CREATE), t);
        nftnl_table_free(t);
        nftnl_batch_update(batch);
}

/* data_type 0: a set; NFT_DATA_VERDICT: a verdict map; else a data map. */
static void add_set(const char *name, uint32_t key_type, uint32_t key_len, uint32_t data_type,
                    uint32_t data_len)
{
        struct nftnl_set *s = nftnl_set_alloc();

        nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
        nftnl_set_set_str(s, NFTNL_SET_TABLE, TABLE);
        nftnl_set_set_str(s, NFTNL_SET_NAME, name);
        nftnl_set_set_u32(s, NFTNL_SET_ID, ++set_ids);
        nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
        nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
        if (data_type) {
                nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_MAP);
                nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, data_type);
                if (data_len)
                        nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, data_len);
        }
        nftnl_set_nlmsg_build_payload(msg(NFT_MSG_NEWSET, NLM_F_CREATE), s);
        nftnl_set_free(s);
        nftnl_batch_update(batch);
}

static void add_chain(const char *name, bool base)
{
        struct nftnl_chain *c = nftnl_chain_alloc();

        nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, TABLE);
        nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
        if (base) {
                nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, NF_INET_POST_ROUTING);
                nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, 90);
                nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "nat");
                nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
        }
        nftnl_chain_nlmsg_build_payload(msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE), c);
        nftnl_chain_free(c);
        nftnl_batch_update(batch);
}

static struct nftnl_rule *rule;

static void rule_begin(const char *chain)
{
        rule = nftnl_rule_alloc();
        nftnl_rule_set_u32(rule, NFTNL_RULE_FAMILY, NFPROTO_INET);
        nftnl_rule_set_str(rule, NFTNL_RULE_TABLE, TABLE);
        nftnl_rule_set_str(rule, NFTNL_RULE_CHAIN, chain);
}

static struct nftnl_expr *expr(const char *name)
{
        struct nftnl_expr *e = nftnl_expr_alloc(name);

        if (!e)
                die("nftnl_expr_alloc");
        nftnl_rule_add_expr(rule, e);
        return e;
}

static void rule_end(void)
{
        nftnl_rule_nlmsg_build_payload(msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND), rule);
        nftnl_rule_free(rule);
        nftnl_batch_update(batch);
}

/* meta nfproto ipv4 ; ip saddr -> reg 1 */
static void e_ipv4_saddr(void)
{
        uint8_t proto = NFPROTO_IPV4;
        struct nftnl_expr *e = expr("meta");

        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_NFPROTO);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
        e = expr("cmp");
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &proto, sizeof(proto));
        e = expr("payload");
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 12);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 4);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
}

static void e_lookup(const char *set, uint32_t sreg, int dreg)
{
        struct nftnl_expr *e = expr("lookup");

        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
        if (dreg >= 0)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, (uint32_t)dreg);
}

/* snat ip to VIP (vip != 0) or to "ip saddr map @vip4". */
static void snat_rule(const char *chain, uint32_t vip)
{
        struct nftnl_expr *e;

        rule_begin(chain);
        if (vip) {
                e = expr("immediate");
                nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
                nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &vip, sizeof(vip));
        } else {
                e_ipv4_saddr();
                e_lookup("vip4", NFT_REG_1, NFT_REG_1);
        }
        e = expr("nat");
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, NFPROTO_IPV4);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        rule_end();
}

typedef struct Elems {
        const char *set;
        bool add;
        struct nftnl_set *s;
        size_t n;
} Elems;

static void elems_flush(Elems *x)
{
        if (x->s && x->n > 0) {
                nftnl_set_elems_nlmsg_build_payload(
                        msg(x->add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, x->add ? NLM_F_CREATE : 0),
                        x->s);
                nftnl_batch_update(batch);
        }
        if (x->s)
                nftnl_set_free(x->s);
        x->s = NULL;
        x->n = 0;
}

/* key; with a goto chain, or 4 bytes of data, or neither. */
static void elem(Elems *x, uint32_t key, const char *chain, const uint32_t *data)
{
        struct nftnl_set_elem *e = nftnl_set_elem_alloc();

        if (x->n >= ELEMS_PER_MSG)
                elems_flush(x);
        if (!x->s) {
                x->s = nftnl_set_alloc();
                nftnl_set_set_u32(x->s, NFTNL_SET_FAMILY, NFPROTO_INET);
                nftnl_set_set_str(x->s, NFTNL_SET_TABLE, TABLE);
                nftnl_set_set_str(x->s, NFTNL_SET_NAME, x->set);
        }
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &key, sizeof(key));
        if (chain) {
                nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, NFT_GOTO);
                nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, chain);
        }
        if (data)
                nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, data, sizeof(*data));
        nftnl_set_elem_add(x->s, e);
        x->n++;
}

/* Service i's pod (base 10.0.0.0, or 11.0.0.0 for the changes) and VIP. */
static uint32_t pod(uint32_t base, uint32_t i)
{
        return htonl(base + i);
}

/* Maps (or unmaps) pod p to service i in the shape's maps. */
static void map_pod(int shape, bool add, uint32_t p, uint32_t i)
{
        char chain[32];
        uint32_t id = i + 1, vip = htonl(0xc0a80000u + i);

        snprintf(chain, sizeof(chain), "svc_%u", i);
        if (shape == CLASS) {
                Elems s = {.set = "cls-p4", .add = add}, v = {.set = "vip4", .add = add};
                elem(&s, p, NULL, NULL);
                elems_flush(&s);
                elem(&v, p, NULL, add ? &vip : NULL);
                elems_flush(&v);
        } else {
                Elems x = {.set = "pod4", .add = add};
                elem(&x, p, shape == VMAP && add ? chain : NULL, shape == TWOLEVEL && add ? &id : NULL);
                elems_flush(&x);
        }
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        static const char *const names[] = {"vmap", "twolevel", "class"};
        int shape = -1;
        uint32_t n, reps;
        double cold, *t;
        char chain[32];

        if (argc < 3) {
                fprintf(stderr, "usage: nft_shapes vmap|twolevel|class N [R]\n");
                return 2;
        }
        for (int i = 0; i < 3; i++)
                if (strcmp(argv[1], names[i]) == 0)
                        shape = i;
        n = (uint32_t)strtoul(argv[2], NULL, 10);
        reps = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 50;
        if (shape < 0 || n == 0 || reps == 0 || reps > n) {
                fprintf(stderr, "nft_shapes: bad arguments (R must be 1..N)\n");
                return 2;
        }
        if (unshare(CLONE_NEWNET) < 0)
                die("unshare(CLONE_NEWNET)");
        nl = mnl_socket_open(NETLINK_NETFILTER);
        if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
                die("netlink");

        begin();
        add_table();
        if (shape == VMAP)
                add_set("pod4", TYPE_IPADDR, 4, NFT_DATA_VERDICT, 0);
        else if (shape == TWOLEVEL) {
                add_set("pod4", TYPE_IPADDR, 4, TYPE_MARK, 4);
                add_set("svc", TYPE_MARK, 4, NFT_DATA_VERDICT, 0);
        } else {
                add_set("cls-p4", TYPE_IPADDR, 4, 0, 0);
                add_set("vip4", TYPE_IPADDR, 4, TYPE_IPADDR, 4);
        }
        add_chain("postrouting", true);
        if (shape == CLASS) {
                add_chain("cls", false);
                snat_rule("cls", 0);
        } else
                for (uint32_t i = 0; i < n; i++) {
                        snprintf(chain, sizeof(chain), "svc_%u", i);
                        add_chain(chain, false);
                        snat_rule(chain, htonl(0xc0a80000u + i));
                }
        rule_begin("postrouting");
        e_ipv4_saddr();
        if (shape == VMAP)
                e_lookup("pod4", NFT_REG_1, NFT_REG_VERDICT);
        else if (shape == TWOLEVEL) {
                e_lookup("pod4", NFT_REG_1, NFT_REG_2);
                e_lookup("svc", NFT_REG_2, NFT_REG_VERDICT);
        } else {
                struct nftnl_expr *e;
                e_lookup("cls-p4", NFT_REG_1, -1);
                e = expr("immediate");
                nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
                nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NFT_GOTO);
                nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, "cls");
        }
        rule_end();
        if (shape == TWOLEVEL) {
                Elems x = {.set = "svc", .add = true};
                for (uint32_t i = 0; i < n; i++) {
                        uint32_t id = i + 1;
                        snprintf(chain, sizeof(chain), "svc_%u", i);
                        elem(&x, id, chain, NULL);
                }
                elems_flush(&x);
        }
        {
                Elems x = {.set = shape == CLASS ? "cls-p4" : "pod4", .add = true},
                      v = {.set = "vip4", .add = true};
                for (uint32_t i = 0; i < n; i++) {
                        uint32_t id = i + 1, vip = htonl(0xc0a80000u + i);
                        snprintf(chain, sizeof(chain), "svc_%u", i);
                        elem(&x, pod(0x0a000000u, i), shape == VMAP ? chain : NULL,
                             shape == TWOLEVEL ? &id : NULL);
                        if (shape == CLASS)
                                elem(&v, pod(0x0a000000u, i), NULL, &vip);
                }
                elems_flush(&x);
                elems_flush(&v);
        }
        cold = commit();

        t = calloc(reps, sizeof(*t));
        if (!t)
                die("calloc");
        for (uint32_t r = 0; r < reps; r++) {
                /* Service r's pod is replaced: a new address in, the old out. */
                begin();
                map_pod(shape, true, pod(0x0b000000u, r), r);
                map_pod(shape, false, pod(0x0a000000u, r), r);
                t[r] = commit();
        }
        qsort(t, reps, sizeof(*t), cmp_double);
        printf("%s N=%u: cold %.1f ms; one change (median of %u) %.3f ms, worst %.3f ms\n", names[shape], n,
               cold * 1e3, reps, t[reps / 2] * 1e3, t[reps - 1] * 1e3);
        free(t);
        mnl_socket_close(nl);
        return 0;
}
