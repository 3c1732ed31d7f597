/* SPDX-License-Identifier: Apache-2.0 */
#include "conntrack.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "nft.h"

/* nf_conntrack_netlink.c's CTA_FILTER_F_CTA_IP_SRC: not in the UAPI
 * headers (libnetfilter_conntrack has its own copy too). */
#define CT_FILTER_F_IP_SRC (1u << 0)

/* Deletes are sent in batches of this size: one sendmsg, which the kernel
 * handles before it returns (ctnetlink is synchronous). */
#define DELETE_BATCH_SIZE (64 * 1024)
#define DUMP_BUFFER_SIZE (64 * 1024)

/* nft.c's NETLINK_NETFILTER socket (ctnetlink is a netfilter subsystem too). */
static int socket_open(struct mnl_socket **ret)
{
        int size = 1024 * 1024;
        int r = nft_socket_open(ret);

        if (r < 0)
                return r;
        /* Room for the error replies of a batch of deletes (entries that
         * went away meanwhile): losing some only skews the count. */
        (void)setsockopt(mnl_socket_get_fd(*ret), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        return 0;
}

int conntrack_open(Conntrack *ct)
{
        int r;

        r = socket_open(&ct->dump);
        if (r < 0)
                return r;
        r = socket_open(&ct->del);
        if (r < 0) {
                conntrack_close(ct);
                return r;
        }
        return 0;
}

void conntrack_close(Conntrack *ct)
{
        if (ct->dump)
                mnl_socket_close(ct->dump);
        if (ct->del)
                mnl_socket_close(ct->del);
        ct->dump = ct->del = NULL;
}

typedef struct Pass {
        Conntrack *ct;
        const PodMap *want;
        char *out; /* delete messages not sent yet */
        size_t out_len;
        int64_t sent, failed;
} Pass;

static void pass_done(Pass *p)
{
        free(p->out);
}

/* Counts the error replies to deletes already handled; never blocks. */
static void read_delete_errors(Pass *p)
{
        char buf[16 * 1024];

        for (;;) {
                ssize_t r = recv(mnl_socket_get_fd(p->ct->del), buf, sizeof(buf), MSG_DONTWAIT);
                int n = (int)r;

                if (r < 0 && errno == ENOBUFS) {
                        /* Replies were lost; the count is a little high. */
                        continue;
                }
                if (r <= 0)
                        return;
                for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(h, n);
                     h = mnl_nlmsg_next(h, &n))
                        if (h->nlmsg_type == NLMSG_ERROR &&
                            h->nlmsg_len >= NLMSG_HDRLEN + sizeof(struct nlmsgerr) &&
                            ((const struct nlmsgerr *)mnl_nlmsg_get_payload(h))->error != 0)
                                p->failed++;
        }
}

static int flush_deletes(Pass *p)
{
        size_t msgs = 0;

        if (p->out_len == 0)
                return 0;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)p->out; (char *)h < p->out + p->out_len;
             h = (const struct nlmsghdr *)((const char *)h + h->nlmsg_len))
                msgs++;
        if (mnl_socket_sendto(p->ct->del, p->out, p->out_len) < 0) {
                p->out_len = 0;
                return -errno;
        }
        p->out_len = 0;
        p->sent += (int64_t)msgs;
        read_delete_errors(p);
        return 0;
}

/* The original source of an entry, from its CTA_TUPLE_ORIG. */
static int tuple_source(const struct nlattr *orig, int family, IpAddr *ret)
{
        const struct nlattr *a, *b;

        mnl_attr_for_each_nested(a, orig)
        {
                if (mnl_attr_get_type(a) != CTA_TUPLE_IP)
                        continue;
                mnl_attr_for_each_nested(b, a)
                {
                        uint16_t type = mnl_attr_get_type(b);
                        uint16_t len = mnl_attr_get_payload_len(b);

                        if (family == AF_INET && type == CTA_IP_V4_SRC && len == 4) {
                                *ret = (IpAddr){.family = AF_INET};
                                memcpy(&ret->addr.in, mnl_attr_get_payload(b), 4);
                                return 0;
                        }
                        if (family == AF_INET6 && type == CTA_IP_V6_SRC && len == 16) {
                                *ret = (IpAddr){.family = AF_INET6};
                                memcpy(&ret->addr.in6, mnl_attr_get_payload(b), 16);
                                return 0;
                        }
                }
        }
        return -ENOENT;
}

static int queue_delete(Pass *p, uint8_t family, const struct nlattr *orig, const struct nlattr *zone,
                        const struct nlattr *id)
{
        size_t need = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct nfgenmsg)) + MNL_ALIGN(orig->nla_len) +
                      (zone ? MNL_ALIGN(zone->nla_len) : 0) + (id ? MNL_ALIGN(id->nla_len) : 0);
        struct nlmsghdr *h;
        struct nfgenmsg *g;
        int r;

        if (need > DELETE_BATCH_SIZE)
                return 0; /* not a tuple we could have made */
        if (p->out_len + need > DELETE_BATCH_SIZE) {
                r = flush_deletes(p);
                if (r < 0)
                        return r;
        }
        h = mnl_nlmsg_put_header(p->out + p->out_len);
        h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
        h->nlmsg_flags = NLM_F_REQUEST; /* no ACK: only failures answer */
        h->nlmsg_seq = ++p->ct->seq;
        g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
        g->nfgen_family = family;
        g->version = NFNETLINK_V0;
        /* The entry's own tuple (and zone), and its id: the kernel deletes
         * exactly the entry we saw, never one made since with the same
         * tuple, which already met the new rules. */
        mnl_attr_put(h, orig->nla_type, mnl_attr_get_payload_len(orig), mnl_attr_get_payload(orig));
        if (zone)
                mnl_attr_put(h, zone->nla_type, mnl_attr_get_payload_len(zone), mnl_attr_get_payload(zone));
        if (id)
                mnl_attr_put(h, id->nla_type, mnl_attr_get_payload_len(id), mnl_attr_get_payload(id));
        p->out_len += h->nlmsg_len;
        return 0;
}

static int on_entry(const struct nlmsghdr *h, void *userdata)
{
        Pass *p = userdata;
        const struct nfgenmsg *g = mnl_nlmsg_get_payload(h);
        const struct nlattr *orig = NULL, *zone = NULL, *id = NULL;
        const struct nlattr *a;
        IpAddr src;

        if (h->nlmsg_len < MNL_NLMSG_HDRLEN + sizeof(*g))
                return MNL_CB_OK;
        mnl_attr_for_each(a, h, sizeof(*g)) switch (mnl_attr_get_type(a))
        {
        case CTA_TUPLE_ORIG:
                orig = a;
                break;
        case CTA_ZONE:
                zone = a;
                break;
        case CTA_ID:
                id = a;
                break;
        default:
                break;
        }
        /* Matched here too, not only by the kernel's filter: a kernel that
         * ignores CTA_FILTER sends every entry, and is only slower. */
        if (!orig || tuple_source(orig, g->nfgen_family, &src) < 0 || !podmap_get(p->want, &src))
                return MNL_CB_OK;
        return queue_delete(p, g->nfgen_family, orig, zone, id) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
}

/* One dump of family's entries, of those from source only if not NULL. */
static int dump(Pass *p, int family, const IpAddr *source, const atomic_bool *abort)
{
        _cleanup_free_ char *buf = malloc(DUMP_BUFFER_SIZE);
        struct nlmsghdr *h;
        struct nfgenmsg *g;
        uint32_t seq, portid = mnl_socket_get_portid(p->ct->dump);
        int r;

        if (!buf)
                return -ENOMEM;
        h = mnl_nlmsg_put_header(buf);
        h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
        h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        h->nlmsg_seq = seq = ++p->ct->seq;
        g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
        g->nfgen_family = (uint8_t)family; /* the kernel dumps this family only */
        g->version = NFNETLINK_V0;
        if (source) {
                struct nlattr *t = mnl_attr_nest_start(h, CTA_TUPLE_ORIG);
                struct nlattr *ip = mnl_attr_nest_start(h, CTA_TUPLE_IP);

                if (family == AF_INET)
                        mnl_attr_put(h, CTA_IP_V4_SRC, 4, &source->addr.in);
                else
                        mnl_attr_put(h, CTA_IP_V6_SRC, 16, &source->addr.in6);
                mnl_attr_nest_end(h, ip);
                mnl_attr_nest_end(h, t);
                t = mnl_attr_nest_start(h, CTA_FILTER);
                mnl_attr_put_u32(h, CTA_FILTER_ORIG_FLAGS, CT_FILTER_F_IP_SRC);
                mnl_attr_put_u32(h, CTA_FILTER_REPLY_FLAGS, 0);
                mnl_attr_nest_end(h, t);
        }
        if (mnl_socket_sendto(p->ct->dump, h, h->nlmsg_len) < 0)
                return -errno;
        for (;;) {
                ssize_t n = mnl_socket_recvfrom(p->ct->dump, buf, DUMP_BUFFER_SIZE);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                r = mnl_cb_run(buf, (size_t)n, seq, portid, on_entry, p);
                if (r == MNL_CB_STOP)
                        break;
                if (r < 0)
                        return errno > 0 ? -errno : -EIO;
                if (atomic_load(abort))
                        return -ECANCELED;
        }
        return flush_deletes(p);
}

/* The dump socket after a dump that did not end: the rest of it would
 * arrive as the answer to the next request. */
static void reopen_dump(Conntrack *ct)
{
        if (ct->dump)
                mnl_socket_close(ct->dump);
        ct->dump = NULL;
        (void)socket_open(&ct->dump);
}

int64_t conntrack_delete_sources(Conntrack *ct, const PodMap *want, const atomic_bool *abort)
{
        static const int families[] = {AF_INET, AF_INET6};
        _cleanup_(pass_done) Pass p = {.ct = ct, .want = want};
        int error = 0, r;

        p.out = malloc(DELETE_BATCH_SIZE);
        if (!p.out)
                return -ENOMEM;
        if (!ct->dump) {
                reopen_dump(ct);
                if (!ct->dump)
                        return -EIO;
        }
        for (size_t f = 0; f < ELEMENTSOF(families); f++) {
                size_t n = 0;

                for (size_t i = 0; i < want->size; i++)
                        n += want->entries[i].addr.family == families[f];
                if (n == 0)
                        continue;
                r = 0;
                /* IPv4 only: the kernel's IPv6 source filter is inverted
                 * (ctnetlink_filter_match_tuple() since 5.8, still in
                 * 6.18: it skips the entries *from* the address), so IPv6
                 * tables are dumped whole and matched here. */
                if (n <= CONNTRACK_FILTERED_MAX && families[f] == AF_INET) {
                        for (size_t i = 0; i < want->size && r >= 0; i++)
                                if (want->entries[i].addr.family == families[f])
                                        r = dump(&p, families[f], &want->entries[i].addr, abort);
                        if (r == -EINVAL || r == -EOPNOTSUPP) {
                                /* A kernel without filtered dumps (before
                                 * 5.8): the whole family, matched here. */
                                log_debug("conntrack: filtered dump refused (%s), dumping the whole table",
                                          strerror(-r));
                                r = dump(&p, families[f], NULL, abort);
                        }
                } else
                        r = dump(&p, families[f], NULL, abort);
                if (r < 0) {
                        reopen_dump(ct);
                        if (r == -ECANCELED)
                                return r;
                        error = r;
                }
        }
        if (error < 0 && p.sent == 0)
                return error;
        return p.sent - p.failed;
}
