/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Egress SNAT in one nft table of our own, family inet, for both IP
 * families:
 *
 *   table inet kvegress
 *     map pod4 { ipv4_addr : verdict }    pod address -> goto svc_<hash>
 *     map pod6 { ipv6_addr : verdict }
 *     chain postrouting   nat hook, priority srcnat - 10: before any CNI
 *                         or kube-proxy masquerade at srcnat, whatever the
 *                         hook registration order
 *       ip saddr vmap @pod4 ; ip6 saddr vmap @pod6
 *     chain svc_<hash>    one per service, reached only through the maps,
 *                         so a new flow costs one map lookup, not one chain
 *                         per service
 *       counter comment "<service key>"
 *       ct original ip daddr @svc_<hash>-ex4 return   excluded + denied, on the
 *       ct original ip6 daddr @svc_<hash>-ex6 return  pre-DNAT destination
 *       [allowed: meta nfproto ipv4 ct original ip daddr != @..-al4 return, same for v6]
 *       [ports:   meta l4proto . th dport != @..-ports return]
 *       meta nfproto ipv4 snat ip to VIP4 ; meta nfproto ipv6 snat ip6 to VIP6
 *       return comment "fp=<fingerprint>"
 *
 * Everything here composes nft commands from parsed, re-formatted values
 * only (addresses via inet_ntop, numbers, names we derive ourselves); no
 * client string is ever copied into a command except the service key, which
 * has been checked to be [a-z0-9.-/] only. */

#include <stdio.h>

#include "manager.h"

#define NFT_TABLE_DEFAULT "kvegress"

/* "svc_" + 16 hex digits of a hash of the service key. */
void nft_chain_name(const char *key, char ret[static 24]);

/* The table, maps and base chain, for a table that does not exist yet. */
void nft_batch_skeleton(FILE *f, const char *table);
/* Hash of what nft_batch_service() installs for (chain, key, policy). */
uint64_t nft_policy_fingerprint(const char *table, const char *chain, const char *key, const EgressPolicy *p);
/* Creates (exists=false) or replaces (exists=true) the service chain's
 * rules and sets. */
void nft_batch_service(FILE *f, const char *table, const char *chain, const char *key, const EgressPolicy *p,
                       bool exists);
/* Adds pods mapped to chain, or deletes them (chain NULL). */
void nft_batch_pods(FILE *f, const char *table, const IpAddr *pods, size_t n, const char *chain);
/* Removes the chain and its sets; its pods must be deleted first (same batch). */
void nft_batch_remove_service(FILE *f, const char *table, const char *chain);

/* Runs batch as one transaction. On failure nothing was applied and
 * *ret_error (if given) holds nft's message. */
int nft_apply(struct nft_ctx *ctx, const char *batch, char **ret_error);

/* What a previous kvnetd left in the kernel. */
typedef struct NftChainInfo {
        char chain[24];
        char *key;
        uint64_t fingerprint;
        IpAddr *pods;
        size_t n_pods, cap_pods;
} NftChainInfo;

typedef struct NftTableInfo {
        bool exists;
        bool skeleton_ok; /* maps and base chain as we make them */
        NftChainInfo *chains;
        size_t n_chains, cap_chains;
} NftTableInfo;

int nft_read_table(struct nft_ctx *ctx, const char *table, NftTableInfo *ret);
void nft_table_info_done(NftTableInfo *t);
