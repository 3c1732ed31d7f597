/* SPDX-License-Identifier: Apache-2.0 */
#include "nft.h"

#include <jansson.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>

#include "array.h"
#include "log.h"
#include "validate.h"

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

void nft_batch_skeleton(FILE *f, const char *table)
{
        fprintf(f, "add table inet %s { comment \"kvnetd: egress SNAT, managed by kvnetd\" ; }\n", table);
        fprintf(f, "add map inet %s pod4 { type ipv4_addr : verdict ; }\n", table);
        fprintf(f, "add map inet %s pod6 { type ipv6_addr : verdict ; }\n", table);
        fprintf(f, "add chain inet %s postrouting { type nat hook postrouting priority srcnat - 10 ; policy accept ; }\n",
                table);
        fprintf(f, "add rule inet %s postrouting ip saddr vmap @pod4\n", table);
        fprintf(f, "add rule inet %s postrouting ip6 saddr vmap @pod6\n", table);
}

static void print_elements(FILE *f, const IpPrefix *v, size_t n, int family)
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

static void print_set_elements(FILE *f, const char *table, const char *chain, const char *suffix,
                               const IpPrefix *v, size_t n, int family)
{
        if (!any_of_family(v, n, family))
                return;
        fprintf(f, "add element inet %s %s-%s { ", table, chain, suffix);
        print_elements(f, v, n, family);
        fprintf(f, " }\n");
}

/* The part of a service that the fingerprint covers: set contents and rules. */
static int service_content(FILE *f, const char *table, const char *chain, const char *key, const EgressPolicy *p)
{
        _cleanup_free_ IpPrefix *ex = NULL;
        size_t n_ex = p->n_excluded + p->n_denied;
        char buf[INET6_ADDRSTRLEN];

        /* Excluded (cluster) and denied networks do the same thing; one set
         * per family, normalised together so no two intervals overlap. */
        ex = calloc(MAX(n_ex, (size_t)1), sizeof(IpPrefix));
        if (!ex)
                return -ENOMEM;
        if (p->n_excluded)
                memcpy(ex, p->excluded, p->n_excluded * sizeof(IpPrefix));
        if (p->n_denied)
                memcpy(ex + p->n_excluded, p->denied, p->n_denied * sizeof(IpPrefix));
        prefixes_normalize(ex, &n_ex);

        print_set_elements(f, table, chain, "ex4", ex, n_ex, AF_INET);
        print_set_elements(f, table, chain, "ex6", ex, n_ex, AF_INET6);
        print_set_elements(f, table, chain, "al4", p->allowed, p->n_allowed, AF_INET);
        print_set_elements(f, table, chain, "al6", p->allowed, p->n_allowed, AF_INET6);
        if (p->n_ports > 0) {
                fprintf(f, "add element inet %s %s-ports { ", table, chain);
                for (size_t i = 0; i < p->n_ports; i++)
                        fprintf(f, "%s%s . %u", i ? ", " : "", l4_proto_to_string(p->ports[i].proto),
                                p->ports[i].port);
                fprintf(f, " }\n");
        }

        fprintf(f, "add rule inet %s %s counter comment \"%s\"\n", table, chain, key);
        fprintf(f, "add rule inet %s %s ct original ip daddr @%s-ex4 return\n", table, chain, chain);
        fprintf(f, "add rule inet %s %s ct original ip6 daddr @%s-ex6 return\n", table, chain, chain);
        if (p->n_allowed > 0) {
                /* "Only these destinations": a family with no allowed network
                 * is not SNATed at all. */
                fprintf(f, "add rule inet %s %s meta nfproto ipv4 ct original ip daddr != @%s-al4 return\n", table,
                        chain, chain);
                fprintf(f, "add rule inet %s %s meta nfproto ipv6 ct original ip6 daddr != @%s-al6 return\n",
                        table, chain, chain);
        }
        if (p->n_ports > 0)
                /* Only the listed protocol+port pairs; ICMP never matches. */
                fprintf(f, "add rule inet %s %s meta l4proto . th dport != @%s-ports return\n", table, chain,
                        chain);
        if (p->vip4.family == AF_INET)
                fprintf(f, "add rule inet %s %s meta nfproto ipv4 counter snat ip to %s\n", table, chain,
                        ip_addr_to_string(&p->vip4, buf));
        if (p->vip6.family == AF_INET6)
                fprintf(f, "add rule inet %s %s meta nfproto ipv6 counter snat ip6 to %s\n", table, chain,
                        ip_addr_to_string(&p->vip6, buf));
        return 0;
}

static int service_content_string(const char *table, const char *chain, const char *key, const EgressPolicy *p,
                                  char **ret, size_t *ret_n)
{
        FILE *f;
        char *buf = NULL;
        size_t n = 0;
        int r;

        f = open_memstream(&buf, &n);
        if (!f)
                return -ENOMEM;
        r = service_content(f, table, chain, key, p);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        *ret_n = n;
        return 0;
}

uint64_t nft_policy_fingerprint(const char *table, const char *chain, const char *key, const EgressPolicy *p)
{
        _cleanup_free_ char *s = NULL;
        size_t n;

        if (service_content_string(table, chain, key, p, &s, &n) < 0)
                return 0; /* never matches a stored fingerprint: forces a rewrite */
        return fnv1a(s, n) | 1;
}

void nft_batch_service(FILE *f, const char *table, const char *chain, const char *key, const EgressPolicy *p,
                       bool exists)
{
        static const char *const sets[][2] = {
                {"ex4", "ipv4_addr ; flags interval"}, {"ex6", "ipv6_addr ; flags interval"},
                {"al4", "ipv4_addr ; flags interval"}, {"al6", "ipv6_addr ; flags interval"},
                {"ports", "inet_proto . inet_service"},
        };
        _cleanup_free_ char *content = NULL;
        size_t n;

        if (exists) {
                /* Replace in place, inside the one transaction: no packet
                 * ever sees the chain empty. */
                fprintf(f, "flush chain inet %s %s\n", table, chain);
                for (size_t i = 0; i < ELEMENTSOF(sets); i++)
                        fprintf(f, "flush set inet %s %s-%s\n", table, chain, sets[i][0]);
        } else {
                fprintf(f, "add chain inet %s %s { comment \"%s\" ; }\n", table, chain, key);
                for (size_t i = 0; i < ELEMENTSOF(sets); i++)
                        fprintf(f, "add set inet %s %s-%s { type %s ; }\n", table, chain, sets[i][0], sets[i][1]);
        }
        if (service_content_string(table, chain, key, p, &content, &n) < 0) {
                /* Leave the batch unparsable so it fails as a whole. */
                fprintf(f, "!out of memory\n");
                return;
        }
        fwrite(content, 1, n, f);
        fprintf(f, "add rule inet %s %s return comment \"fp=%016llx\"\n", table, chain,
                (unsigned long long)(fnv1a(content, n) | 1));
}

static void batch_pods_family(FILE *f, const char *table, const IpAddr *pods, size_t n, const char *chain,
                              int family)
{
        bool first = true;
        char buf[INET6_ADDRSTRLEN];

        for (size_t i = 0; i < n; i++) {
                if (pods[i].family != family)
                        continue;
                if (first)
                        fprintf(f, "%s element inet %s %s { ", chain ? "add" : "delete", table,
                                family == AF_INET ? "pod4" : "pod6");
                else
                        fputs(", ", f);
                first = false;
                fputs(ip_addr_to_string(&pods[i], buf), f);
                if (chain)
                        fprintf(f, " : goto %s", chain);
        }
        if (!first)
                fputs(" }\n", f);
}

void nft_batch_pods(FILE *f, const char *table, const IpAddr *pods, size_t n, const char *chain)
{
        batch_pods_family(f, table, pods, n, chain, AF_INET);
        batch_pods_family(f, table, pods, n, chain, AF_INET6);
}

void nft_batch_remove_service(FILE *f, const char *table, const char *chain)
{
        static const char *const sets[] = {"ex4", "ex6", "al4", "al6", "ports"};

        fprintf(f, "flush chain inet %s %s\n", table, chain);
        fprintf(f, "delete chain inet %s %s\n", table, chain);
        for (size_t i = 0; i < ELEMENTSOF(sets); i++)
                fprintf(f, "delete set inet %s %s-%s\n", table, chain, sets[i]);
}

int nft_apply(struct nft_ctx *ctx, const char *batch, char **ret_error)
{
        const char *e;
        int r;

        if (isempty(batch))
                return 0;
        r = nft_run_cmd_from_buffer(ctx, batch);
        e = nft_ctx_get_error_buffer(ctx);
        if (r != 0) {
                if (ret_error) {
                        /* nft's first line is the reason; the rest echoes the batch. */
                        size_t n = e ? strcspn(e, "\n") : 0;
                        *ret_error = n > 0 ? strndup(e, n) : strdup("nft transaction failed");
                }
                log_debug("nft transaction failed: %s", e ? e : "");
                return -EIO;
        }
        return 0;
}

void nft_table_info_done(NftTableInfo *t)
{
        for (size_t i = 0; i < t->n_chains; i++) {
                free(t->chains[i].key);
                free(t->chains[i].pods);
        }
        free(t->chains);
        *t = (NftTableInfo){};
}

static NftChainInfo *table_chain(NftTableInfo *t, const char *name, bool create)
{
        NftChainInfo *n;

        for (size_t i = 0; i < t->n_chains; i++)
                if (streq(t->chains[i].chain, name))
                        return &t->chains[i];
        if (!create || strlen(name) >= sizeof(t->chains[0].chain))
                return NULL;
        if (ARRAY_RESERVE(t->chains, t->cap_chains, t->n_chains + 1) < 0)
                return NULL;
        n = &t->chains[t->n_chains++];
        *n = (NftChainInfo){};
        strcpy(n->chain, name);
        return n;
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

        json_array_foreach(elems, i, e) {
                const char *addr = json_string_value(json_array_get(e, 0));
                const char *target =
                        json_string_value(json_object_get(json_object_get(json_array_get(e, 1), "goto"), "target"));
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
        int r;

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
        json_array_foreach(items, i, it) {
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
