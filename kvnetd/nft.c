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

static uint64_t fnv1a_from(uint64_t h, const char *s, size_t n)
{

        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char)s[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

static uint64_t fnv1a(const char *s, size_t n)
{
        return fnv1a_from(0xcbf29ce484222325ULL, s, n);
}

void nft_legacy_chain_name(const char *key, char ret[static NFT_NAME_MAX])
{
        snprintf(ret, NFT_NAME_MAX, "svc_%016llx", (unsigned long long)fnv1a(key, strlen(key)));
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

/* A set of key_type (nft datatype id) and key_len bytes, with flags; a
 * map if data_type (NFT_DATA_VERDICT, or an nft datatype id of data_len
 * bytes). */
static void put_set(NftBatch *b, const char *table, const char *name, uint32_t key_type, uint32_t key_len,
                    uint32_t flags, uint32_t data_type, uint32_t data_len)
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
        nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags | (data_type ? NFT_SET_MAP : 0));
        if (data_type)
                nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, data_type);
        if (data_len)
                nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, data_len);
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

/* A lookup in set; dreg 0: a plain set, else a map's data to dreg. */
static void e_lookup(Rule *rule, uint32_t sreg, const char *set, uint32_t dreg, bool inverted)
{
        struct nftnl_expr *e = rule_expr(rule, "lookup");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
        if (dreg)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, dreg);
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

static void e_goto(Rule *rule, const char *chain)
{
        struct nftnl_expr *e = rule_expr(rule, "immediate");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NFT_GOTO);
        nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
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

/* counter snat ip[6] to ip[6] saddr map @vip4/6 */
static void e_snat_map(Rule *rule, int family)
{
        struct nftnl_expr *e;

        e_counter(rule);
        if (family == AF_INET)
                e_payload(rule, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
        else
                e_payload(rule, NFT_PAYLOAD_NETWORK_HEADER, 8, 16, NFT_REG_1);
        e_lookup(rule, NFT_REG_1, family == AF_INET ? "vip4" : "vip6", NFT_REG_1, false);
        e = rule_expr(rule, "nat");
        if (e) {
                nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
                nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY,
                                   family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6);
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

/* One element: key of len bytes, flags, and for a map a goto to chain or
 * data of len bytes; a comment if given. */
static void elems_put(Elems *x, const void *key, uint32_t len, uint32_t flags, const char *chain,
                      const void *data, const char *comment)
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
        if (data)
                nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, data, len);
        if (comment) {
                struct nftnl_udata_buf *u = comment_udata(NFTNL_UDATA_SET_ELEM_COMMENT, comment);
                if (!u) {
                        nftnl_set_elem_free(e);
                        return oom(x->b);
                }
                nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(u),
                                   nftnl_udata_buf_len(u));
                nftnl_udata_buf_free(u);
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
                        elems_put(&x, zero, len, NFT_SET_ELEM_INTERVAL_END, NULL, NULL, NULL);
                if (!first && open && memcmp(start, end, len) == 0) {
                        /* adjacent: extend the open interval */
                } else {
                        if (open)
                                elems_put(&x, end, len, NFT_SET_ELEM_INTERVAL_END, NULL, NULL, NULL);
                        elems_put(&x, start, len, 0, NULL, NULL, NULL);
                }
                first = false;
                memcpy(end, last, len);
                open = addr_next(end, len);
        }
        if (open)
                elems_put(&x, end, len, NFT_SET_ELEM_INTERVAL_END, NULL, NULL, NULL);
        elems_flush(&x);
}

/* --- what kvnetd composes -------------------------------------------------- */

static void dispatch_rule(NftBatch *b, const char *table, int family, const char *set, const char *chain,
                          bool vmap)
{
        Rule rule;

        rule_begin(b, &rule, table, "postrouting");
        e_nfproto(&rule, family);
        if (family == AF_INET)
                e_payload(&rule, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
        else
                e_payload(&rule, NFT_PAYLOAD_NETWORK_HEADER, 8, 16, NFT_REG_1);
        e_lookup(&rule, NFT_REG_1, set, vmap ? NFT_REG_VERDICT : 0, false);
        if (!vmap)
                e_goto(&rule, chain);
        rule_end(b, &rule, NULL);
}

void nft_batch_skeleton(NftBatch *b, const char *table)
{
        text(b, "add table inet %s { comment \"kvnetd: egress SNAT, managed by kvnetd\" ; }\n", table);
        put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE, table, "kvnetd: egress SNAT, managed by kvnetd");
        text(b, "add map inet %s vip4 { type ipv4_addr : ipv4_addr ; }\n", table);
        put_set(b, table, "vip4", NFT_TYPE_IPADDR, 4, 0, NFT_TYPE_IPADDR, 4);
        text(b, "add map inet %s vip6 { type ipv6_addr : ipv6_addr ; }\n", table);
        put_set(b, table, "vip6", NFT_TYPE_IP6ADDR, 16, 0, NFT_TYPE_IP6ADDR, 16);
        text(b,
             "add chain inet %s postrouting { type nat hook postrouting priority srcnat - 10 ; policy "
             "accept ; }\n",
             table);
        put_chain(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, table, "postrouting", NULL, true);
}

void nft_batch_dispatch(NftBatch *b, const char *table, bool legacy, const char *const *classes, size_t n)
{
        char set[32];

        text(b, "flush chain inet %s postrouting\n", table);
        put_flush_chain(b, table, "postrouting");
        if (legacy) {
                text(b, "add rule inet %s postrouting ip saddr vmap @pod4\n", table);
                dispatch_rule(b, table, AF_INET, "pod4", NULL, true);
                text(b, "add rule inet %s postrouting ip6 saddr vmap @pod6\n", table);
                dispatch_rule(b, table, AF_INET6, "pod6", NULL, true);
        }
        for (size_t i = 0; i < n; i++) {
                snprintf(set, sizeof(set), "%s_p4", classes[i]);
                text(b, "add rule inet %s postrouting ip saddr @%s goto %s\n", table, set, classes[i]);
                dispatch_rule(b, table, AF_INET, set, classes[i], false);
                snprintf(set, sizeof(set), "%s_p6", classes[i]);
                text(b, "add rule inet %s postrouting ip6 saddr @%s goto %s\n", table, set, classes[i]);
                dispatch_rule(b, table, AF_INET6, set, classes[i], false);
        }
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

/* A class's sets: cls_<h>_<suffix>; a legacy chain's: svc_<h>-<suffix>. */
static void set_name(const char *chain, const char *suffix, char ret[static 32])
{
        snprintf(ret, 32, "%s%c%s", chain, strncmp(chain, "svc_", 4) == 0 ? '-' : '_', suffix);
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

/* The class's optional sets' contents and its rules (all but the last).
 * With a text-only batch, only the text. */
static int class_content(NftBatch *b, const char *table, const char *chain, const EgressPolicy *p)
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
                        elems_put(&x, k, sizeof(k), 0, NULL, NULL, NULL);
                }
                text(b, " }\n");
                elems_flush(&x);
        }

        text(b, "add rule inet %s %s counter\n", table, chain);
        rule_begin(b, &rule, table, chain);
        e_counter(&rule);
        rule_end(b, &rule, NULL);
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
                                e_lookup(&rule, NFT_REG_1, name, 0, true);
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
                e_lookup(&rule, NFT_REG_1, name, 0, true);
                e_return(&rule);
                rule_end(b, &rule, NULL);
        }
        /* The VIP of the pod's service, from the maps: every pod in the
         * class's sets has one (a miss would end the rule, not SNAT). */
        text(b, "add rule inet %s %s meta nfproto ipv4 counter snat ip to ip saddr map @vip4\n", table,
             chain);
        rule_begin(b, &rule, table, chain);
        e_nfproto(&rule, AF_INET);
        e_snat_map(&rule, AF_INET);
        rule_end(b, &rule, NULL);
        text(b, "add rule inet %s %s meta nfproto ipv6 counter snat ip6 to ip6 saddr map @vip6\n", table,
             chain);
        rule_begin(b, &rule, table, chain);
        e_nfproto(&rule, AF_INET6);
        e_snat_map(&rule, AF_INET6);
        rule_end(b, &rule, NULL);
        return 0;
}

int nft_policy_class(const EgressPolicy *p, char name[static NFT_NAME_MAX], uint64_t *ret_fingerprint,
                     char **ret_text)
{
        _cleanup_free_ char *s = NULL;
        NftBatch b = {};
        size_t n = 0;
        int r;

        /* The text with names of no table and no class: the class's name
         * is a hash of what it does. */
        b.text = open_memstream(&s, &n);
        if (!b.text)
                return -ENOMEM;
        r = class_content(&b, "t", "c", p);
        if (fclose(b.text) != 0 || r < 0)
                return -ENOMEM;
        snprintf(name, NFT_NAME_MAX, "cls_%016llx", (unsigned long long)fnv1a(s, n));
        if (ret_fingerprint)
                /* A second hash of the same text (another offset basis). */
                *ret_fingerprint = fnv1a_from(0x84222325cbf29ce4ULL, s, n) | 1;
        if (ret_text)
                *ret_text = TAKE_PTR(s);
        return 0;
}

static const char *const set_types[] = {"ipv4_addr ; flags interval", "ipv6_addr ; flags interval",
                                        "inet_proto . inet_service"};

void nft_batch_class(NftBatch *b, const char *table, const char *name, const EgressPolicy *p, bool exists,
                     unsigned old_sets)
{
        unsigned sets = nft_policy_sets(p);
        char set[32], comment[32], want[NFT_NAME_MAX];
        uint64_t fp;
        Rule rule;

        if (nft_policy_class(p, want, &fp, NULL) < 0 || !streq(want, name))
                return oom(b);
        if (exists) {
                /* In place, inside the one transaction: no packet ever
                 * sees the chain empty. */
                text(b, "flush chain inet %s %s\n", table, name);
                put_flush_chain(b, table, name);
        } else {
                text(b, "add chain inet %s %s\n", table, name);
                put_chain(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, table, name, NULL, false);
                set_name(name, "p4", set);
                text(b, "add set inet %s %s { type ipv4_addr ; }\n", table, set);
                put_set(b, table, set, NFT_TYPE_IPADDR, 4, 0, 0, 0);
                set_name(name, "p6", set);
                text(b, "add set inet %s %s { type ipv6_addr ; }\n", table, set);
                put_set(b, table, set, NFT_TYPE_IP6ADDR, 16, 0, 0, 0);
                old_sets = 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(set_types); i++) {
                unsigned bit = set_names[i].bit;

                set_name(name, set_names[i].suffix, set);
                if ((old_sets & bit) && !(sets & bit)) {
                        text(b, "delete set inet %s %s\n", table, set);
                        put_set_del(b, table, set, false);
                } else if (old_sets & bit) {
                        text(b, "flush set inet %s %s\n", table, set);
                        put_set_del(b, table, set, true);
                } else if (sets & bit) {
                        text(b, "add set inet %s %s { type %s ; }\n", table, set, set_types[i]);
                        if (bit == NFT_SET_PORTS)
                                put_set(b, table, set,
                                        NFT_TYPE_INET_PROTOCOL << NFT_TYPE_BITS | NFT_TYPE_INET_SERVICE, 8,
                                        0, 0, 0);
                        else
                                put_set(b, table, set,
                                        bit == NFT_SET_AL4 ? NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR,
                                        bit == NFT_SET_AL4 ? 4 : 16, NFT_SET_INTERVAL, 0, 0);
                }
        }
        if (class_content(b, table, name, p) < 0)
                return oom(b);
        snprintf(comment, sizeof(comment), "fp=%016llx", (unsigned long long)fp);
        text(b, "add rule inet %s %s return comment \"%s\"\n", table, name, comment);
        rule_begin(b, &rule, table, name);
        e_return(&rule);
        rule_end(b, &rule, comment);
}

static void remove_chain_and_sets(NftBatch *b, const char *table, const char *chain, unsigned sets)
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

void nft_batch_remove_class(NftBatch *b, const char *table, const char *name, unsigned sets)
{
        char set[32];

        remove_chain_and_sets(b, table, name, sets & (NFT_SET_AL4 | NFT_SET_AL6 | NFT_SET_PORTS));
        set_name(name, "p4", set);
        text(b, "delete set inet %s %s\n", table, set);
        put_set_del(b, table, set, false);
        set_name(name, "p6", set);
        text(b, "delete set inet %s %s\n", table, set);
        put_set_del(b, table, set, false);
}

/* One family's elements of pods in set: keys only, or (vip) map elements
 * to vip; a comment on added ones. */
static void pod_elements(NftBatch *b, const char *table, const char *set, int family, const IpAddr *pods,
                         size_t n, bool add, const char *comment, const IpAddr *vip, const char *chain)
{
        Elems x = {.b = b, .table = table, .set = set, .add = add};
        uint32_t len = family == AF_INET ? 4 : 16;
        bool first = true;
        char buf[INET6_ADDRSTRLEN];

        for (size_t i = 0; i < n; i++) {
                if (pods[i].family != family)
                        continue;
                if (b->text) {
                        if (first)
                                text(b, "%s element inet %s %s { ", add ? "add" : "delete", table, set);
                        else
                                fputs(", ", b->text);
                        fputs(ip_addr_to_string(&pods[i], buf), b->text);
                        if (add && comment)
                                text(b, " comment \"%s\"", comment);
                        if (add && vip)
                                text(b, " : %s", ip_addr_to_string(vip, buf));
                        if (add && chain)
                                text(b, " : goto %s", chain);
                }
                first = false;
                elems_put(&x, pods[i].addr.bytes, len, 0, add ? chain : NULL,
                          add && vip ? vip->addr.bytes : NULL, add ? comment : NULL);
        }
        if (!first && b->text)
                fputs(" }\n", b->text);
        elems_flush(&x);
}

void nft_batch_class_pods(NftBatch *b, const char *table, const char *name, const char *key,
                          const IpAddr *pods, size_t n, bool add)
{
        char set[32];

        set_name(name, "p4", set);
        pod_elements(b, table, set, AF_INET, pods, n, add, key, NULL, NULL);
        set_name(name, "p6", set);
        pod_elements(b, table, set, AF_INET6, pods, n, add, key, NULL, NULL);
}

void nft_batch_vip_pods(NftBatch *b, const char *table, const char *key, const IpAddr *vip4,
                        const IpAddr *vip6, const IpAddr *pods, size_t n, bool add)
{
        if (!add || (vip4 && vip4->family == AF_INET))
                pod_elements(b, table, "vip4", AF_INET, pods, n, add, key, add ? vip4 : NULL, NULL);
        if (!add || (vip6 && vip6->family == AF_INET6))
                pod_elements(b, table, "vip6", AF_INET6, pods, n, add, key, add ? vip6 : NULL, NULL);
}

void nft_batch_legacy_pods(NftBatch *b, const char *table, const IpAddr *pods, size_t n)
{
        pod_elements(b, table, "pod4", AF_INET, pods, n, false, NULL, NULL, NULL);
        pod_elements(b, table, "pod6", AF_INET6, pods, n, false, NULL, NULL, NULL);
}

void nft_batch_remove_legacy(NftBatch *b, const char *table, const char *chain, const IpAddr *pods, size_t n,
                             unsigned sets)
{
        nft_batch_legacy_pods(b, table, pods, n);
        remove_chain_and_sets(b, table, chain, sets);
}

void nft_batch_remove_legacy_maps(NftBatch *b, const char *table)
{
        text(b, "delete map inet %s pod4\n", table);
        put_set_del(b, table, "pod4", false);
        text(b, "delete map inet %s pod6\n", table);
        put_set_del(b, table, "pod6", false);
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
        for (size_t i = 0; i < t->n_services; i++) {
                free(t->services[i].key);
                free(t->services[i].pods);
                free(t->services[i].vips);
        }
        for (size_t i = 0; i < t->n_legacy; i++) {
                free(t->legacy[i].key);
                free(t->legacy[i].pods);
        }
        free(t->classes);
        free(t->services);
        free(t->legacy);
        strmap_done(&t->class_index);
        strmap_done(&t->service_index);
        strmap_done(&t->legacy_index);
        *t = (NftTableInfo){};
}

const NftClassInfo *nft_table_info_class(const NftTableInfo *t, const char *name)
{
        uintptr_t i = (uintptr_t)strmap_get(&t->class_index, name);
        return i ? &t->classes[i - 1] : NULL;
}

const NftServiceInfo *nft_table_info_service(const NftTableInfo *t, const char *key)
{
        uintptr_t i = (uintptr_t)strmap_get(&t->service_index, key);
        return i ? &t->services[i - 1] : NULL;
}

/* Whether name is prefix + 16 lower-case hex digits, and what follows. */
static bool hex_name(const char *name, const char *prefix, const char **ret_rest)
{
        size_t n = strlen(prefix);

        if (!name || strncmp(name, prefix, n) != 0)
                return false;
        for (size_t i = 0; i < 16; i++)
                if (!strchr("0123456789abcdef", name[n + i]) || name[n + i] == 0)
                        return false;
        *ret_rest = name + n + 16;
        return true;
}

/* The entries grow by one; the maps hold indexes, not pointers. */
static NftClassInfo *info_class(NftTableInfo *t, const char *name, size_t len)
{
        char buf[NFT_NAME_MAX];
        uintptr_t i;

        if (len >= sizeof(buf))
                return NULL;
        memcpy(buf, name, len);
        buf[len] = 0;
        i = (uintptr_t)strmap_get(&t->class_index, buf);
        if (i)
                return &t->classes[i - 1];
        if (ARRAY_RESERVE(t->classes, t->cap_classes, t->n_classes + 1) < 0 ||
            strmap_put(&t->class_index, buf, (void *)(uintptr_t)(t->n_classes + 1)) < 0)
                return NULL;
        t->classes[t->n_classes] = (NftClassInfo){};
        strcpy(t->classes[t->n_classes].name, buf);
        return &t->classes[t->n_classes++];
}

static NftServiceInfo *info_service(NftTableInfo *t, const char *key)
{
        uintptr_t i = (uintptr_t)strmap_get(&t->service_index, key);
        char *k;

        if (i)
                return &t->services[i - 1];
        if (ARRAY_RESERVE(t->services, t->cap_services, t->n_services + 1) < 0)
                return NULL;
        k = strdup(key);
        if (!k || strmap_put(&t->service_index, key, (void *)(uintptr_t)(t->n_services + 1)) < 0) {
                free(k);
                return NULL;
        }
        t->services[t->n_services] = (NftServiceInfo){.key = k};
        return &t->services[t->n_services++];
}

static NftLegacyInfo *info_legacy(NftTableInfo *t, const char *chain, size_t len)
{
        char buf[NFT_NAME_MAX];
        uintptr_t i;

        if (len >= sizeof(buf))
                return NULL;
        memcpy(buf, chain, len);
        buf[len] = 0;
        i = (uintptr_t)strmap_get(&t->legacy_index, buf);
        if (i)
                return &t->legacy[i - 1];
        if (ARRAY_RESERVE(t->legacy, t->cap_legacy, t->n_legacy + 1) < 0 ||
            strmap_put(&t->legacy_index, buf, (void *)(uintptr_t)(t->n_legacy + 1)) < 0)
                return NULL;
        t->legacy[t->n_legacy] = (NftLegacyInfo){};
        strcpy(t->legacy[t->n_legacy].chain, buf);
        return &t->legacy[t->n_legacy++];
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

/* An element's key: "10.0.0.1", or {"elem": {"val": "10.0.0.1", "comment":
 * "ns/name"}} with a comment. */
static const char *elem_key(json_t *e, const char **ret_comment)
{
        json_t *o = json_object_get(e, "elem");

        *ret_comment = NULL;
        if (!o)
                return json_string_value(e);
        *ret_comment = json_string_value(json_object_get(o, "comment"));
        return json_string_value(json_object_get(o, "val"));
}

/* The service of an element's comment; NULL if it names none. */
static int elem_service(NftTableInfo *t, const char *comment, NftServiceInfo **ret)
{
        *ret = NULL;
        if (!comment || service_key_parse(comment, NULL, NULL, NULL) < 0) {
                t->foreign = "an element with no service key";
                return 0;
        }
        *ret = info_service(t, comment);
        return *ret ? 0 : -ENOMEM;
}

static int read_vip_map(NftTableInfo *t, json_t *map, int family)
{
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(map, "elem"), i, e)
        {
                const char *comment, *pod = elem_key(json_array_get(e, 0), &comment),
                                     *vip = json_string_value(json_array_get(e, 1));
                NftServiceInfo *s;
                NftVipElem v;
                int r;

                if (!pod || !vip || ip_addr_parse(pod, family, &v.pod, NULL) < 0 ||
                    ip_addr_parse(vip, family, &v.vip, NULL) < 0) {
                        t->foreign = "a VIP map element not as kvnetd makes them";
                        continue;
                }
                r = elem_service(t, comment, &s);
                if (r < 0)
                        return r;
                if (!s)
                        continue;
                if (ARRAY_RESERVE(s->vips, s->cap_vips, s->n_vips + 1) < 0)
                        return -ENOMEM;
                s->vips[s->n_vips++] = v;
        }
        return 0;
}

static int read_class_set(NftTableInfo *t, NftClassInfo *c, json_t *set, int family)
{
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(set, "elem"), i, e)
        {
                const char *comment, *pod = elem_key(e, &comment);
                NftServiceInfo *s;
                IpAddr a;
                int r;

                if (!pod || ip_addr_parse(pod, family, &a, NULL) < 0) {
                        t->foreign = "a pod set element not as kvnetd makes them";
                        continue;
                }
                r = elem_service(t, comment, &s);
                if (r < 0)
                        return r;
                if (!s)
                        continue;
                if (!s->cls[0])
                        strcpy(s->cls, c->name);
                else if (!streq(s->cls, c->name))
                        s->split = true;
                if (ARRAY_RESERVE(s->pods, s->cap_pods, s->n_pods + 1) < 0)
                        return -ENOMEM;
                s->pods[s->n_pods++] = a;
        }
        return 0;
}

static int read_legacy_map(NftTableInfo *t, json_t *map, int family)
{
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(map, "elem"), i, e)
        {
                const char *addr = json_string_value(json_array_get(e, 0)), *rest;
                const char *target = json_string_value(
                        json_object_get(json_object_get(json_array_get(e, 1), "goto"), "target"));
                NftLegacyInfo *c;
                IpAddr a;

                if (!addr || !hex_name(target, "svc_", &rest) || *rest ||
                    ip_addr_parse(addr, family, &a, NULL) < 0) {
                        t->foreign = "an old pod map element not as kvnetd made them";
                        continue;
                }
                c = info_legacy(t, target, strlen(target));
                if (!c || ARRAY_RESERVE(c->pods, c->cap_pods, c->n_pods + 1) < 0)
                        return -ENOMEM;
                c->pods[c->n_pods++] = a;
        }
        return 0;
}

static int read_set(NftTableInfo *t, json_t *o)
{
        const char *name = json_string_value(json_object_get(o, "name")), *rest;

        if (hex_name(name, "cls_", &rest)) {
                NftClassInfo *c = info_class(t, name, rest - name);

                if (!c)
                        return -ENOMEM;
                if (streq(rest, "_p4")) {
                        c->p4 = true;
                        return read_class_set(t, c, o, AF_INET);
                }
                if (streq(rest, "_p6")) {
                        c->p6 = true;
                        return read_class_set(t, c, o, AF_INET6);
                }
                for (size_t k = 0; k < 3; k++)
                        if (rest[0] == '_' && streq(rest + 1, set_names[k].suffix)) {
                                c->sets |= set_names[k].bit;
                                return 0;
                        }
        } else if (hex_name(name, "svc_", &rest) && rest[0] == '-') {
                NftLegacyInfo *c = info_legacy(t, name, rest - name);

                if (!c)
                        return -ENOMEM;
                for (size_t k = 0; k < ELEMENTSOF(set_names); k++)
                        if (streq(rest + 1, set_names[k].suffix)) {
                                c->sets |= set_names[k].bit;
                                return 0;
                        }
        }
        t->foreign = "a set kvnetd did not make";
        return 0;
}

/* A base chain rule: "ip[6] saddr @cls_<h>_p4/6 goto cls_<h>", or the old
 * shape's "ip[6] saddr vmap @pod4/6". */
static void read_base_rule(NftTableInfo *t, json_t *o)
{
        json_t *expr = json_object_get(o, "expr");
        json_t *match = json_object_get(json_array_get(expr, 0), "match");
        json_t *left = json_object_get(json_object_get(match, "left"), "payload");
        const char *proto = json_string_value(json_object_get(left, "protocol"));
        const char *field = json_string_value(json_object_get(left, "field"));
        const char *set = json_string_value(json_object_get(match, "right"));
        const char *target = json_string_value(
                json_object_get(json_object_get(json_array_get(expr, 1), "goto"), "target"));
        json_t *vmap = json_object_get(json_array_get(expr, 0), "vmap");
        char want[40];
        const char *rest;

        if (vmap && json_array_size(expr) == 1) {
                const char *data = json_string_value(json_object_get(vmap, "data"));
                if (streq_ptr(data, "@pod4") || streq_ptr(data, "@pod6")) {
                        t->legacy_rules = true;
                        return;
                }
        }
        if (json_array_size(expr) == 2 && match && streq_ptr(field, "saddr") && set &&
            hex_name(target, "cls_", &rest) && !*rest) {
                bool v4 = streq_ptr(proto, "ip");
                NftClassInfo *c;

                snprintf(want, sizeof(want), "@%s_p%c", target, v4 ? '4' : '6');
                if ((v4 || streq_ptr(proto, "ip6")) && streq(set, want) &&
                    streq_ptr(json_string_value(json_object_get(match, "op")), "==")) {
                        c = info_class(t, target, strlen(target));
                        if (c) {
                                if (v4)
                                        c->dispatch4 = true;
                                else
                                        c->dispatch6 = true;
                                return;
                        }
                }
        }
        t->foreign = "a base chain rule kvnetd did not make";
}

static int by_pod(const void *a, const void *b)
{
        return ip_addr_compare(&((const NftVipElem *)a)->pod, &((const NftVipElem *)b)->pod);
}

int nft_read_table(struct nft_ctx *ctx, const char *table, NftTableInfo *ret)
{
        _cleanup_free_ char *cmd = NULL;
        NftTableInfo t = {};
        json_t *j = NULL, *items, *it;
        bool have_vip4 = false, have_vip6 = false, have_base = false, pod4 = false, pod6 = false;
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
        json_array_foreach(items, i, it)
        {
                json_t *o;

                r = 0;
                if ((o = json_object_get(it, "map"))) {
                        const char *name = json_string_value(json_object_get(o, "name"));
                        if (streq_ptr(name, "vip4")) {
                                have_vip4 = true;
                                r = read_vip_map(&t, o, AF_INET);
                        } else if (streq_ptr(name, "vip6")) {
                                have_vip6 = true;
                                r = read_vip_map(&t, o, AF_INET6);
                        } else if (streq_ptr(name, "pod4")) {
                                pod4 = true;
                                r = read_legacy_map(&t, o, AF_INET);
                        } else if (streq_ptr(name, "pod6")) {
                                pod6 = true;
                                r = read_legacy_map(&t, o, AF_INET6);
                        } else
                                t.foreign = "a map kvnetd did not make";
                } else if ((o = json_object_get(it, "set")))
                        r = read_set(&t, o);
                else if ((o = json_object_get(it, "chain"))) {
                        const char *name = json_string_value(json_object_get(o, "name")), *rest;
                        if (streq_ptr(name, "postrouting"))
                                have_base = true;
                        else if (hex_name(name, "cls_", &rest) && !*rest) {
                                if (!info_class(&t, name, strlen(name)))
                                        r = -ENOMEM;
                        } else if (hex_name(name, "svc_", &rest) && !*rest) {
                                if (!info_legacy(&t, name, strlen(name)))
                                        r = -ENOMEM;
                        } else
                                t.foreign = "a chain kvnetd did not make";
                } else if ((o = json_object_get(it, "rule"))) {
                        const char *chain = json_string_value(json_object_get(o, "chain"));
                        const char *comment = json_string_value(json_object_get(o, "comment")), *rest;
                        unsigned long long fp;

                        if (streq_ptr(chain, "postrouting"))
                                read_base_rule(&t, o);
                        else if (hex_name(chain, "cls_", &rest) && !*rest) {
                                if (comment && sscanf(comment, "fp=%llx", &fp) == 1) {
                                        NftClassInfo *c = info_class(&t, chain, strlen(chain));
                                        if (!c)
                                                r = -ENOMEM;
                                        else
                                                c->fingerprint = fp;
                                }
                        } else if (hex_name(chain, "svc_", &rest) && !*rest && comment &&
                                   service_key_parse(comment, NULL, NULL, NULL) >= 0) {
                                NftLegacyInfo *c = info_legacy(&t, chain, strlen(chain));
                                char want[NFT_NAME_MAX];

                                /* The key must hash to the chain's name, or
                                 * it is not a chain we made. */
                                nft_legacy_chain_name(comment, want);
                                if (!c)
                                        r = -ENOMEM;
                                else if (streq(want, chain) && !c->key && !(c->key = strdup(comment)))
                                        r = -ENOMEM;
                        }
                }
                if (r < 0)
                        goto fail;
        }
        t.skeleton_ok = have_vip4 && have_vip6 && have_base;
        t.legacy_maps = pod4 && pod6;
        if (pod4 != pod6)
                t.foreign = "one of the old pod maps only";
        for (size_t k = 0; k < t.n_services; k++) {
                NftServiceInfo *s = &t.services[k];
                if (s->n_pods > 1)
                        qsort(s->pods, s->n_pods, sizeof(IpAddr),
                              (int (*)(const void *, const void *))ip_addr_compare);
                if (s->n_vips > 1)
                        qsort(s->vips, s->n_vips, sizeof(NftVipElem), by_pod);
        }
        for (size_t k = 0; k < t.n_legacy; k++)
                if (t.legacy[k].n_pods > 1)
                        qsort(t.legacy[k].pods, t.legacy[k].n_pods, sizeof(IpAddr),
                              (int (*)(const void *, const void *))ip_addr_compare);
        json_decref(j);
        *ret = t;
        return 0;
fail:
        json_decref(j);
        nft_table_info_done(&t);
        return r;
}
