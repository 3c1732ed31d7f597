/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the annotation/option parsers of shared/netaddr.c. The first
 * byte picks the parser; the rest is the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "netaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *s = NULL;
        ParseError err;
        int families[] = {AF_UNSPEC, AF_INET, AF_INET6};

        if (size < 1 || size > 8192)
                return 0;
        /* Not strndup(): the input is not NUL-terminated, and ASan's
         * strict_string_checks reads strndup's source as a C string. */
        s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        switch (data[0] % 5) {
        case 0: {
                _cleanup_free_ IpPrefix *v = NULL;
                size_t n = 0;
                if (ip_prefix_list_parse(s, families[data[0] / 5 % 3], 256, &v, &n, &err) == 0) {
                        char buf[IP_PREFIX_STRING_MAX];
                        for (size_t i = 0; i < n; i++) {
                                IpPrefix again;
                                /* Round trip: what we print parses to the same prefix. */
                                if (ip_prefix_parse(ip_prefix_to_string(&v[i], buf), AF_UNSPEC, false,
                                                    &again, NULL) < 0 ||
                                    !ip_prefix_equal(&again, &v[i]))
                                        abort();
                        }
                }
                break;
        }
        case 1: {
                _cleanup_free_ PortSpec *v = NULL;
                size_t n = 0;
                if (port_list_parse(s, 64, &v, &n, &err) == 0)
                        for (size_t i = 0; i < n; i++)
                                if (v[i].port == 0 || !l4_proto_to_string(v[i].proto))
                                        abort();
                break;
        }
        case 2: {
                _cleanup_free_ IpAddr *v = NULL;
                size_t n = 0;
                (void)ip_addr_list_parse(s, AF_UNSPEC, 256, &v, &n, &err);
                break;
        }
        case 3: {
                char *ns = NULL, *name = NULL;
                if (service_key_parse(s, &ns, &name, &err) == 0 && (!ns || !name))
                        abort();
                free(ns);
                free(name);
                break;
        }
        default:
                (void)ifname_valid(s);
                (void)k8s_dns_subdomain_valid(s);
        }
        return 0;
}
