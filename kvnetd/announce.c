/* SPDX-License-Identifier: Apache-2.0 */
#include "announce.h"

#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/ip6.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "addr.h"
#include "log.h"

/* One AF_PACKET socket sends both the gratuitous ARP and the unsolicited NA
 * (a whole IPv6 packet, built here). No IP socket: kvnetd.service allows no
 * AF_INET/AF_INET6 and denies all IP traffic (IPAddressDeny=any), which would
 * also drop an NA sent through the IP stack; packet sockets bypass both. */
int announce_open(Manager *m)
{
        m->arp_fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (m->arp_fd < 0)
                return -errno;
        return 0;
}

void announce_close(Manager *m)
{
        if (m->arp_fd >= 0)
                (void)close(m->arp_fd);
        m->arp_fd = -EBADF;
}

static int link_mac(int fd, const char *ifname, uint8_t mac[static 6])
{
        struct ifreq ifr = {};

        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
        if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
                return -errno;
        if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
                return -EOPNOTSUPP; /* no link-layer neighbours to tell */
        memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
        return 0;
}

static int send_garp(Manager *m, const Vip *v, unsigned ifindex, const uint8_t mac[static 6])
{
        struct __attribute__((packed)) {
                struct arphdr h;
                uint8_t sha[6], spa[4], tha[6], tpa[4];
        } p = {};
        struct sockaddr_ll sll = {
                .sll_family = AF_PACKET,
                .sll_protocol = htons(ETH_P_ARP),
                .sll_ifindex = (int)ifindex,
                .sll_halen = 6,
                .sll_addr = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
        };

        p.h.ar_hrd = htons(ARPHRD_ETHER);
        p.h.ar_pro = htons(ETH_P_IP);
        p.h.ar_hln = 6;
        p.h.ar_pln = 4;
        memcpy(p.sha, mac, 6);
        memcpy(p.spa, &v->addr.addr.in, 4);
        memcpy(p.tpa, &v->addr.addr.in, 4);

        /* Request: "who has VIP? tell VIP" (target hardware address zero). */
        p.h.ar_op = htons(ARPOP_REQUEST);
        if (sendto(m->arp_fd, &p, sizeof(p), 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
                return -errno;
        /* Reply: "VIP is at MAC", target = sender. */
        p.h.ar_op = htons(ARPOP_REPLY);
        memcpy(p.tha, mac, 6);
        if (sendto(m->arp_fd, &p, sizeof(p), 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
                return -errno;
        return 0;
}

/* The NA's source: the interface's link-local address, as the kernel would
 * pick; the VIP itself (also assigned to the interface, RFC 4861 7.2.6) when
 * there is none. */
static void na_source(Manager *m, unsigned ifindex, const struct in6_addr *vip, struct in6_addr *ret)
{
        if (!addr_link_local(m, (int)ifindex, ret))
                *ret = *vip;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
        const uint8_t *p = data;

        for (size_t i = 0; i + 1 < len; i += 2)
                sum += (uint32_t)(p[i] << 8 | p[i + 1]);
        if (len & 1)
                sum += (uint32_t)(p[len - 1] << 8);
        return sum;
}

static int send_na(Manager *m, const Vip *v, unsigned ifindex, const uint8_t mac[static 6])
{
        struct __attribute__((packed)) {
                struct ip6_hdr ip;
                struct nd_neighbor_advert na;
                struct nd_opt_hdr opt;
                uint8_t mac[6];
        } p = {};
        const size_t icmp_len = sizeof(p) - sizeof(p.ip);
        struct sockaddr_ll sll = {
                .sll_family = AF_PACKET,
                .sll_protocol = htons(ETH_P_IPV6),
                .sll_ifindex = (int)ifindex,
                .sll_halen = 6,
                .sll_addr = {0x33, 0x33, 0, 0, 0, 0x01}, /* ff02::1 */
        };
        struct in6_addr src;
        uint32_t sum;

        na_source(m, ifindex, &v->addr.addr.in6, &src);
        p.ip.ip6_flow = htonl(6U << 28);
        p.ip.ip6_plen = htons((uint16_t)icmp_len);
        p.ip.ip6_nxt = IPPROTO_ICMPV6;
        p.ip.ip6_hlim = 255; /* RFC 4861: receivers drop ND messages with any other */
        p.ip.ip6_src = src;
        p.ip.ip6_dst = (struct in6_addr){{{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}}};

        p.na.nd_na_type = ND_NEIGHBOR_ADVERT;
        /* Unsolicited: S=0; O=1 so caches replace the old owner's address. */
        p.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
        p.na.nd_na_target = v->addr.addr.in6;
        p.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
        p.opt.nd_opt_len = 1; /* in units of 8 bytes */
        memcpy(p.mac, mac, 6);

        /* ICMPv6 checksum: pseudo-header (addresses, length, next header),
         * then the message with its checksum field zero. */
        sum = csum_add(0, &p.ip.ip6_src, sizeof(p.ip.ip6_src));
        sum = csum_add(sum, &p.ip.ip6_dst, sizeof(p.ip.ip6_dst));
        sum += (uint32_t)icmp_len + IPPROTO_ICMPV6;
        sum = csum_add(sum, &p.na, icmp_len);
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        p.na.nd_na_cksum = htons((uint16_t)~sum);

        if (sendto(m->arp_fd, &p, sizeof(p), 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
                return -errno;
        return 0;
}

int announce_send(Manager *m, const Vip *v)
{
        uint8_t mac[6];
        unsigned ifindex = if_nametoindex(v->ifname);
        int r;

        if (ifindex == 0)
                return -ENODEV;
        r = link_mac(m->arp_fd, v->ifname, mac);
        if (r == -EOPNOTSUPP)
                return 0;
        if (r < 0)
                return r;
        return v->addr.family == AF_INET ? send_garp(m, v, ifindex, mac) : send_na(m, v, ifindex, mac);
}

static int on_announce_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
        Manager *m = userdata;
        bool more = false;

        for (Service *s = m->services; s; s = s->next)
                for (size_t i = 0; i < s->n_vips; i++) {
                        Vip *v = s->vips[i];
                        int r;

                        if (v->announce_left == 0)
                                continue;
                        v->announce_left--;
                        r = announce_send(m, v);
                        if (r < 0)
                                log_debug_errno(r, "announcing %s on %s failed: %m",
                                                ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}),
                                                v->ifname);
                        more |= v->announce_left > 0;
                }
        if (more)
                (void)sd_event_source_set_time(source, usec + USEC_PER_SEC);
        (void)sd_event_source_set_enabled(source, more ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
        return 0;
}

void announce_start(Manager *m, Vip *v)
{
        int r;

        r = announce_send(m, v);
        if (r < 0)
                log_warning_errno(r, "announcing %s on %s failed: %m",
                                  ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), v->ifname);
        v->announce_left = ANNOUNCE_REPEAT - 1;

        if (!m->announce_timer) {
                r = sd_event_add_time_relative(m->event, &m->announce_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                               0, on_announce_timer, m);
                if (r < 0)
                        log_warning_errno(r, "cannot schedule announcements: %m");
                return;
        }
        if (sd_event_source_get_enabled(m->announce_timer, NULL) <= 0) {
                (void)sd_event_source_set_time_relative(m->announce_timer, USEC_PER_SEC);
                (void)sd_event_source_set_enabled(m->announce_timer, SD_EVENT_ONESHOT);
        }
}
