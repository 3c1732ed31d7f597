/* SPDX-License-Identifier: Apache-2.0 */
/* Fills the conntrack table of the current network namespace fast: COUNT
 * UDP entries created over ctnetlink, a few hundred per sendmsg, without
 * acknowledgements (the kernel still reports failures).
 *
 *   ctfill COUNT SRC_FIRST SRC_COUNT DST [TIMEOUT_S]
 *
 * IPv4 or IPv6 (SRC_FIRST and DST of the same family). Entry i goes from
 * SRC_FIRST + (i % SRC_COUNT) (added to the last 32 bits) to DST, source port
 * 1024 + (i / SRC_COUNT) % 64512, destination port from the rest, so no
 * two entries share a tuple. Prints "inserted N failed F seconds S".
 * Benchmark tool, not part of the daemons. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MSG_MAX 256

struct buf {
        char data[BUF_SIZE];
        size_t len;
};

static void *put(struct buf *b, size_t n)
{
        void *p = b->data + b->len;

        memset(p, 0, NLMSG_ALIGN(n));
        b->len += NLMSG_ALIGN(n);
        return p;
}

static struct nlattr *attr_put(struct buf *b, uint16_t type, const void *data, size_t n)
{
        struct nlattr *a = put(b, NLA_HDRLEN + n);

        a->nla_type = type;
        a->nla_len = NLA_HDRLEN + n;
        if (data)
                memcpy((char *)a + NLA_HDRLEN, data, n);
        return a;
}

static size_t nest_start(struct buf *b, uint16_t type)
{
        size_t off = b->len;

        attr_put(b, type | NLA_F_NESTED, NULL, 0);
        return off;
}

static void nest_end(struct buf *b, size_t off)
{
        ((struct nlattr *)(b->data + off))->nla_len = b->len - off;
}

typedef union {
        struct in_addr in;
        struct in6_addr in6;
} addr_t;

static void tuple(struct buf *b, uint16_t type, int family, const addr_t *src, const addr_t *dst,
                  uint16_t sport, uint16_t dport)
{
        size_t t = nest_start(b, type), n;
        uint8_t proto = IPPROTO_UDP;

        n = nest_start(b, CTA_TUPLE_IP);
        if (family == AF_INET) {
                attr_put(b, CTA_IP_V4_SRC, &src->in, 4);
                attr_put(b, CTA_IP_V4_DST, &dst->in, 4);
        } else {
                attr_put(b, CTA_IP_V6_SRC, &src->in6, 16);
                attr_put(b, CTA_IP_V6_DST, &dst->in6, 16);
        }
        nest_end(b, n);
        n = nest_start(b, CTA_TUPLE_PROTO);
        attr_put(b, CTA_PROTO_NUM, &proto, 1);
        attr_put(b, CTA_PROTO_SRC_PORT, &sport, 2);
        attr_put(b, CTA_PROTO_DST_PORT, &dport, 2);
        nest_end(b, n);
        nest_end(b, t);
}

/* Reads whatever the kernel sent back; returns the number of errors. */
static unsigned long drain(int fd, int flags, uint32_t *acked_seq)
{
        static char rbuf[256 * 1024];
        unsigned long errors = 0;

        for (;;) {
                ssize_t n = recv(fd, rbuf, sizeof(rbuf), flags);

                if (n <= 0)
                        return errors;
                for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, (size_t)n);
                     h = NLMSG_NEXT(h, n)) {
                        if (h->nlmsg_type != NLMSG_ERROR)
                                continue;
                        struct nlmsgerr *e = NLMSG_DATA(h);
                        if (e->error != 0)
                                errors++;
                        if (acked_seq)
                                *acked_seq = h->nlmsg_seq;
                }
                if (!(flags & MSG_DONTWAIT))
                        return errors;
        }
}

int main(int argc, char **argv)
{
        static struct buf b;
        struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
        addr_t first, dst;
        int family;
        unsigned long long count, i;
        unsigned long failed = 0, nsrc;
        uint32_t timeout = htonl(3600), seq = 0, acked = 0;
        int fd, rcvbuf = 8 * 1024 * 1024;
        struct timespec t0, t1;

        if (argc < 5) {
                fprintf(stderr, "usage: ctfill COUNT SRC_FIRST SRC_COUNT DST [TIMEOUT_S]\n");
                return 2;
        }
        count = strtoull(argv[1], NULL, 10);
        nsrc = strtoul(argv[3], NULL, 10);
        family = strchr(argv[2], ':') ? AF_INET6 : AF_INET;
        if (inet_pton(family, argv[2], &first) != 1 || inet_pton(family, argv[4], &dst) != 1 || nsrc == 0) {
                fprintf(stderr, "ctfill: bad arguments\n");
                return 2;
        }
        if (argc > 5)
                timeout = htonl((uint32_t)strtoul(argv[5], NULL, 10));
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
        if (fd < 0) {
                fprintf(stderr, "ctfill: netlink socket: %s\n", strerror(errno));
                return 1;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < count;) {
                b.len = 0;
                for (int m = 0; m < MSG_MAX && i < count; m++, i++) {
                        size_t start = b.len;
                        struct nlmsghdr *h = put(&b, NLMSG_HDRLEN);
                        struct nfgenmsg *g = put(&b, sizeof(*g));
                        addr_t src = first;
                        uint32_t *low = family == AF_INET ? &src.in.s_addr : &src.in6.s6_addr32[3];
                        unsigned long long rest = i / nsrc;
                        uint16_t sport = htons(1024 + rest % 64512),
                                 dport = htons(1 + (rest / 64512) % 65535);

                        *low = htonl(ntohl(*low) + (uint32_t)(i % nsrc));
                        g->nfgen_family = (uint8_t)family;
                        g->version = NFNETLINK_V0;
                        tuple(&b, CTA_TUPLE_ORIG, family, &src, &dst, sport, dport);
                        tuple(&b, CTA_TUPLE_REPLY, family, &dst, &src, dport, sport);
                        attr_put(&b, CTA_TIMEOUT, &timeout, 4);
                        h = (struct nlmsghdr *)(b.data + start);
                        h->nlmsg_len = b.len - start;
                        h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
                        h->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
                        h->nlmsg_seq = ++seq;
                        /* The last message of the run asks for an ack: when it
                         * arrives, the kernel has handled every message. */
                        if (i + 1 == count)
                                h->nlmsg_flags |= NLM_F_ACK;
                }
                if (sendto(fd, b.data, b.len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
                        fprintf(stderr, "ctfill: sendto: %s\n", strerror(errno));
                        return 1;
                }
                failed += drain(fd, MSG_DONTWAIT, &acked);
        }
        while (count > 0 && acked != seq)
                failed += drain(fd, 0, &acked);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("inserted %llu failed %lu seconds %.3f\n", count - failed, failed,
               (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
        close(fd);
        return failed ? 1 : 0;
}
