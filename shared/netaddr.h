/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Addresses, prefixes (CIDRs) and "proto:port" lists, parsed strictly.
 * These parsers see operator input (annotations, environment files) and, in
 * kvnetd, whatever a client sends; so every failure says which entry was bad
 * and why, through a ParseError, and nothing is ever silently dropped. */

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macros.h"

typedef union InAddrUnion {
        struct in_addr in;
        struct in6_addr in6;
        uint8_t bytes[16];
} InAddrUnion;

typedef struct IpAddr {
        int family; /* AF_INET or AF_INET6 */
        InAddrUnion addr;
} IpAddr;

typedef struct IpPrefix {
        int family;
        InAddrUnion addr; /* host bits are always zero */
        unsigned prefixlen;
} IpPrefix;

typedef enum L4Proto {
        L4_PROTO_TCP,
        L4_PROTO_UDP,
        L4_PROTO_SCTP,
        _L4_PROTO_MAX,
        _L4_PROTO_INVALID = -EINVAL,
} L4Proto;

typedef struct PortSpec {
        L4Proto proto;
        uint16_t port; /* 1..65535 */
} PortSpec;

typedef struct ParseError {
        char message[256];
} ParseError;

/* Longest textual IPv6 address plus "/128". */
#define IP_PREFIX_STRING_MAX (INET6_ADDRSTRLEN + 4)

/* family may be AF_UNSPEC to accept either. */
int ip_addr_parse(const char *s, int family, IpAddr *ret, ParseError *err);
/* Accepts "a.b.c.d/n" and "x::/n"; host bits are masked off (as Go's
 * net.ParseCIDR does, which kube-vip used). A bare address is refused unless
 * allow_bare_address, then it becomes /32 or /128. */
int ip_prefix_parse(const char *s, int family, bool allow_bare_address, IpPrefix *ret, ParseError *err);
const char *ip_addr_to_string(const IpAddr *a, char buf[static INET6_ADDRSTRLEN]);
const char *ip_prefix_to_string(const IpPrefix *p, char buf[static IP_PREFIX_STRING_MAX]);
bool ip_prefix_contains(const IpPrefix *p, const IpAddr *a);
/* outer contains every address of inner (a prefix covers itself). */
bool ip_prefix_covers(const IpPrefix *outer, const IpPrefix *inner);
bool ip_addr_equal(const IpAddr *a, const IpAddr *b);
bool ip_prefix_equal(const IpPrefix *a, const IpPrefix *b);
/* The one order of addresses and prefixes: IPv4 first, then by address;
 * for prefixes of one address, the shorter (the bigger network) first. */
int ip_addr_compare(const IpAddr *a, const IpAddr *b);
int ip_prefix_compare(const IpPrefix *a, const IpPrefix *b);
void ip_addrs_sort(IpAddr *v, size_t n);
/* The one normal form of a set of networks (kvpd's and kvnetd's): sorted by
 * ip_prefix_compare, with every prefix another one covers dropped
 * (duplicates included), so an nft interval set never sees an overlap.
 * *n is updated. */
void prefixes_normalize(IpPrefix *v, size_t *n);
unsigned family_max_prefixlen(int family);

const char *l4_proto_to_string(L4Proto p);
L4Proto l4_proto_from_string(const char *s);

/* Comma-separated lists; spaces around entries are allowed, empty entries are
 * errors ("a,,b"), as is an empty list unless allow_empty. *ret is a
 * malloc'd array; *ret_n its length. max bounds the count. */
int ip_prefix_list_parse(const char *s, int family, size_t max, IpPrefix **ret, size_t *ret_n,
                         ParseError *err);
int ip_addr_list_parse(const char *s, int family, size_t max, IpAddr **ret, size_t *ret_n, ParseError *err);
/* kube-vip's egress-destination-ports: "tcp:8080,udp:5060". The protocol is
 * required (kube-vip's nft path dropped entries without one and then SNATed
 * every port; we refuse instead). */
int port_list_parse(const char *s, size_t max, PortSpec **ret, size_t *ret_n, ParseError *err);

/* Splits s at commas into trimmed, non-empty tokens; returns a NULL-terminated
 * strv. Fails with -EINVAL naming the position of an empty token. */
int split_comma_list(const char *s, size_t max, char ***ret, ParseError *err);

/* Kubernetes name rules, used for service keys "namespace/name". */
bool k8s_dns_label_valid(const char *s);     /* RFC 1123 label, <= 63 */
bool k8s_dns_subdomain_valid(const char *s); /* RFC 1123 subdomain, <= 253 */
int service_key_parse(const char *key, char **ret_namespace, char **ret_name, ParseError *err);

/* Interface names as the kernel accepts them: 1..15 bytes, no '/', ':' or
 * whitespace, not "." or "..". */
bool ifname_valid(const char *s);

void parse_error_set(ParseError *err, const char *fmt, ...) _printf_(2, 3);
