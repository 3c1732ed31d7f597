/* SPDX-License-Identifier: Apache-2.0 */
#include "bus-netaddr.h"

int bus_append_addrs(sd_bus_message *m, const IpAddr *v, size_t n)
{
        char buf[INET6_ADDRSTRLEN];
        int r = sd_bus_message_open_container(m, 'a', "s");

        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append_basic(m, 's', ip_addr_to_string(&v[i], buf));
        return r < 0 ? r : sd_bus_message_close_container(m);
}

int bus_append_ports(sd_bus_message *m, const PortSpec *v, size_t n)
{
        int r = sd_bus_message_open_container(m, 'a', "(sq)");

        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append(m, "(sq)", l4_proto_to_string(v[i].proto), v[i].port);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

int bus_append_prefixes(sd_bus_message *m, const IpPrefix *v, size_t n)
{
        char buf[IP_PREFIX_STRING_MAX];
        int r = sd_bus_message_open_container(m, 'a', "s");

        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append_basic(m, 's', ip_prefix_to_string(&v[i], buf));
        return r < 0 ? r : sd_bus_message_close_container(m);
}
