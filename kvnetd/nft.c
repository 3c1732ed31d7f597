/* SPDX-License-Identifier: Apache-2.0 */
#include "nft.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>
#include <time.h>

#include "array.h"
#include "log.h"
#include "validate.h"

/* nft's datatype ids (its src/datatype.h), which nft reads back from a
 * set's key type to print elements: ipv4_addr, ipv6_addr, and the
 * concatenation inet_proto . inet_service. */
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_IP6ADDR 8
#define NFT_TYPE_INET_PROTOCOL 12
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_BITS 6
/* Elements per NEWSETELEM/DELSETELEM message: big maps go as several
 * messages of one batch, each well under a batch page. */
#define NFT_ELEMS_PER_MSG 512
#define NFT_PAGE_SIZE (256u * 1024u)

struct NftBatch {
        struct nftnl_batch *nl; /* NULL: text only */
        FILE *text;             /* NULL: netlink only */
        uint32_t seq, first_seq;
        size_t n_msgs;
        uint32_t set_ids;
        int error; /* first build error (-ENOMEM) */
};

static uint64_t fnv1a(const char *s, size_t n)
{
        uint64_t h = 0xcbf29ce484222325ULL;

        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char)s[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

void nft_chain_name(const char *key, char ret[static 24])
{
        snprintf(ret, 24, "svc_%016llx", (unsigned long long)fnv1a(key, strlen(key)));
}

int nft_batch_new(bool netlink, FILE *text, NftBatch **ret)
{
        NftBatch *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        b->text = text;
        b->seq = b->first_seq = (uint32_t)time(NULL) << 8;
        if (netlink) {
                b->nl = nftnl_batch_alloc(NFT_PAGE_SIZE, NFT_PAGE_SIZE);
                if (!b->nl) {
                        free(b);
                        return -ENOMEM;
                }
                nftnl_batch_begin(nftnl_batch_buffer(b->nl), b->seq++);
                if (nftnl_batch_update(b->nl) < 0) {
                        nftnl_batch_free(b->nl);
                        free(b);
                        return -ENOMEM;
                }
        }
        *ret = b;
        return 0;
}

NftBatch *nft_batch_free(NftBatch *b)
{
        if (!b)
                return NULL;
        if (b->nl)
                nftnl_batch_free(b->nl);
        free(b);
        return NULL;
}

bool nft_batch_is_empty(const NftBatch *b)
{
        return b->n_msgs == 0;
}

size_t nft_batch_messages(const NftBatch *b)
{
        return b->n_msgs;
}

static void text(NftBatch *b, const char *fmt, ...) _printf_(2, 3);
static void text(NftBatch *b, const char *fmt, ...)
{
        va_list ap;

        if (!b->text)
                return;
        va_start(ap, fmt);
        vfprintf(b->text, fmt, ap);
        va_end(ap);
}

static struct nlmsghdr *msg_begin(NftBatch *b, uint16_t type, uint16_t flags)
{
        b->n_msgs++;
        if (!b->nl)
                return NULL;
        return nftnl_nlmsg_build_hdr(nftnl_batch_buffer(b->nl), type, NFPROTO_INET, flags, b->seq++);
}

static void msg_end(NftBatch *b)
{
        if (b->nl && nftnl_batch_update(b->nl) < 0 && b->error == 0)
                b->error = -ENOMEM;
}

static void oom(NftBatch *b)
{
        if (b->error == 0)
                b->error = -ENOMEM;
}

/* --- tables, chains, sets ------------------------------------------------ */

/* A table's or chain's comment as nft writes it (NFTNL_UDATA_*_COMMENT
 * type); NULL when out of memory. */
static struct nftnl_udata_buf *comment_udata(uint8_t type, const char *comment)
{
        struct nftnl_udata_buf *u = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);

        if (u && !nftnl_udata_put_strz(u, type, comment)) {
                nftnl_udata_buf_free(u);
                return NULL;
        }
        return u;
}

static void put_table(NftBatch *b, uint16_t type, uint16_t flags, const char *table, const char *comment)
{
        struct nlmsghdr *nlh = msg_begin(b, type, flags);
        struct nftnl_table *t;

        if (!nlh)
                return;
        t = nftnl_table_alloc();
        if (!t)
                return oom(b);
        nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
        nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
        if (comment) {
                struct nftnl_udata_buf *u = comment_udata(NFTNL_UDATA_TABLE_COMMENT, comment);
                if (!u) {
                        nftnl_table_free(t);
                        return oom(b);
                }
                nftnl_table_set_data(t, NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(u),
                                     nftnl_udata_buf_len(u));
                nftnl_udata_buf_free(u);
        }
        nftnl_table_nlmsg_build_payload(nlh, t);
        nftnl_table_free(t);
        msg_end(b);
}

static void put_chain(NftBatch *b, uint16_t type, uint16_t flags, const char *table, const char *chain,
                      const char *comment, bool base)
{
        struct nlmsghdr *nlh = msg_begin(b, type, flags);
        struct nftnl_chain *c;

        if (!nlh)
                return;
        c = nftnl_chain_alloc();
        if (!c)
                return oom(b);
        nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
        nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, chain);
        if (base) {
                nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, NF_INET_POST_ROUTING);
                nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, 100 - 10 /* NF_IP_PRI_NAT_SRC (srcnat) - 10 */);
                nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "nat");
                nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
        }
        if (comment) {
                struct nftnl_udata_buf *u = comment_udata(NFTNL_UDATA_CHAIN_COMMENT, comment);
                if (!u) {
                        nftnl_chain_free(c);
                        return oom(b);
                }
                nftnl_chain_set_data(c, NFTNL_CHAIN_USERDATA, nftnl_udata_buf_data(u),
                                     nftnl_udata_buf_len(u));
                nftnl_udata_buf_free(u);
        }
        nftnl_chain_nlmsg_build_payload(nlh, c);
        nftnl_chain_free(c);
        msg_end(b);
}

static struct nftnl_set *set_new(const char *table, const char *name)
{
        struct nftnl_set *s = nftnl_set_alloc();

        if (!s)
                return NULL;
        nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
        nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
        nftnl_set_set_str(s, NFTNL_SET_NAME, name);
        return s;
}

/* A set of key_type (nft datatype id) and key_len bytes, with flags. */
static void put_set(NftBatch *b, const char *table, const char *name, uint32_t key_type, uint32_t key_len,
                    uint32_t flags, bool verdict_map)
{
        struct nlmsghdr *nlh = msg_begin(b, NFT_MSG_NEWSET, NLM_F_CREATE);
        struct nftnl_set *s;

        if (!nlh)
                return;
        s = set_new(table, name);
        if (!s)
                return oom(b);
        /* The kernel wants an id, unique in the batch, for every new set. */
        nftnl_set_set_u32(s, NFTNL_SET_ID, ++b->set_ids);
        nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
        nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
        nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags | (verdict_map ? NFT_SET_MAP : 0));
        if (verdict_map)
                nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
        nftnl_set_nlmsg_build_payload(nlh, s);
        nftnl_set_free(s);
        msg_end(b);
}

/* Deletes a set, or only its elements (flush). */
static void put_set_del(NftBatch *b, const char *table, const char *name, bool flush)
{
        struct nlmsghdr *nlh = msg_begin(b, flush ? NFT_MSG_DELSETELEM : NFT_MSG_DELSET, 0);
        struct nftnl_set *s;

        if (!nlh)
                return;
        s = set_new(table, name);
        if (!s)
                return oom(b);
        if (flush)
                nftnl_set_elems_nlmsg_build_payload(nlh, s);
        else
                nftnl_set_nlmsg_build_payload(nlh, s);
        nftnl_set_free(s);
        msg_end(b);
}

/* --- rules ---------------------------------------------------------------- */

typedef struct Rule {
        struct nftnl_rule *r;
        bool failed;
} Rule;

static void rule_begin(NftBatch *b, Rule *rule, const char *table, const char *chain)
{
        *rule = (Rule){};
        if (!b->nl)
                return;
        rule->r = nftnl_rule_alloc();
        if (!rule->r) {
                rule->failed = true;
                return;
        }
        nftnl_rule_set_u32(rule->r, NFTNL_RULE_FAMILY, NFPROTO_INET);
        nftnl_rule_set_str(rule->r, NFTNL_RULE_TABLE, table);
        nftnl_rule_set_str(rule->r, NFTNL_RULE_CHAIN, chain);
}

static struct nftnl_expr *rule_expr(Rule *rule, const char *name)
{
        struct nftnl_expr *e;

        if (!rule->r)
                return NULL;
        e = nftnl_expr_alloc(name);
        if (!e) {
                rule->failed = true;
                return NULL;
        }
        nftnl_rule_add_expr(rule->r, e);
        return e;
}

static void e_meta(Rule *rule, uint32_t key, uint32_t dreg)
{
        struct nftnl_expr *e = rule_expr(rule, "meta");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
}

static void e_cmp(Rule *rule, uint32_t sreg, uint32_t op, const void *data, uint32_t len)
{
        struct nftnl_expr *e = rule_expr(rule, "cmp");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

static void e_nfproto(Rule *rule, int family)
{
        uint8_t proto = family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6;

        e_meta(rule, NFT_META_NFPROTO, NFT_REG_1);
        e_cmp(rule, NFT_REG_1, NFT_CMP_EQ, &proto, sizeof(proto));
}

static void e_payload(Rule *rule, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg)
{
        struct nftnl_expr *e = rule_expr(rule, "payload");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
}

static void e_ct_daddr(Rule *rule, int family)
{
        struct nftnl_expr *e = rule_expr(rule, "ct");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, family == AF_INET ? NFT_CT_DST_IP : NFT_CT_DST_IP6);
        nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, 0 /* IP_CT_DIR_ORIGINAL */);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
}

static void e_lookup(Rule *rule, uint32_t sreg, const char *set, bool verdict, bool inverted)
{
        struct nftnl_expr *e = rule_expr(rule, "lookup");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
        if (verdict)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
        if (inverted)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
}

static void e_return(Rule *rule)
{
        struct nftnl_expr *e = rule_expr(rule, "immediate");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NFT_RETURN);
}

static void e_counter(Rule *rule)
{
        (void)rule_expr(rule, "counter");
}

/* ct original ip[6] daddr <prefix>: load, mask (unless a single address),
 * compare. */
static void e_daddr_prefix(Rule *rule, const IpPrefix *p)
{
        uint32_t len = p->family == AF_INET ? 4 : 16;
        uint8_t mask[16] = {}, zero[16] = {};
        struct nftnl_expr *e;

        e_ct_daddr(rule, p->family);
        if (p->prefixlen < len * 8) {
                for (unsigned i = 0; i < p->prefixlen; i++)
                        mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
                e = rule_expr(rule, "bitwise");
                if (e) {
                        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
                        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
                        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
                        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
                        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
                }
        }
        e_cmp(rule, NFT_REG_1, NFT_CMP_EQ, p->addr.bytes, len);
}

static void e_snat(Rule *rule, const IpAddr *vip)
{
        uint32_t len = vip->family == AF_INET ? 4 : 16;
        struct nftnl_expr *e;

        e_counter(rule);
        e = rule_expr(rule, "immediate");
        if (e) {
                nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
                nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, vip->addr.bytes, len);
        }
        e = rule_expr(rule, "nat");
        if (e) {
                nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
                nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY,
                                   vip->family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6);
                nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        }
}

static void rule_end(NftBatch *b, Rule *rule, const char *comment)
{
        struct nlmsghdr *nlh;

        if (!b->nl) {
                b->n_msgs++;
                return;
        }
        if (rule->failed || !rule->r) {
                if (rule->r)
                        nftnl_rule_free(rule->r);
                return oom(b);
        }
        if (comment) {
                struct nftnl_udata_buf *u = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
                if (!u || !nftnl_udata_put_strz(u, NFTNL_UDATA_RULE_COMMENT, comment)) {
                        nftnl_udata_buf_free(u);
                        nftnl_rule_free(rule->r);
                        return oom(b);
                }
                nftnl_rule_set_data(rule->r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(u),
                                    nftnl_udata_buf_len(u));
                nftnl_udata_buf_free(u);
        }
        nlh = msg_begin(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
        nftnl_rule_nlmsg_build_payload(nlh, rule->r);
        nftnl_rule_free(rule->r);
        msg_end(b);
}

/* Removes every rule of chain. */
static void put_flush_chain(NftBatch *b, const char *table, const char *chain)
{
        struct nlmsghdr *nlh = msg_begin(b, NFT_MSG_DELRULE, 0);
        struct nftnl_rule *r;

        if (!nlh)
                return;
        r = nftnl_rule_alloc();
        if (!r)
                return oom(b);
        nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
        nftnl_rule_nlmsg_build_payload(nlh, r);
        nftnl_rule_free(r);
        msg_end(b);
}

/* --- elements ------------------------------------------------------------- */

typedef struct Elems {
        NftBatch *b;
        const char *table, *set;
        bool add;
        struct nftnl_set *s;
        size_t n;
} Elems;

static void elems_flush(Elems *x)
{
        struct nlmsghdr *nlh;

        if (!x->b->nl) {
                /* Text only: count the messages netlink would send. */
                if (x->n > 0)
                        x->b->n_msgs++;
                x->n = 0;
                return;
        }
        if (!x->s)
                return;
        if (x->n > 0) {
                nlh = msg_begin(x->b, x->add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM,
                                (x->add ? NLM_F_CREATE : 0));
                nftnl_set_elems_nlmsg_build_payload(nlh, x->s);
                msg_end(x->b);
        }
        nftnl_set_free(x->s);
        x->s = NULL;
        x->n = 0;
}

/* One element: key of len bytes, flags, and for a map a goto to chain. */
static void elems_put(Elems *x, const void *key, uint32_t len, uint32_t flags, const char *chain)
{
        struct nftnl_set_elem *e;

        if (x->n >= NFT_ELEMS_PER_MSG)
                elems_flush(x);
        if (!x->b->nl) {
                x->n++;
                return;
        }
        if (x->n >= NFT_ELEMS_PER_MSG)
                elems_flush(x);
        if (!x->s) {
                x->s = set_new(x->table, x->set);
                if (!x->s)
                        return oom(x->b);
        }
        e = nftnl_set_elem_alloc();
        if (!e)
                return oom(x->b);
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, len);
        if (flags)
                nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, flags);
        if (chain) {
                nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, NFT_GOTO);
                nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, chain);
        }
        nftnl_set_elem_add(x->s, e);
        x->n++;
}

static void print_prefixes(FILE *f, const IpPrefix *v, size_t n, int family)
{
        bool first = true;

        for (size_t i = 0; i < n; i++) {
                char buf[IP_PREFIX_STRING_MAX];

                if (v[i].family != family)
                        continue;
                fprintf(f, "%s%s", first ? "" : ", ", ip_prefix_to_string(&v[i], buf));
                first = false;
        }
}

static bool any_of_family(const IpPrefix *v, size_t n, int family)
{
        for (size_t i = 0; i < n; i++)
                if (v[i].family == family)
                        return true;
        return false;
}

/* address + 1; false on overflow (the prefix reaches the top). */
static bool addr_next(uint8_t *a, size_t len)
{
        for (size_t i = len; i > 0; i--)
                if (++a[i - 1] != 0)
                        return true;
        return false;
}

/* An interval set's elements: each prefix is a start element and an end
 * element (the first address after it); adjacent prefixes merge, and a
 * leading end element at 0 closes the range below the first, as nft does. */
static void interval_elements(NftBatch *b, const char *table, const char *set, const IpPrefix *v, size_t n,
                              int family)
{
        Elems x = {.b = b, .table = table, .set = set, .add = true};
        uint32_t len = family == AF_INET ? 4 : 16;
        uint8_t zero[16] = {}, end[16];
        bool first = true, open = false;

        text(b, "add element inet %s %s { ", table, set);
        if (b->text)
                print_prefixes(b->text, v, n, family);
        text(b, " }\n");
        for (size_t i = 0; i < n; i++) {
                uint8_t start[16], last[16];

                if (v[i].family != family)
                        continue;
                memcpy(start, v[i].addr.bytes, len);
                memcpy(last, v[i].addr.bytes, len);
                for (unsigned bit = v[i].prefixlen; bit < len * 8; bit++)
                        last[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
                if (first && memcmp(start, zero, len) != 0)
                        elems_put(&x, zero, len, NFT_SET_ELEM_INTERVAL_END, NULL);
                if (!first && open && memcmp(start, end, len) == 0) {
                        /* adjacent: extend the open interval */
                } else {
                        if (open)
                                elems_put(&x, end, len, NFT_SET_ELEM_INTERVAL_END, NULL);
                        elems_put(&x, start, len, 0, NULL);
                }
                first = false;
                memcpy(end, last, len);
                open = addr_next(end, len);
        }
        if (open)
                elems_put(&x, end, len, NFT_SET_ELEM_INTERVAL_END, NULL);
        elems_flush(&x);
}

/* --- what kvnetd composes -------------------------------------------------- */

void nft_batch_skeleton(NftBatch *b, const char *table)
{
        Rule rule;

        text(b, "add table inet %s { comment \"kvnetd: egress SNAT, managed by kvnetd\" ; }\n", table);
        put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE, table, "kvnetd: egress SNAT, managed by kvnetd");
        text(b, "add map inet %s pod4 { type ipv4_addr : verdict ; }\n", table);
        put_set(b, table, "pod4", NFT_TYPE_IPADDR, 4, 0, true);
        text(b, "add map inet %s pod6 { type ipv6_addr : verdict ; }\n", table);
        put_set(b, table, "pod6", NFT_TYPE_IP6ADDR, 16, 0, true);
        text(b,
             "add chain inet %s postrouting { type nat hook postrouting priority srcnat - 10 ; policy "
             "accept ; }\n",
             table);
        put_chain(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, table, "postrouting", NULL, true);
        /* The rules only where the chain is new: "add rule" would append a
         * second copy. A table being created has none; a rebuild deletes
         * the table first. */
        text(b, "add rule inet %s postrouting ip saddr vmap @pod4\n", table);
        rule_begin(b, &rule, table, "postrouting");
        e_nfproto(&rule, AF_INET);
        e_payload(&rule, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
        e_lookup(&rule, NFT_REG_1, "pod4", true, false);
        rule_end(b, &rule, NULL);
        text(b, "add rule inet %s postrouting ip6 saddr vmap @pod6\n", table);
        rule_begin(b, &rule, table, "postrouting");
        e_nfproto(&rule, AF_INET6);
        e_payload(&rule, NFT_PAYLOAD_NETWORK_HEADER, 8, 16, NFT_REG_1);
        e_lookup(&rule, NFT_REG_1, "pod6", true, false);
        rule_end(b, &rule, NULL);
}

void nft_batch_delete_table(NftBatch *b, const char *table)
{
        text(b, "delete table inet %s\n", table);
        put_table(b, NFT_MSG_DELTABLE, 0, table, NULL);
}

unsigned nft_policy_sets(const EgressPolicy *p)
{
        unsigned sets = 0;

        if (any_of_family(p->allowed, p->n_allowed, AF_INET))
                sets |= NFT_SET_AL4;
        if (any_of_family(p->allowed, p->n_allowed, AF_INET6))
                sets |= NFT_SET_AL6;
        if (p->n_ports > 0)
                sets |= NFT_SET_PORTS;
        return sets;
}

static const struct {
        unsigned bit;
        const char *suffix;
} set_names[] = {
        {NFT_SET_AL4, "al4"}, {NFT_SET_AL6, "al6"}, {NFT_SET_PORTS, "ports"},
        {NFT_SET_EX4, "ex4"}, {NFT_SET_EX6, "ex6"},
};

static void set_name(const char *chain, const char *suffix, char ret[static 32])
{
        snprintf(ret, 32, "%s-%s", chain, suffix);
}

/* The excluded and denied networks, normalised together (they do the same
 * thing) so that no two overlap. */
static IpPrefix *exclusions(const EgressPolicy *p, size_t *ret_n)
{
        size_t n = p->n_excluded + p->n_denied;
        IpPrefix *ex = calloc(MAX(n, (size_t)1), sizeof(IpPrefix));

        if (!ex)
                return NULL;
        if (p->n_excluded)
                memcpy(ex, p->excluded, p->n_excluded * sizeof(IpPrefix));
        if (p->n_denied)
                memcpy(ex + p->n_excluded, p->denied, p->n_denied * sizeof(IpPrefix));
        prefixes_normalize(ex, &n);
        *ret_n = n;
        return ex;
}

/* The service's sets' contents and rules; the fingerprint is a hash of
 * their text. With b == NULL only the text is written (to f). */
static int service_content(NftBatch *b, const char *table, const char *chain, const char *key,
                           const EgressPolicy *p)
{
        _cleanup_free_ IpPrefix *ex = NULL;
        char buf[IP_PREFIX_STRING_MAX], name[32];
        unsigned sets = nft_policy_sets(p);
        size_t n_ex;
        Rule rule;

        ex = exclusions(p, &n_ex);
        if (!ex)
                return -ENOMEM;

        if (sets & NFT_SET_AL4) {
                set_name(chain, "al4", name);
                interval_elements(b, table, name, p->allowed, p->n_allowed, AF_INET);
        }
        if (sets & NFT_SET_AL6) {
                set_name(chain, "al6", name);
                interval_elements(b, table, name, p->allowed, p->n_allowed, AF_INET6);
        }
        if (sets & NFT_SET_PORTS) {
                Elems x = {.b = b, .table = table, .set = name, .add = true};

                set_name(chain, "ports", name);
                text(b, "add element inet %s %s { ", table, name);
                for (size_t i = 0; i < p->n_ports; i++) {
                        /* Two 32-bit registers: the protocol byte, then
                         * the port in network order. */
                        uint8_t k[8] = {};
                        uint16_t port = htons(p->ports[i].port);

                        text(b, "%s%s . %u", i ? ", " : "", l4_proto_to_string(p->ports[i].proto),
                             p->ports[i].port);
                        k[0] = p->ports[i].proto == L4_PROTO_TCP   ? IPPROTO_TCP
                               : p->ports[i].proto == L4_PROTO_UDP ? IPPROTO_UDP
                                                                   : IPPROTO_SCTP;
                        memcpy(k + 4, &port, 2);
                        elems_put(&x, k, sizeof(k), 0, NULL);
                }
                text(b, " }\n");
                elems_flush(&x);
        }

        text(b, "add rule inet %s %s counter comment \"%s\"\n", table, chain, key);
        rule_begin(b, &rule, table, chain);
        e_counter(&rule);
        rule_end(b, &rule, key);
        for (size_t i = 0; i < n_ex; i++) {
                text(b, "add rule inet %s %s ct original %s daddr %s return\n", table, chain,
                     ex[i].family == AF_INET ? "ip" : "ip6", ip_prefix_to_string(&ex[i], buf));
                rule_begin(b, &rule, table, chain);
                e_daddr_prefix(&rule, &ex[i]);
                e_return(&rule);
                rule_end(b, &rule, NULL);
        }
        if (p->n_allowed > 0)
                /* "Only these destinations": a family with no allowed
                 * network is not SNATed at all. */
                for (int k = 0; k < 2; k++) {
                        int family = k == 0 ? AF_INET : AF_INET6;
                        unsigned bit = k == 0 ? NFT_SET_AL4 : NFT_SET_AL6;
                        const char *fam = k == 0 ? "ipv4" : "ipv6", *ip = k == 0 ? "ip" : "ip6";

                        set_name(chain, k == 0 ? "al4" : "al6", name);
                        rule_begin(b, &rule, table, chain);
                        e_nfproto(&rule, family);
                        if (sets & bit) {
                                text(b,
                                     "add rule inet %s %s meta nfproto %s ct original %s daddr != @%s "
                                     "return\n",
                                     table, chain, fam, ip, name);
                                e_ct_daddr(&rule, family);
                                e_lookup(&rule, NFT_REG_1, name, false, true);
                        } else
                                text(b, "add rule inet %s %s meta nfproto %s return\n", table, chain, fam);
                        e_return(&rule);
                        rule_end(b, &rule, NULL);
                }
        if (sets & NFT_SET_PORTS) {
                /* Only the listed protocol+port pairs; ICMP never matches. */
                set_name(chain, "ports", name);
                text(b, "add rule inet %s %s meta l4proto . th dport != @%s return\n", table, chain, name);
                rule_begin(b, &rule, table, chain);
                e_meta(&rule, NFT_META_L4PROTO, NFT_REG_1);
                e_payload(&rule, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_01);
                e_lookup(&rule, NFT_REG_1, name, false, true);
                e_return(&rule);
                rule_end(b, &rule, NULL);
        }
        if (p->vip4.family == AF_INET) {
                text(b, "add rule inet %s %s meta nfproto ipv4 counter snat ip to %s\n", table, chain,
                     ip_addr_to_string(&p->vip4, buf));
                rule_begin(b, &rule, table, chain);
                e_nfproto(&rule, AF_INET);
                e_snat(&rule, &p->vip4);
                rule_end(b, &rule, NULL);
        }
        if (p->vip6.family == AF_INET6) {
                text(b, "add rule inet %s %s meta nfproto ipv6 counter snat ip6 to %s\n", table, chain,
                     ip_addr_to_string(&p->vip6, buf));
                rule_begin(b, &rule, table, chain);
                e_nfproto(&rule, AF_INET6);
                e_snat(&rule, &p->vip6);
                rule_end(b, &rule, NULL);
        }
        return 0;
}

uint64_t nft_policy_fingerprint(const char *table, const char *chain, const char *key, const EgressPolicy *p)
{
        _cleanup_free_ char *s = NULL;
        NftBatch b = {};
        size_t n = 0;
        int r;

        b.text = open_memstream(&s, &n);
        if (!b.text)
                return 0; /* never matches a stored fingerprint: forces a rewrite */
        r = service_content(&b, table, chain, key, p);
        if (fclose(b.text) != 0 || r < 0)
                return 0;
        return fnv1a(s, n) | 1;
}

void nft_batch_service(NftBatch *b, const char *table, const char *chain, const char *key,
                       const EgressPolicy *p, bool exists, unsigned old_sets)
{
        static const char *const set_types[] = {"ipv4_addr ; flags interval", "ipv6_addr ; flags interval",
                                                "inet_proto . inet_service"};
        unsigned sets = nft_policy_sets(p);
        uint64_t fp = nft_policy_fingerprint(table, chain, key, p);
        char name[32], comment[32];
        Rule rule;

        if (fp == 0)
                return oom(b);
        if (exists) {
                /* Replace in place, inside the one transaction: no packet
                 * ever sees the chain empty. */
                text(b, "flush chain inet %s %s\n", table, chain);
                put_flush_chain(b, table, chain);
        } else {
                text(b, "add chain inet %s %s { comment \"%s\" ; }\n", table, chain, key);
                put_chain(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, table, chain, key, false);
                old_sets = 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(set_names); i++) {
                unsigned bit = set_names[i].bit;

                set_name(chain, set_names[i].suffix, name);
                if ((old_sets & bit) && !(sets & bit)) {
                        text(b, "delete set inet %s %s\n", table, name);
                        put_set_del(b, table, name, false);
                } else if (old_sets & bit) {
                        text(b, "flush set inet %s %s\n", table, name);
                        put_set_del(b, table, name, true);
                } else if (sets & bit) {
                        text(b, "add set inet %s %s { type %s ; }\n", table, name, set_types[i]);
                        if (bit == NFT_SET_PORTS)
                                put_set(b, table, name,
                                        NFT_TYPE_INET_PROTOCOL << NFT_TYPE_BITS | NFT_TYPE_INET_SERVICE, 8,
                                        0, false);
                        else
                                put_set(b, table, name,
                                        bit == NFT_SET_AL4 ? NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR,
                                        bit == NFT_SET_AL4 ? 4 : 16, NFT_SET_INTERVAL, false);
                }
        }
        if (service_content(b, table, chain, key, p) < 0)
                return oom(b);
        snprintf(comment, sizeof(comment), "fp=%016llx", (unsigned long long)fp);
        text(b, "add rule inet %s %s return comment \"%s\"\n", table, chain, comment);
        rule_begin(b, &rule, table, chain);
        e_return(&rule);
        rule_end(b, &rule, comment);
}

static void pods_family(NftBatch *b, const char *table, const IpAddr *pods, size_t n, const char *chain,
                        int family)
{
        const char *map = family == AF_INET ? "pod4" : "pod6";
        Elems x = {.b = b, .table = table, .set = map, .add = chain != NULL};
        bool first = true;
        char buf[INET6_ADDRSTRLEN];

        for (size_t i = 0; i < n; i++) {
                if (pods[i].family != family)
                        continue;
                if (b->text) {
                        if (first)
                                text(b, "%s element inet %s %s { ", chain ? "add" : "delete", table, map);
                        else
                                fputs(", ", b->text);
                        fputs(ip_addr_to_string(&pods[i], buf), b->text);
                        if (chain)
                                text(b, " : goto %s", chain);
                }
                first = false;
                elems_put(&x, pods[i].addr.bytes, family == AF_INET ? 4 : 16, 0, chain);
        }
        if (!first && b->text)
                fputs(" }\n", b->text);
        elems_flush(&x);
}

void nft_batch_pods(NftBatch *b, const char *table, const IpAddr *pods, size_t n, const char *chain)
{
        pods_family(b, table, pods, n, chain, AF_INET);
        pods_family(b, table, pods, n, chain, AF_INET6);
}

void nft_batch_remove_service(NftBatch *b, const char *table, const char *chain, unsigned sets)
{
        char name[32];

        text(b, "flush chain inet %s %s\n", table, chain);
        put_flush_chain(b, table, chain);
        text(b, "delete chain inet %s %s\n", table, chain);
        put_chain(b, NFT_MSG_DELCHAIN, 0, table, chain, NULL, false);
        for (size_t i = 0; i < ELEMENTSOF(set_names); i++)
                if (sets & set_names[i].bit) {
                        set_name(chain, set_names[i].suffix, name);
                        text(b, "delete set inet %s %s\n", table, name);
                        put_set_del(b, table, name, false);
                }
}

/* --- the transaction ----------------------------------------------------- */

int nft_socket_open(struct mnl_socket **ret)
{
        struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
        int one = 1;

        if (!nl)
                return -errno;
        if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                int r = -errno;
                mnl_socket_close(nl);
                return r;
        }
        /* Errors without a copy of the (possibly large) request. */
        (void)mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
        (void)mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one));
        *ret = nl;
        return 0;
}

void nft_socket_close(struct mnl_socket *nl)
{
        if (nl)
                mnl_socket_close(nl);
}

static const char *ext_ack_msg(const struct nlmsghdr *nlh)
{
        const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
        const struct nlattr *attr;
        size_t off = sizeof(*err);

        if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
                return NULL;
        if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
                off += mnl_nlmsg_get_payload_len(&err->msg);
        if (off >= mnl_nlmsg_get_payload_len(nlh))
                return NULL;
        mnl_attr_for_each_payload((const void *)((const char *)err + off),
                                  mnl_nlmsg_get_payload_len(nlh) -
                                          off) if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
                                                   mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >=
                                                           0) return mnl_attr_get_str(attr);
        return NULL;
}

int nft_commit(struct mnl_socket *nl, NftBatch *b, char **ret_error)
{
        _cleanup_free_ struct iovec *iov = NULL;
        struct sockaddr_nl snl = {.nl_family = AF_NETLINK};
        struct msghdr msg = {};
        char buf[MNL_SOCKET_BUFFER_SIZE];
        size_t total = 0;
        int n_iov, sndbuf = 0, err = 0, err_seq = 0;
        socklen_t sl = sizeof(sndbuf);
        ssize_t len;
        char detail[256] = "";

        if (b->error < 0) {
                if (ret_error)
                        *ret_error = strdup("out of memory building the nft transaction");
                return b->error;
        }
        if (b->n_msgs == 0)
                return 0;
        nftnl_batch_end(nftnl_batch_buffer(b->nl), b->seq++);
        if (nftnl_batch_update(b->nl) < 0)
                return -ENOMEM;
        n_iov = nftnl_batch_iovec_len(b->nl);
        iov = calloc(n_iov, sizeof(*iov));
        if (!iov)
                return -ENOMEM;
        nftnl_batch_iovec(b->nl, iov, n_iov);
        for (int i = 0; i < n_iov; i++)
                total += iov[i].iov_len;
        /* The kernel takes the batch as one message: the send buffer must
         * hold it whole. */
        if (getsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) == 0 &&
            (size_t)sndbuf < total + 4096) {
                int want = (int)MIN(total + 4096, (size_t)INT32_MAX);
                if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want)) < 0)
                        (void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
        }
        msg = (struct msghdr){
                .msg_name = &snl, .msg_namelen = sizeof(snl), .msg_iov = iov, .msg_iovlen = n_iov};
        if (sendmsg(mnl_socket_get_fd(nl), &msg, 0) < 0) {
                err = -errno;
                if (ret_error)
                        (void)asprintf(ret_error, "nft transaction not sent: %s", strerror(-err));
                return err;
        }
        /* The kernel has run the whole batch before sendmsg() returned:
         * every answer is queued already. No message asks for an
         * acknowledgement, so what is queued are the errors of the failing
         * messages, if any. */
        while ((len = recv(mnl_socket_get_fd(nl), buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
                const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
                int rem = (int)len;

                for (; mnl_nlmsg_ok(nlh, rem); nlh = mnl_nlmsg_next(nlh, &rem)) {
                        const struct nlmsgerr *e;

                        if (nlh->nlmsg_type != NLMSG_ERROR)
                                continue;
                        e = mnl_nlmsg_get_payload(nlh);
                        if (e->error != 0 && err == 0) {
                                const char *m = ext_ack_msg(nlh);
                                err = e->error;
                                err_seq = (int)(nlh->nlmsg_seq - b->first_seq);
                                if (m)
                                        snprintf(detail, sizeof(detail), " (%s)", m);
                        }
                }
        }
        if (len < 0 && errno == ENOBUFS && err == 0)
                err = -ENOBUFS; /* answers lost: do not claim success */
        if (err < 0) {
                if (ret_error)
                        (void)asprintf(ret_error, "nft transaction failed at message %d of %zu: %s%s",
                                       err_seq, b->n_msgs, strerror(-err), detail);
                log_debug("nft transaction of %zu messages failed: %s%s", b->n_msgs, strerror(-err), detail);
                return -EIO;
        }
        return 0;
}

int nft_get_gen(struct mnl_socket *nl, uint32_t *ret)
{
        char buf[MNL_SOCKET_BUFFER_SIZE];
        uint32_t seq = (uint32_t)time(NULL);
        struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, seq);
        struct nftnl_gen *g = nftnl_gen_alloc();
        bool done = false;
        int r = 0;

        if (!g)
                return -ENOMEM;
        if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
                r = -errno;
                goto finish;
        }
        /* The answer, then the acknowledgement. Anything else on the
         * socket (another sequence number) is skipped, message by message. */
        while (!done) {
                ssize_t len = mnl_socket_recvfrom(nl, buf, sizeof(buf));
                int rem;

                if (len < 0) {
                        r = -errno;
                        goto finish;
                }
                rem = (int)len;
                for (nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, rem); nlh = mnl_nlmsg_next(nlh, &rem)) {
                        if (nlh->nlmsg_seq != seq)
                                continue;
                        if (nlh->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
                                r = e->error;
                                done = true;
                                break;
                        }
                        if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWGEN &&
                            nftnl_gen_nlmsg_parse(nlh, g) < 0) {
                                r = -EBADMSG;
                                goto finish;
                        }
                }
        }
        if (r < 0)
                goto finish;
        if (!nftnl_gen_is_set(g, NFTNL_GEN_ID)) {
                r = -EBADMSG;
                goto finish;
        }
        *ret = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
finish:
        nftnl_gen_free(g);
        return r;
}

/* --- reading the table back ------------------------------------------------ */

void nft_table_info_done(NftTableInfo *t)
{
        for (size_t i = 0; i < t->n_chains; i++) {
                free(t->chains[i].key);
                free(t->chains[i].pods);
        }
        free(t->chains);
        strmap_done(&t->index);
        *t = (NftTableInfo){};
}

const NftChainInfo *nft_table_info_find(const NftTableInfo *t, const char *chain)
{
        uintptr_t i = (uintptr_t)strmap_get(&t->index, chain);
        return i ? &t->chains[i - 1] : NULL;
}

static NftChainInfo *table_chain(NftTableInfo *t, const char *name, bool create)
{
        uintptr_t i = (uintptr_t)strmap_get(&t->index, name);
        NftChainInfo *n;

        if (i)
                return &t->chains[i - 1];
        if (!create || strlen(name) >= sizeof(t->chains[0].chain))
                return NULL;
        if (ARRAY_RESERVE(t->chains, t->cap_chains, t->n_chains + 1) < 0)
                return NULL;
        n = &t->chains[t->n_chains];
        *n = (NftChainInfo){};
        strcpy(n->chain, name);
        /* The key points into the array, which may move: re-index then. */
        if (strmap_put(&t->index, n->chain, (void *)(uintptr_t)(t->n_chains + 1)) < 0)
                return NULL;
        t->n_chains++;
        return n;
}

static int table_reindex(NftTableInfo *t)
{
        strmap_done(&t->index);
        for (size_t i = 0; i < t->n_chains; i++)
                if (strmap_put(&t->index, t->chains[i].chain, (void *)(uintptr_t)(i + 1)) < 0)
                        return -ENOMEM;
        return 0;
}

static int list_json(struct nft_ctx *ctx, const char *cmd, json_t **ret)
{
        unsigned flags = nft_ctx_output_get_flags(ctx);
        const char *out;
        json_error_t jerr;
        int r;

        nft_ctx_output_set_flags(ctx, flags | NFT_CTX_OUTPUT_JSON);
        if (nft_ctx_buffer_output(ctx) < 0)
                return -ENOMEM;
        r = nft_run_cmd_from_buffer(ctx, cmd);
        out = nft_ctx_get_output_buffer(ctx);
        nft_ctx_output_set_flags(ctx, flags);
        if (r != 0) {
                (void)nft_ctx_unbuffer_output(ctx);
                return -ENOENT;
        }
        *ret = json_loads(out ? out : "", 0, &jerr);
        (void)nft_ctx_unbuffer_output(ctx);
        return *ret ? 0 : -EBADMSG;
}

static int read_map(NftTableInfo *t, json_t *map, int family)
{
        json_t *elems = json_object_get(map, "elem"), *e;
        size_t i;

        json_array_foreach(elems, i, e)
        {
                const char *addr = json_string_value(json_array_get(e, 0));
                const char *target = json_string_value(
                        json_object_get(json_object_get(json_array_get(e, 1), "goto"), "target"));
                NftChainInfo *c;
                IpAddr a;

                if (!addr || !target || ip_addr_parse(addr, family, &a, NULL) < 0)
                        continue; /* not ours: reconciled away when the service is */
                c = table_chain(t, target, true);
                if (!c)
                        return -ENOMEM;
                if (ARRAY_RESERVE(c->pods, c->cap_pods, c->n_pods + 1) < 0)
                        return -ENOMEM;
                c->pods[c->n_pods++] = a;
        }
        return 0;
}

int nft_read_table(struct nft_ctx *ctx, const char *table, NftTableInfo *ret)
{
        _cleanup_free_ char *cmd = NULL;
        NftTableInfo t = {};
        json_t *j = NULL, *items, *it;
        bool have_pod4 = false, have_pod6 = false, have_base = false;
        size_t i;
        int r = 0;

        if (asprintf(&cmd, "list table inet %s", table) < 0)
                return -ENOMEM;
        r = list_json(ctx, cmd, &j);
        if (r == -ENOENT) {
                *ret = t;
                return 0;
        }
        if (r < 0)
                return r;
        t.exists = true;
        items = json_object_get(j, "nftables");
        /* First the chains and the maps, then what refers to chains. */
        json_array_foreach(items, i, it)
        {
                json_t *o;

                if ((o = json_object_get(it, "map"))) {
                        const char *name = json_string_value(json_object_get(o, "name"));
                        if (streq_ptr(name, "pod4")) {
                                have_pod4 = true;
                                r = read_map(&t, o, AF_INET);
                        } else if (streq_ptr(name, "pod6")) {
                                have_pod6 = true;
                                r = read_map(&t, o, AF_INET6);
                        }
                        if (r < 0)
                                goto fail;
                } else if ((o = json_object_get(it, "chain"))) {
                        const char *name = json_string_value(json_object_get(o, "name"));
                        if (streq_ptr(name, "postrouting"))
                                have_base = true;
                        else if (name && strncmp(name, "svc_", 4) == 0 && !table_chain(&t, name, true)) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
        }
        r = table_reindex(&t);
        if (r < 0)
                goto fail;
        json_array_foreach(items, i, it)
        {
                json_t *o;

                if ((o = json_object_get(it, "set"))) {
                        const char *name = json_string_value(json_object_get(o, "name"));
                        const char *dash = name ? strrchr(name, '-') : NULL;
                        char chain[24];
                        NftChainInfo *c;

                        if (!dash || (size_t)(dash - name) >= sizeof(chain))
                                continue;
                        memcpy(chain, name, dash - name);
                        chain[dash - name] = 0;
                        c = table_chain(&t, chain, false);
                        if (!c)
                                continue;
                        for (size_t k = 0; k < ELEMENTSOF(set_names); k++)
                                if (streq(dash + 1, set_names[k].suffix))
                                        c->sets |= set_names[k].bit;
                } else if ((o = json_object_get(it, "rule"))) {
                        const char *chain = json_string_value(json_object_get(o, "chain"));
                        const char *comment = json_string_value(json_object_get(o, "comment"));
                        NftChainInfo *c;
                        unsigned long long fp;

                        if (!chain || !comment || !(c = table_chain(&t, chain, false)))
                                continue;
                        if (sscanf(comment, "fp=%llx", &fp) == 1)
                                c->fingerprint = fp;
                        else if (!c->key && service_key_parse(comment, NULL, NULL, NULL) >= 0) {
                                char want[24];
                                /* The key must hash to the chain's name, or
                                 * it is not a chain we made. */
                                nft_chain_name(comment, want);
                                if (streq(want, chain) && !(c->key = strdup(comment))) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                        }
                }
        }
        t.skeleton_ok = have_pod4 && have_pod6 && have_base;
        for (size_t k = 0; k < t.n_chains; k++)
                if (t.chains[k].n_pods > 1)
                        qsort(t.chains[k].pods, t.chains[k].n_pods, sizeof(IpAddr),
                              (int (*)(const void *, const void *))ip_addr_compare);
        json_decref(j);
        *ret = t;
        return 0;
fail:
        json_decref(j);
        nft_table_info_done(&t);
        return r;
}
