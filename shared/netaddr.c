/* SPDX-License-Identifier: Apache-2.0 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "array.h"

void parse_error_set(ParseError *err, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return;
        va_start(ap, fmt);
        (void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
}

/* Quote user input in messages safely: printable ASCII only, bounded. */
static const char *printable(const char *s, char buf[static 72])
{
        size_t o = 0;

        for (; s && *s && o < 64; s++)
                buf[o++] = isprint((unsigned char)*s) ? *s : '?';
        if (s && *s) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
        return buf;
}

unsigned family_max_prefixlen(int family)
{
        return family == AF_INET6 ? 128 : 32;
}

int ip_addr_parse(const char *s, int family, IpAddr *ret, ParseError *err)
{
        IpAddr a = {};
        char q[72];

        if (isempty(s)) {
                parse_error_set(err, "empty address");
                return -EINVAL;
        }
        if ((family == AF_UNSPEC || family == AF_INET) && inet_pton(AF_INET, s, &a.addr.in) == 1)
                a.family = AF_INET;
        else if ((family == AF_UNSPEC || family == AF_INET6) && inet_pton(AF_INET6, s, &a.addr.in6) == 1)
                a.family = AF_INET6;
        else {
                parse_error_set(err, "\"%s\" is not a valid %s address", printable(s, q),
                                family == AF_INET    ? "IPv4"
                                : family == AF_INET6 ? "IPv6"
                                                     : "IP");
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

static void mask_host_bits(InAddrUnion *a, int family, unsigned prefixlen)
{
        unsigned bytes = family == AF_INET6 ? 16 : 4;

        for (unsigned i = 0; i < bytes; i++) {
                unsigned bit = i * 8;
                if (bit >= prefixlen)
                        a->bytes[i] = 0;
                else if (prefixlen - bit < 8)
                        a->bytes[i] &= (uint8_t)(0xffu << (8 - (prefixlen - bit)));
        }
}

int ip_prefix_parse(const char *s, int family, bool allow_bare_address, IpPrefix *ret, ParseError *err)
{
        char addr[INET6_ADDRSTRLEN + 1], q[72];
        const char *slash;
        IpAddr a;
        unsigned long len;
        char *end;
        int r;

        if (isempty(s)) {
                parse_error_set(err, "empty CIDR");
                return -EINVAL;
        }
        slash = strchr(s, '/');
        if (!slash) {
                if (!allow_bare_address) {
                        parse_error_set(err, "\"%s\" is not a CIDR (missing /prefix)", printable(s, q));
                        return -EINVAL;
                }
                r = ip_addr_parse(s, family, &a, err);
                if (r < 0)
                        return r;
                *ret = (IpPrefix){
                        .family = a.family, .addr = a.addr, .prefixlen = family_max_prefixlen(a.family)};
                return 0;
        }
        if ((size_t)(slash - s) >= sizeof(addr)) {
                parse_error_set(err, "\"%s\" is not a valid CIDR", printable(s, q));
                return -EINVAL;
        }
        memcpy(addr, s, (size_t)(slash - s));
        addr[slash - s] = '\0';
        r = ip_addr_parse(addr, family, &a, NULL);
        if (r < 0) {
                parse_error_set(err, "\"%s\" is not a valid CIDR: bad address", printable(s, q));
                return r;
        }
        if (!isdigit((unsigned char)slash[1]) || (slash[1] == '0' && slash[2] != '\0')) {
                parse_error_set(err, "\"%s\" is not a valid CIDR: bad prefix length", printable(s, q));
                return -EINVAL;
        }
        errno = 0;
        len = strtoul(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || len > family_max_prefixlen(a.family)) {
                parse_error_set(err, "\"%s\" is not a valid CIDR: prefix length must be 0..%u",
                                printable(s, q), family_max_prefixlen(a.family));
                return -EINVAL;
        }
        *ret = (IpPrefix){.family = a.family, .addr = a.addr, .prefixlen = (unsigned)len};
        mask_host_bits(&ret->addr, a.family, ret->prefixlen);
        return 0;
}

const char *ip_addr_to_string(const IpAddr *a, char buf[static INET6_ADDRSTRLEN])
{
        if (!inet_ntop(a->family, &a->addr, buf, INET6_ADDRSTRLEN))
                snprintf(buf, INET6_ADDRSTRLEN, "(invalid)");
        return buf;
}

const char *ip_prefix_to_string(const IpPrefix *p, char buf[static IP_PREFIX_STRING_MAX])
{
        char a[INET6_ADDRSTRLEN];

        if (!inet_ntop(p->family, &p->addr, a, sizeof(a)))
                snprintf(a, sizeof(a), "(invalid)");
        snprintf(buf, IP_PREFIX_STRING_MAX, "%s/%u", a, p->prefixlen);
        return buf;
}

bool ip_prefix_contains(const IpPrefix *p, const IpAddr *a)
{
        InAddrUnion masked;

        if (p->family != a->family)
                return false;
        masked = a->addr;
        mask_host_bits(&masked, a->family, p->prefixlen);
        return memcmp(&masked, &p->addr, a->family == AF_INET6 ? 16 : 4) == 0;
}

bool ip_prefix_covers(const IpPrefix *outer, const IpPrefix *inner)
{
        IpAddr a = {.family = inner->family, .addr = inner->addr};

        return outer->prefixlen <= inner->prefixlen && ip_prefix_contains(outer, &a);
}

int ip_addr_compare(const IpAddr *a, const IpAddr *b)
{
        if (a->family != b->family)
                return a->family < b->family ? -1 : 1;
        return memcmp(&a->addr, &b->addr, a->family == AF_INET6 ? 16 : 4);
}

int ip_prefix_compare(const IpPrefix *a, const IpPrefix *b)
{
        int r;

        if (a->family != b->family)
                return a->family < b->family ? -1 : 1;
        r = memcmp(&a->addr, &b->addr, a->family == AF_INET6 ? 16 : 4);
        if (r != 0)
                return r;
        return a->prefixlen < b->prefixlen ? -1 : a->prefixlen > b->prefixlen;
}

static int addr_qsort_cmp(const void *a, const void *b)
{
        return ip_addr_compare(a, b);
}

static int prefix_qsort_cmp(const void *a, const void *b)
{
        return ip_prefix_compare(a, b);
}

void ip_addrs_sort(IpAddr *v, size_t n)
{
        if (n > 1)
                qsort(v, n, sizeof(IpAddr), addr_qsort_cmp);
}

void prefixes_normalize(IpPrefix *v, size_t *n)
{
        size_t o = 0;

        if (*n == 0)
                return;
        qsort(v, *n, sizeof(IpPrefix), prefix_qsort_cmp);
        for (size_t i = 0; i < *n; i++) {
                /* Sorted by address, then length: a prefix that covers this
                 * one is the last kept, if any. */
                if (o > 0 && ip_prefix_covers(&v[o - 1], &v[i]))
                        continue;
                v[o++] = v[i];
        }
        *n = o;
}

bool ip_addr_equal(const IpAddr *a, const IpAddr *b)
{
        return a->family == b->family && memcmp(&a->addr, &b->addr, a->family == AF_INET6 ? 16 : 4) == 0;
}

bool ip_prefix_equal(const IpPrefix *a, const IpPrefix *b)
{
        return a->family == b->family && a->prefixlen == b->prefixlen &&
               memcmp(&a->addr, &b->addr, a->family == AF_INET6 ? 16 : 4) == 0;
}

static const char *const l4_proto_table[_L4_PROTO_MAX] = {
        [L4_PROTO_TCP] = "tcp",
        [L4_PROTO_UDP] = "udp",
        [L4_PROTO_SCTP] = "sctp",
};

DEFINE_STRING_TABLE_TO_STRING(l4_proto_to_string, L4Proto, l4_proto_table);

L4Proto l4_proto_from_string(const char *s)
{
        for (int i = 0; s && i < _L4_PROTO_MAX; i++)
                if (strcasecmp(s, l4_proto_table[i]) == 0)
                        return (L4Proto)i;
        return _L4_PROTO_INVALID;
}

int split_comma_list(const char *s, size_t max, char ***ret, ParseError *err)
{
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0, cap = 1, idx = 0;
        const char *p = s;

        if (!s) {
                parse_error_set(err, "missing list");
                return -EINVAL;
        }
        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        for (;;) {
                const char *comma = strchr(p, ',');
                const char *b = p, *e = comma ? comma : p + strlen(p);

                idx++;
                while (b < e && isspace((unsigned char)*b))
                        b++;
                while (e > b && isspace((unsigned char)e[-1]))
                        e--;
                if (b == e) {
                        parse_error_set(err, "entry %zu is empty", idx);
                        return -EINVAL;
                }
                if (n >= max) {
                        parse_error_set(err, "more than %zu entries", max);
                        return -E2BIG;
                }
                if (ARRAY_RESERVE(l, cap, n + 2) < 0)
                        return -ENOMEM;
                l[n] = strndup(b, (size_t)(e - b));
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Splits s and parses each entry into an array of elements of elem_size
 * bytes; an error names the entry. */
typedef int (*ParseOneFn)(const char *s, int family, void *ret, ParseError *err);

static int parse_list(const char *s, int family, size_t max, size_t elem_size, ParseOneFn parse_one,
                      void **ret, size_t *ret_n, ParseError *err)
{
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ uint8_t *v = NULL;
        size_t n = 0;
        int r;

        r = split_comma_list(s, max, &l, err);
        if (r < 0)
                return r;
        for (char **i = l; *i; i++)
                n++;
        v = calloc(n ? n : 1, elem_size);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                ParseError e;
                r = parse_one(l[i], family, v + i * elem_size, &e);
                if (r < 0) {
                        parse_error_set(err, "entry %zu: %s", i + 1, e.message);
                        return r;
                }
        }
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

static int parse_one_prefix(const char *s, int family, void *ret, ParseError *err)
{
        return ip_prefix_parse(s, family, false, ret, err);
}

static int parse_one_addr(const char *s, int family, void *ret, ParseError *err)
{
        return ip_addr_parse(s, family, ret, err);
}

int ip_prefix_list_parse(const char *s, int family, size_t max, IpPrefix **ret, size_t *ret_n,
                         ParseError *err)
{
        return parse_list(s, family, max, sizeof(IpPrefix), parse_one_prefix, (void **)ret, ret_n, err);
}

int ip_addr_list_parse(const char *s, int family, size_t max, IpAddr **ret, size_t *ret_n, ParseError *err)
{
        return parse_list(s, family, max, sizeof(IpAddr), parse_one_addr, (void **)ret, ret_n, err);
}

int port_list_parse(const char *s, size_t max, PortSpec **ret, size_t *ret_n, ParseError *err)
{
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ PortSpec *v = NULL;
        size_t n = 0;
        char q[72];
        int r;

        r = split_comma_list(s, max, &l, err);
        if (r < 0)
                return r;
        for (char **i = l; *i; i++)
                n++;
        v = calloc(n ? n : 1, sizeof(PortSpec));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char *colon = strchr(l[i], ':'), *end;
                unsigned long port;
                L4Proto p;

                if (!colon) {
                        parse_error_set(err, "entry %zu \"%s\": expected protocol:port, e.g. tcp:8080",
                                        i + 1, printable(l[i], q));
                        return -EINVAL;
                }
                *colon = '\0';
                p = l4_proto_from_string(l[i]);
                if (p < 0) {
                        parse_error_set(err, "entry %zu: unknown protocol \"%s\" (tcp, udp or sctp)", i + 1,
                                        printable(l[i], q));
                        return -EINVAL;
                }
                errno = 0;
                port = strtoul(colon + 1, &end, 10);
                if (!isdigit((unsigned char)colon[1]) || errno != 0 || *end != '\0' || port < 1 ||
                    port > 65535) {
                        parse_error_set(err, "entry %zu: port \"%s\" is not in 1..65535", i + 1,
                                        printable(colon + 1, q));
                        return -EINVAL;
                }
                v[i] = (PortSpec){.proto = p, .port = (uint16_t)port};
        }
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

bool k8s_dns_label_valid(const char *s)
{
        size_t n;

        if (isempty(s))
                return false;
        n = strlen(s);
        if (n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
                        return false;
        return true;
}

bool k8s_dns_subdomain_valid(const char *s)
{
        size_t n;

        if (isempty(s))
                return false;
        n = strlen(s);
        if (n > 253)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-' || c == '.'))
                        return false;
                /* Each dot-separated part is a label: alnum at both ends. */
                if ((c == '-' || c == '.') && (i == 0 || i == n - 1))
                        return false;
                if (c == '.' && (s[i - 1] == '.' || s[i - 1] == '-' || s[i + 1] == '-'))
                        return false;
        }
        return true;
}

int service_key_parse(const char *key, char **ret_namespace, char **ret_name, ParseError *err)
{
        _cleanup_free_ char *ns = NULL, *name = NULL;
        const char *slash;
        char q[72];

        if (isempty(key) || strlen(key) > 63 + 1 + 253) {
                parse_error_set(err, "service key must be \"namespace/name\"");
                return -EINVAL;
        }
        slash = strchr(key, '/');
        if (!slash) {
                parse_error_set(err, "service key \"%s\" must be \"namespace/name\"", printable(key, q));
                return -EINVAL;
        }
        ns = strndup(key, (size_t)(slash - key));
        name = strdup(slash + 1);
        if (!ns || !name)
                return -ENOMEM;
        if (!k8s_dns_label_valid(ns)) {
                parse_error_set(err, "service key \"%s\": namespace is not a valid DNS label",
                                printable(key, q));
                return -EINVAL;
        }
        if (!k8s_dns_subdomain_valid(name)) {
                parse_error_set(err, "service key \"%s\": name is not a valid DNS subdomain",
                                printable(key, q));
                return -EINVAL;
        }
        if (ret_namespace)
                *ret_namespace = TAKE_PTR(ns);
        if (ret_name)
                *ret_name = TAKE_PTR(name);
        return 0;
}

bool ifname_valid(const char *s)
{
        size_t n;

        if (isempty(s))
                return false;
        n = strlen(s);
        if (n >= IFNAMSIZ || streq(s, ".") || streq(s, ".."))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isgraph((unsigned char)s[i]) || s[i] == '/' || s[i] == ':')
                        return false;
        return true;
}
