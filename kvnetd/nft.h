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
 *       ct original ip daddr <net> return     one rule per excluded or denied
 *       ct original ip6 daddr <net> return    network, on the pre-DNAT
 *                                             destination
 *       [allowed: meta nfproto ipv4 ct original ip daddr != @..-al4 return
 *                 (or meta nfproto ipv4 return with no IPv4 network), same for v6]
 *       [ports:   meta l4proto . th dport != @..-ports return]
 *       meta nfproto ipv4 snat ip to VIP4 ; meta nfproto ipv6 snat ip6 to VIP6
 *       return comment "fp=<fingerprint>"
 *
 * A service has named sets only for what it uses (allowed networks,
 * ports): the kernel finds a set by walking the table's list of sets, so a
 * set per service and per network list would make every new service cost
 * O(services) in the kernel.
 *
 * Changes go to the kernel as netlink batches built here with libnftnl (one
 * batch, one transaction): libnftables would first list the whole table
 * (every chain, and every element of every interval set) for each command,
 * so one change would cost O(services). The same batch is also written as
 * nft text (nft_batch_text), for the log and the golden tests; reading the
 * table back (adoption, reconcile) uses libnftables' JSON listing.
 *
 * Everything here composes requests from parsed values only (addresses,
 * numbers, names we derive ourselves); no client string is ever copied
 * into a request except the service key, which has been checked to be
 * [a-z0-9.-/] only, in comments. */

#include <stdio.h>

#include "service.h"

#define NFT_TABLE_DEFAULT "kvegress"

/* Named sets of a service chain, as bits. EX4/EX6 are what kvnetd before
 * this layout made (adopted chains may still have them). */
enum {
        NFT_SET_AL4 = 1u << 0,
        NFT_SET_AL6 = 1u << 1,
        NFT_SET_PORTS = 1u << 2,
        NFT_SET_EX4 = 1u << 3,
        NFT_SET_EX6 = 1u << 4,
        NFT_SET_ALL = (1u << 5) - 1,
};

/* "svc_" + 16 hex digits of a hash of the service key. */
void nft_chain_name(const char *key, char ret[static 24]);

typedef struct NftBatch NftBatch;

/* A batch writes netlink (for nft_commit), nft text to f, or both. */
int nft_batch_new(bool netlink, FILE *text, NftBatch **ret);
NftBatch *nft_batch_free(NftBatch *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(NftBatch *, nft_batch_free);
bool nft_batch_is_empty(const NftBatch *b);

/* The table, maps and base chain ("add": harmless where they exist). */
void nft_batch_skeleton(NftBatch *b, const char *table);
/* Removes the table with everything in it; it must exist (add it first). */
void nft_batch_delete_table(NftBatch *b, const char *table);
/* The named sets policy p needs (NFT_SET_*). */
unsigned nft_policy_sets(const EgressPolicy *p);
/* Hash of what nft_batch_service() installs for (chain, key, policy). */
uint64_t nft_policy_fingerprint(const char *table, const char *chain, const char *key,
                                const EgressPolicy *p);
/* Creates (exists=false) or replaces (exists=true; old_sets: the named sets
 * it has now) the service chain's rules and sets. */
void nft_batch_service(NftBatch *b, const char *table, const char *chain, const char *key,
                       const EgressPolicy *p, bool exists, unsigned old_sets);
/* Adds pods mapped to chain, or deletes them (chain NULL). */
void nft_batch_pods(NftBatch *b, const char *table, const IpAddr *pods, size_t n, const char *chain);
/* Removes the chain and its sets; its pods must be deleted first (same batch). */
void nft_batch_remove_service(NftBatch *b, const char *table, const char *chain, unsigned sets);

/* Sends the batch as one transaction on a NETLINK_NETFILTER socket. On
 * failure nothing was applied and *ret_error (if given) says why. The
 * socket is close-on-exec and its errors carry no copy of the request
 * (conntrack.c opens its ctnetlink sockets with it too). */
struct mnl_socket;
int nft_socket_open(struct mnl_socket **ret);
void nft_socket_close(struct mnl_socket *nl);
int nft_commit(struct mnl_socket *nl, NftBatch *b, char **ret_error);
/* Number of netlink messages in the batch (for the log and benchmarks). */
size_t nft_batch_messages(const NftBatch *b);
/* The ruleset's generation (NFT_MSG_GETGEN): the kernel adds one per
 * committed transaction, of any table, by anyone; an aborted one adds
 * nothing. */
int nft_get_gen(struct mnl_socket *nl, uint32_t *ret);

/* What a previous kvnetd left in the kernel. */
typedef struct NftChainInfo {
        char chain[24];
        char *key;
        uint64_t fingerprint;
        unsigned sets; /* NFT_SET_* found */
        IpAddr *pods;
        size_t n_pods, cap_pods;
} NftChainInfo;

typedef struct NftTableInfo {
        bool exists;
        bool skeleton_ok; /* maps and base chain as we make them */
        NftChainInfo *chains;
        size_t n_chains, cap_chains;
        StrMap index; /* chain name -> index + 1 into chains */
} NftTableInfo;

struct nft_ctx;
int nft_read_table(struct nft_ctx *ctx, const char *table, NftTableInfo *ret);
const NftChainInfo *nft_table_info_find(const NftTableInfo *t, const char *chain);
void nft_table_info_done(NftTableInfo *t);
