/* SPDX-License-Identifier: Apache-2.0 */
/* New UDP flows, as fast as one core sends them: every datagram has a
 * source address, source port and destination port no earlier datagram of
 * this run had, so each one is a new conntrack entry and a new NAT decision
 * on the router it crosses.
 *
 *   flowgen COUNT DST SRC [SRC...]
 *
 * Sends COUNT IPv4/UDP datagrams to DST from a raw socket (IP_HDRINCL, so
 * any source address), cycling the sources, then the source port
 * (1024-65535), then the destination port (1-65535). Prints one line:
 * "sent N seconds S". The sink counts what arrived; this program only
 * offers load. Benchmark tool, not part of the daemons. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18
#define SPORT_FIRST 1024
#define SPORT_COUNT (65536 - SPORT_FIRST)

struct packet {
        struct iphdr ip;
        struct udphdr udp;
        char payload[PAYLOAD];
} __attribute__((packed));

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
        static struct packet pkts[BATCH];
        static struct iovec iov[BATCH];
        static struct mmsghdr msgs[BATCH];
        struct sockaddr_in dst = {.sin_family = AF_INET};
        uint32_t *srcs;
        unsigned long long count, sent = 0, flow = 0;
        size_t nsrc;
        int fd, one = 1;
        double t0, t1;

        if (argc < 4) {
                fprintf(stderr, "usage: flowgen COUNT DST SRC [SRC...]\n");
                return 2;
        }
        count = strtoull(argv[1], NULL, 10);
        if (inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) {
                fprintf(stderr, "flowgen: bad destination %s\n", argv[2]);
                return 2;
        }
        nsrc = (size_t)argc - 3;
        srcs = calloc(nsrc, sizeof(*srcs));
        if (!srcs)
                return 1;
        for (size_t i = 0; i < nsrc; i++)
                if (inet_pton(AF_INET, argv[3 + i], &srcs[i]) != 1) {
                        fprintf(stderr, "flowgen: bad source %s\n", argv[3 + i]);
                        return 2;
                }
        /* More flows than distinct tuples would repeat one: refuse. */
        if (count > (unsigned long long)nsrc * SPORT_COUNT * 65535ULL) {
                fprintf(stderr, "flowgen: %llu flows exceed the distinct tuples available\n", count);
                return 2;
        }

        fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
        if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) < 0) {
                fprintf(stderr, "flowgen: raw socket: %s\n", strerror(errno));
                return 1;
        }
        for (int i = 0; i < BATCH; i++) {
                struct packet *p = &pkts[i];

                p->ip.version = 4;
                p->ip.ihl = 5;
                p->ip.ttl = 64;
                p->ip.protocol = IPPROTO_UDP;
                p->ip.daddr = dst.sin_addr.s_addr;
                p->ip.tot_len = htons(sizeof(*p));
                p->udp.len = htons(sizeof(p->udp) + PAYLOAD);
                memcpy(p->payload, "kvegress-bench-flow", PAYLOAD);
                iov[i].iov_base = p;
                iov[i].iov_len = sizeof(*p);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = &dst;
                msgs[i].msg_hdr.msg_namelen = sizeof(dst);
        }

        t0 = now();
        while (sent < count) {
                unsigned n = count - sent < BATCH ? (unsigned)(count - sent) : BATCH;
                int r;

                for (unsigned i = 0; i < n; i++, flow++) {
                        unsigned long long rest = flow / nsrc;

                        pkts[i].ip.saddr = srcs[flow % nsrc];
                        pkts[i].udp.source = htons(SPORT_FIRST + rest % SPORT_COUNT);
                        pkts[i].udp.dest = htons(1 + (rest / SPORT_COUNT) % 65535);
                }
                r = sendmmsg(fd, msgs, n, 0);
                if (r < 0) {
                        if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
                                flow -= n;
                                continue;
                        }
                        fprintf(stderr, "flowgen: sendmmsg: %s\n", strerror(errno));
                        return 1;
                }
                /* A short send: resend the rest with the same tuples. */
                flow -= n - (unsigned)r;
                sent += (unsigned)r;
        }
        t1 = now();
        printf("sent %llu seconds %.6f\n", sent, t1 - t0);
        close(fd);
        free(srcs);
        return 0;
}
