/* SPDX-License-Identifier: Apache-2.0 */
/* `nft list` of one service's class chain and sets and `nft get` of its VIP
 * map elements, for DescribeService. Apart from introspect.c so the fuzz
 * target runs the handler without a kernel. */
#include <nftables/libnftables.h>
#include <stdio.h>

#include "introspect.h"
#include "nft.h"

/* Appends `nft list <what>` to f; a missing object is skipped (a service
 * without ports has no ports set). */
static void list_object(struct nft_ctx *ctx, const char *what, FILE *f)
{
        const char *out;

        if (nft_run_cmd_from_buffer(ctx, what) != 0)
                return;
        out = nft_ctx_get_output_buffer(ctx);
        if (out)
                fputs(out, f);
}

/* Pods whose VIP map elements are listed, per family. */
#define DESCRIBE_PODS_MAX 64

int introspect_list_nft(Manager *m, const Service *s, char **ret, size_t *ret_size)
{
        static const char *const set_suffixes[] = {"al4", "al6", "ports", "ex4", "ex6"};
        char chain[NFT_NAME_MAX], cmd[128];
        struct nft_ctx *ctx;
        FILE *f;

        /* A context of its own: the manager's prints JSON for its own reads.
         * The names are ours (the table from the command line, the class a
         * hash of its rules, a legacy chain a hash of the key), never client
         * text. The class's pod sets are not listed: they hold the pods of
         * every service in the class. */
        if (s->cls)
                snprintf(chain, sizeof(chain), "%s", s->cls->name);
        else
                nft_legacy_chain_name(s->key, chain);
        ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!ctx)
                return -ENOMEM;
        if (nft_ctx_buffer_output(ctx) < 0 || nft_ctx_buffer_error(ctx) < 0) {
                nft_ctx_free(ctx);
                return -ENOMEM;
        }
        f = open_memstream(ret, ret_size);
        if (!f) {
                nft_ctx_free(ctx);
                return -ENOMEM;
        }
        (void)snprintf(cmd, sizeof(cmd), "list chain inet %s %s", m->config->table, chain);
        list_object(ctx, cmd, f);
        for (size_t i = 0; i < ELEMENTSOF(set_suffixes); i++) {
                (void)snprintf(cmd, sizeof(cmd), "list set inet %s %s%c%s", m->config->table, chain,
                               s->cls ? '_' : '-', set_suffixes[i]);
                list_object(ctx, cmd, f);
        }
        /* Its own elements: the VIP each pod maps to, with the key. */
        for (int family = AF_INET; s->cls && family; family = family == AF_INET ? AF_INET6 : 0) {
                _cleanup_free_ char *get = NULL;
                size_t n = 0, len = 0, shown = 0;
                FILE *g = open_memstream(&get, &len);

                if (!g)
                        break;
                fprintf(g, "get element inet %s %s { ", m->config->table,
                        family == AF_INET ? "vip4" : "vip6");
                for (size_t i = 0; i < s->n_pods; i++)
                        if (s->pods[i].family == family && n++ < DESCRIBE_PODS_MAX) {
                                fprintf(g, "%s%s", shown ? ", " : "",
                                        ip_addr_to_string(&s->pods[i], (char[INET6_ADDRSTRLEN]){}));
                                shown++;
                        }
                fputs(" }", g);
                if (fclose(g) != 0)
                        break;
                if (shown > 0)
                        list_object(ctx, get, f);
                if (n > shown)
                        fprintf(f, "# ... and %zu more pods\n", n - shown);
        }
        nft_ctx_free(ctx);
        return fclose(f) == 0 ? 0 : -ENOMEM;
}
