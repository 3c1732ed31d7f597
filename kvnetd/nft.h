/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Egress SNAT in one nft table of our own, family inet, for both IP
 * families, in the per-policy ("class") shape:
 *
 *   table inet kvegress
 *     map vip4 { ipv4_addr : ipv4_addr }  pod -> its service's VIP4, each
 *                                         element commented "<service key>"
 *     map vip6 { ipv6_addr : ipv6_addr }
 *     chain postrouting   nat hook, priority srcnat - 10: before any CNI
 *                         or kube-proxy masquerade at srcnat, whatever the
 *                         hook registration order
 *       ip saddr @cls_<h>_p4 goto cls_<h>    one rule per class and family,
 *       ip6 saddr @cls_<h>_p6 goto cls_<h>   for the classes in use only
 *     set cls_<h>_p4 { ipv4_addr }  the class's pods, each element
 *     set cls_<h>_p6 { ipv6_addr }  commented "<service key>"
 *     chain cls_<h>
 *       counter
 *       ct original ip daddr <net> return     one rule per excluded or denied
 *       ct original ip6 daddr <net> return    network, on the pre-DNAT
 *                                             destination
 *       [allowed: meta nfproto ipv4 ct original ip daddr != @cls_<h>_al4 return
 *                 (or meta nfproto ipv4 return with no IPv4 network), same for v6]
 *       [ports:   meta l4proto . th dport != @cls_<h>_ports return]
 *       meta nfproto ipv4 counter snat ip to ip saddr map @vip4
 *       meta nfproto ipv6 counter snat ip6 to ip6 saddr map @vip6
 *       return comment "fp=<fingerprint>"
 *
 * A class is a policy without its VIPs, its pods and its service key (the
 * excluded, denied and allowed networks and the ports): services with the
 * same class share one chain and its sets, and <h> is 16 hex digits of a
 * hash of the class's rules. kvpd gives every Service the node's
 * exclusions, so a node holds one to a few classes. Every pod has a VIP of
 * its family (validate.c refuses a pod of a family the service has no VIP
 * for), so each pod is one element in its class's set and one in a VIP map.
 *
 * What a change costs: a pod change is element deletes and adds only (no
 * chain, no rule, no verdict element: the kernel validates nothing and the
 * commit does not grow with the number of services); a VIP change rewrites
 * the service's elements in the VIP maps; a policy change moves the
 * service's pods to the other class's sets. Only when a class comes or goes
 * is the base chain rewritten (flushed and its dispatch rules added again,
 * in the same transaction: O(classes)). A new flow costs one set lookup per
 * class in use in the base chain, then its class's chain and one map
 * lookup.
 *
 * A class has named sets (allowed networks, ports) only for what it uses:
 * the kernel finds a set by walking the table's list of sets.
 *
 * Changes go to the kernel as netlink batches built here with libnftnl (one
 * batch, one transaction): libnftables would first list the whole table
 * (every chain, and every element of every interval set) for each command,
 * so one change would cost O(table). The same batch is also written as nft
 * text (nft_batch_text), for the log and the golden tests; reading the
 * table back (adoption, reconcile) uses libnftables' JSON listing.
 *
 * The shape before this one (map pod4 { ipv4_addr : verdict }, a chain
 * svc_<hash of the key> per service) is still read and removed, service by
 * service, so that an upgrade never leaves a pod without SNAT ("legacy"
 * below).
 *
 * Everything here composes requests from parsed values only (addresses,
 * numbers, names we derive ourselves); no client string is ever copied
 * into a request except the service key, which has been checked to be
 * [a-z0-9.-/] only, in element comments. */

#include <stdio.h>

#include "service.h"

#define NFT_TABLE_DEFAULT "kvegress"
#define NFT_NAME_MAX 24 /* "cls_" or "svc_" + 16 hex digits, and the NUL */

/* A class's optional named sets, as bits. EX4/EX6 are what kvnetd before
 * named exclusion sets went made (legacy chains may still have them). */
enum {
        NFT_SET_AL4 = 1u << 0,
        NFT_SET_AL6 = 1u << 1,
        NFT_SET_PORTS = 1u << 2,
        NFT_SET_EX4 = 1u << 3,
        NFT_SET_EX6 = 1u << 4,
        NFT_SET_ALL = (1u << 5) - 1,
};

/* Legacy: "svc_" + 16 hex digits of a hash of the service key. */
void nft_legacy_chain_name(const char *key, char ret[static NFT_NAME_MAX]);

typedef struct NftBatch NftBatch;

/* A batch writes netlink (for nft_commit), nft text to f, or both. */
int nft_batch_new(bool netlink, FILE *text, NftBatch **ret);
NftBatch *nft_batch_free(NftBatch *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(NftBatch *, nft_batch_free);
bool nft_batch_is_empty(const NftBatch *b);

/* The table, the VIP maps and the base chain ("add": harmless where they
 * exist; the base chain's rules are nft_batch_dispatch()'s). */
void nft_batch_skeleton(NftBatch *b, const char *table);
/* Removes the table with everything in it; it must exist (add it first). */
void nft_batch_delete_table(NftBatch *b, const char *table);
/* The optional named sets policy p's class needs (NFT_SET_*). */
unsigned nft_policy_sets(const EgressPolicy *p);

/* p's class: its name (cls_<hash of its rules>), the fingerprint of its
 * chain and sets (stored in the chain's last rule) and, if ret_text, the
 * text of its rules (to tell two classes apart whose hashes collide). 0 or
 * -ENOMEM. */
int nft_policy_class(const EgressPolicy *p, char name[static NFT_NAME_MAX], uint64_t *ret_fingerprint,
                     char **ret_text);
/* Creates class name (p's class) with its sets and rules, or (exists;
 * old_sets: the optional sets it has now) replaces its rules and optional
 * sets in place. */
void nft_batch_class(NftBatch *b, const char *table, const char *name, const EgressPolicy *p, bool exists,
                     unsigned old_sets);
/* Removes class name's chain and sets (sets: its optional ones); no rule
 * may refer to it after this batch (nft_batch_dispatch() first). */
void nft_batch_remove_class(NftBatch *b, const char *table, const char *name, unsigned sets);
/* Replaces the base chain's rules: legacy (the old pod maps' rules, while
 * legacy chains remain), then one dispatch rule per class and family. */
void nft_batch_dispatch(NftBatch *b, const char *table, bool legacy, const char *const *classes, size_t n);
/* Adds (add) or deletes the pods' elements in class name's sets, commented
 * with key when added. */
void nft_batch_class_pods(NftBatch *b, const char *table, const char *name, const char *key,
                          const IpAddr *pods, size_t n, bool add);
/* Adds the pods' elements in the VIP maps, each to the VIP of its family
 * (pods of a family with no VIP are skipped), or deletes them (vips not
 * needed, may be NULL). */
void nft_batch_vip_pods(NftBatch *b, const char *table, const char *key, const IpAddr *vip4,
                        const IpAddr *vip6, const IpAddr *pods, size_t n, bool add);
/* Legacy: removes a chain of the old shape with its pods' verdict elements
 * and its sets; with last, also the old pod maps (the base chain's rules
 * must no longer refer to them: nft_batch_dispatch() first). */
void nft_batch_remove_legacy(NftBatch *b, const char *table, const char *chain, const IpAddr *pods, size_t n,
                             unsigned sets);
void nft_batch_remove_legacy_maps(NftBatch *b, const char *table);
/* Legacy: deletes pods' verdict elements from the old pod maps. */
void nft_batch_legacy_pods(NftBatch *b, const char *table, const IpAddr *pods, size_t n);

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

/* --- what a previous kvnetd left in the kernel --------------------------- */

typedef struct NftClassInfo {
        char name[NFT_NAME_MAX];
        uint64_t fingerprint;      /* 0: no fp comment */
        unsigned sets;             /* optional NFT_SET_* found */
        bool p4, p6;               /* its pod sets exist */
        bool dispatch4, dispatch6; /* the base chain's rules that reach it */
} NftClassInfo;

typedef struct NftVipElem {
        IpAddr pod, vip;
} NftVipElem;

/* One service key's elements: its pods in a class's sets (sorted), its
 * VIP map elements (sorted by pod). */
typedef struct NftServiceInfo {
        char *key;
        char cls[NFT_NAME_MAX]; /* the class its pods are in */
        bool split;             /* pods in more than one class */
        IpAddr *pods;
        size_t n_pods, cap_pods;
        NftVipElem *vips;
        size_t n_vips, cap_vips;
} NftServiceInfo;

/* Legacy: a chain of the previous shape and its pods. */
typedef struct NftLegacyInfo {
        char chain[NFT_NAME_MAX];
        char *key;
        unsigned sets;
        IpAddr *pods;
        size_t n_pods, cap_pods;
} NftLegacyInfo;

typedef struct NftTableInfo {
        bool exists;
        bool skeleton_ok;    /* VIP maps and base chain as we make them */
        bool legacy_maps;    /* the previous shape's pod maps */
        bool legacy_rules;   /* and their rules in the base chain */
        const char *foreign; /* what is there that we did not make (NULL: nothing) */
        NftClassInfo *classes;
        size_t n_classes, cap_classes;
        StrMap class_index; /* name -> index + 1 */
        NftServiceInfo *services;
        size_t n_services, cap_services;
        StrMap service_index; /* key -> index + 1 */
        NftLegacyInfo *legacy;
        size_t n_legacy, cap_legacy;
        StrMap legacy_index; /* chain -> index + 1 */
} NftTableInfo;

struct nft_ctx;
int nft_read_table(struct nft_ctx *ctx, const char *table, NftTableInfo *ret);
const NftClassInfo *nft_table_info_class(const NftTableInfo *t, const char *name);
const NftServiceInfo *nft_table_info_service(const NftTableInfo *t, const char *key);
void nft_table_info_done(NftTableInfo *t);
