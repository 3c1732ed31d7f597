/* SPDX-License-Identifier: Apache-2.0 */
#include "addr.h"

#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <stdio.h>
#include <sys/socket.h>

#include "array.h"
#include "announce.h"
#include "dad.h"
#include "log.h"

/* Address events come in bursts (an interface going away takes all its
 * addresses with it); a large buffer makes an overrun rare, and an overrun
 * is answered with a full dump anyway. */
#define ADDR_WATCH_RCVBUF (4 * 1024 * 1024)

static int nl_to_errno(int e)
{
        switch (-abs(e)) {
        case -NLE_EXIST:
                return -EEXIST;
        case -NLE_NOADDR:
        case -NLE_OBJ_NOTFOUND:
                return -EADDRNOTAVAIL;
        case -NLE_NODEV:
                return -ENODEV;
        case -NLE_PERM:
                return -EPERM;
        case -NLE_NOMEM:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static struct rtnl_addr *vip_to_rtnl(const Vip *v, bool for_add, int *ret_error)
{
        struct rtnl_addr *ra;
        struct nl_addr *local;
        unsigned ifindex = if_nametoindex(v->ifname);
        int r;

        if (ifindex == 0) {
                *ret_error = -ENODEV;
                return NULL;
        }
        ra = rtnl_addr_alloc();
        local = nl_addr_build(v->addr.family, &v->addr.addr, v->addr.family == AF_INET6 ? 16 : 4);
        if (!ra || !local) {
                rtnl_addr_put(ra);
                nl_addr_put(local);
                *ret_error = -ENOMEM;
                return NULL;
        }
        nl_addr_set_prefixlen(local, (int)family_max_prefixlen(v->addr.family));
        rtnl_addr_set_ifindex(ra, (int)ifindex);
        rtnl_addr_set_family(ra, v->addr.family);
        r = rtnl_addr_set_local(ra, local);
        nl_addr_put(local);
        if (r < 0) {
                rtnl_addr_put(ra);
                *ret_error = nl_to_errno(r);
                return NULL;
        }
        rtnl_addr_set_prefixlen(ra, (int)family_max_prefixlen(v->addr.family));
        if (for_add) {
                rtnl_addr_set_valid_lifetime(ra, 0xffffffffU);
                rtnl_addr_set_preferred_lifetime(ra, 0);
        }
        return ra;
}

int addr_add(Manager *m, const Vip *v)
{
        struct rtnl_addr *ra;
        struct nl_msg *msg = NULL;
        int r = 0;

        ra = vip_to_rtnl(v, true, &r);
        if (!ra)
                return r;
        if (v->addr.family == AF_INET6 && m->config->ipv6_nodad)
                rtnl_addr_set_flags(ra, IFA_F_NODAD);
        /* Create only (NLM_F_EXCL, never NLM_F_REPLACE): an address that is
         * already there is someone else's, and replacing it would rewrite
         * its prefix length's lifetimes (IPv6 matches on the address
         * alone). The marker makes it ours across restarts. */
        r = rtnl_addr_build_add_request(ra, NLM_F_EXCL, &msg);
        rtnl_addr_put(ra);
        if (r < 0)
                return nl_to_errno(r);
        r = nla_put_u8(msg, IFA_PROTO, KVNETD_ADDR_PROTO);
        if (r < 0) {
                nlmsg_free(msg);
                return -ENOMEM;
        }
        r = nl_send_sync(m->nl, msg); /* frees msg */
        return r < 0 ? nl_to_errno(r) : 0;
}

int addr_del(Manager *m, const Vip *v)
{
        struct rtnl_addr *ra;
        int r = 0;

        ra = vip_to_rtnl(v, false, &r);
        if (!ra)
                return r == -ENODEV ? 0 : r; /* gone with its interface */
        r = rtnl_addr_delete(m->nl, ra, 0);
        rtnl_addr_put(ra);
        if (r < 0 && (r == -NLE_NOADDR || r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV))
                return 0;
        return r < 0 ? nl_to_errno(r) : 0;
}

static bool interface_allowed(const Config *c, const char *ifname)
{
        for (char **i = c->interfaces; i && *i; i++)
                if (streq(*i, ifname))
                        return true;
        return false;
}

static bool in_ranges(const Config *c, const IpAddr *a)
{
        for (size_t i = 0; i < c->n_vip_ranges; i++)
                if (ip_prefix_contains(&c->vip_ranges[i], a))
                        return true;
        return false;
}

/* One address of a dump, as the kernel reports it. */
typedef struct KernelAddr {
        IpAddr addr;
        int ifindex;
        unsigned prefixlen;
        uint8_t proto;  /* IFA_PROTO, 0 if absent */
        uint32_t flags; /* IFA_F_* */
} KernelAddr;

typedef int (*addr_dump_fn)(const KernelAddr *ka, void *userdata);

typedef struct DumpContext {
        addr_dump_fn fn;
        void *userdata;
        int error;
} DumpContext;

/* The address an RTM_NEWADDR or RTM_DELADDR message reports; returns the
 * message's type, or 0 for another message, another family or a malformed
 * one. */
static int kernel_addr_from_message(struct nl_msg *msg, KernelAddr *ret)
{
        struct nlmsghdr *h = nlmsg_hdr(msg);
        struct nlattr *tb[IFA_MAX + 1];
        struct ifaddrmsg *ifa;
        struct nlattr *a;

        if (h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR)
                return 0;
        if (nlmsg_parse(h, sizeof(struct ifaddrmsg), tb, IFA_MAX, NULL) < 0)
                return 0;
        ifa = nlmsg_data(h);
        if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
                return 0;
        /* IPv4: IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links);
         * IPv6: IFA_ADDRESS only. */
        a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
        if (!a || nla_len(a) != (ifa->ifa_family == AF_INET6 ? 16 : 4))
                return 0;
        *ret = (KernelAddr){.addr.family = ifa->ifa_family,
                            .ifindex = (int)ifa->ifa_index,
                            .prefixlen = ifa->ifa_prefixlen};
        memcpy(&ret->addr.addr, nla_data(a), (size_t)nla_len(a));
        if (tb[IFA_PROTO] && nla_len(tb[IFA_PROTO]) >= 1)
                ret->proto = nla_get_u8(tb[IFA_PROTO]);
        ret->flags =
                tb[IFA_FLAGS] && nla_len(tb[IFA_FLAGS]) >= 4 ? nla_get_u32(tb[IFA_FLAGS]) : ifa->ifa_flags;
        return h->nlmsg_type;
}

static int on_dump_message(struct nl_msg *msg, void *userdata)
{
        DumpContext *ctx = userdata;
        KernelAddr ka;
        int r;

        if (ctx->error < 0 || kernel_addr_from_message(msg, &ka) != RTM_NEWADDR)
                return NL_OK;
        r = ctx->fn(&ka, ctx->userdata);
        if (r < 0)
                ctx->error = r;
        return NL_OK;
}

/* Every address of one family on the node, any interface, any prefix. */
static int addr_dump(Manager *m, int family, addr_dump_fn fn, void *userdata)
{
        struct ifaddrmsg req = {.ifa_family = (unsigned char)family};
        DumpContext ctx = {.fn = fn, .userdata = userdata};
        struct nl_cb *cb;
        int r;

        cb = nl_cb_alloc(NL_CB_DEFAULT);
        if (!cb)
                return -ENOMEM;
        (void)nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_dump_message, &ctx);
        r = nl_send_simple(m->nl, RTM_GETADDR, NLM_F_DUMP, &req, sizeof(req));
        if (r >= 0)
                r = nl_recvmsgs(m->nl, cb);
        nl_cb_put(cb);
        if (r < 0)
                return nl_to_errno(r);
        return ctx.error;
}

typedef struct ListContext {
        Manager *m;
        AddrInfo *v;
        size_t n, cap;
} ListContext;

static int on_list_vip(const KernelAddr *ka, void *userdata)
{
        ListContext *ctx = userdata;
        AddrInfo ai = {.addr = ka->addr};

        /* Ours: our marker, host prefix, in our ranges, on our interfaces.
         * Anything else, even a /32 in a VIP range, is not kvnetd's. */
        if (ka->proto != KVNETD_ADDR_PROTO || ka->prefixlen != family_max_prefixlen(ka->addr.family))
                return 0;
        if (!if_indextoname((unsigned)ka->ifindex, ai.ifname))
                return 0;
        if (!interface_allowed(ctx->m->config, ai.ifname) || !in_ranges(ctx->m->config, &ai.addr))
                return 0;
        if (ARRAY_RESERVE(ctx->v, ctx->cap, ctx->n + 1) < 0)
                return -ENOMEM;
        ctx->v[ctx->n++] = ai;
        return 0;
}

int addr_list_vips(Manager *m, AddrInfo **ret, size_t *ret_n)
{
        ListContext ctx = {.m = m};
        int r;

        r = addr_dump(m, AF_INET, on_list_vip, &ctx);
        if (r >= 0)
                r = addr_dump(m, AF_INET6, on_list_vip, &ctx);
        if (r < 0) {
                free(ctx.v);
                return r;
        }
        *ret = ctx.v;
        *ret_n = ctx.n;
        return 0;
}

typedef struct FindContext {
        const IpAddr *addr;
        KernelAddr found;
        bool any;
} FindContext;

static int on_find(const KernelAddr *ka, void *userdata)
{
        FindContext *ctx = userdata;

        if (!ctx->any && ip_addr_equal(&ka->addr, ctx->addr)) {
                ctx->found = *ka;
                ctx->any = true;
        }
        return 0;
}

static void watch_drain(Manager *m);
static int index_rebuild(Manager *m);

int addr_check_unused(Manager *m, const IpAddr *a, char *ret_message, size_t size)
{
        FindContext ctx = {.addr = a};
        char ifname[IFNAMSIZ] = "?", buf[INET6_ADDRSTRLEN];
        int r = 0;

        /* The index, made current; the dump only to word a refusal. */
        watch_drain(m);
        if (m->node_addrs_stale)
                r = index_rebuild(m);
        if (r >= 0 && !podmap_get(&m->node_addrs, a))
                return 0;
        r = addr_dump(m, a->family, on_find, &ctx);
        if (r < 0) {
                snprintf(ret_message, size, "address: cannot list the node's addresses: %s", strerror(-r));
                return r;
        }
        if (!ctx.any)
                return 0;
        (void)if_indextoname((unsigned)ctx.found.ifindex, ifname);
        snprintf(ret_message, size,
                 "address: %s is already on this node as %s/%u on %s, %s; kvnetd never changes "
                 "an address it did not add",
                 ip_addr_to_string(a, buf), buf, ctx.found.prefixlen, ifname,
                 ctx.found.proto == KVNETD_ADDR_PROTO
                         ? "left by an earlier kvnetd outside its current ranges or "
                           "interfaces"
                         : "not kvnetd's");
        return -EADDRINUSE;
}

int addr_reconcile(Manager *m)
{
        _cleanup_free_ AddrInfo *have = NULL;
        size_t n_have = 0;
        int r;

        r = addr_list_vips(m, &have, &n_have);
        if (r < 0)
                return log_warning_errno(r, "cannot list addresses for reconcile: %m");
        _cleanup_(podmap_done) PodMap by_addr = {};

        for (size_t k = 0; k < n_have; k++)
                if (podmap_put(&by_addr, &have[k].addr, &have[k]) < 0)
                        return -ENOMEM;
        for (Service *s = m->services; s; s = s->next)
                for (size_t i = 0; i < s->n_vips; i++) {
                        Vip *v = s->vips[i];
                        const AddrInfo *found = podmap_get(&by_addr, &v->addr);

                        if (found && streq(found->ifname, v->ifname))
                                continue;
                        r = addr_add(m, v);
                        if (r < 0) {
                                log_warning_errno(r,
                                                  "VIP %s of %s on %s is missing and cannot be restored: %m",
                                                  ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}),
                                                  s->key, v->ifname);
                                continue;
                        }
                        log_notice("VIP %s of %s was missing on %s: restored",
                                   ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), s->key,
                                   v->ifname);
                        announce_start(m, v);
                }
        return 0;
}

/* The node's addresses, all interfaces (addr_check_unused() reads it
 * instead of dumping every address per GrantVip): address -> ifindex << 1,
 * with bit 0 set once a second interface has shown the same address. Only
 * then can a removal not tell whether the address is still elsewhere, and
 * the index is rebuilt from a dump. */
static void index_update(Manager *m, const IpAddr *a, int ifindex, bool add)
{
        uintptr_t v = (uintptr_t)podmap_get(&m->node_addrs, a);

        if (m->node_addrs_stale)
                return;
        if (add) {
                uintptr_t want = (uintptr_t)ifindex << 1;
                if (v == 0)
                        v = want;
                else if ((v & ~(uintptr_t)1) != want)
                        v |= 1;
                if (podmap_put(&m->node_addrs, a, (void *)v) < 0)
                        m->node_addrs_stale = true;
        } else if (v & 1)
                m->node_addrs_stale = true;
        else if (v != 0)
                podmap_remove(&m->node_addrs, a);
}

/* Each interface's IPv6 link-local address, the source of an unsolicited
 * NA (announce.c), kept from the same events instead of listing every
 * address of the node per announcement. */
static void link_local_update(Manager *m, const IpAddr *a, int ifindex, bool add)
{
        if (a->family != AF_INET6 || !IN6_IS_ADDR_LINKLOCAL(&a->addr.in6))
                return;
        for (size_t i = 0; i < m->n_link_locals; i++)
                if (m->link_locals[i].ifindex == ifindex) {
                        if (add)
                                m->link_locals[i].addr = a->addr.in6;
                        else if (IN6_ARE_ADDR_EQUAL(&m->link_locals[i].addr, &a->addr.in6))
                                m->link_locals[i] = m->link_locals[--m->n_link_locals];
                        return;
                }
        if (add && ARRAY_RESERVE(m->link_locals, m->cap_link_locals, m->n_link_locals + 1) >= 0)
                m->link_locals[m->n_link_locals++] = (LinkLocal){.ifindex = ifindex, .addr = a->addr.in6};
}

bool addr_link_local(Manager *m, int ifindex, struct in6_addr *ret)
{
        /* No drain here: this runs inside the watch's own callbacks too
         * (a VIP put back is announced at once); the loop keeps it current. */
        for (size_t i = 0; i < m->n_link_locals; i++)
                if (m->link_locals[i].ifindex == ifindex) {
                        *ret = m->link_locals[i].addr;
                        return true;
                }
        return false;
}

static int on_addr_message(struct nl_msg *msg, void *userdata)
{
        Manager *m = userdata;
        char ifname[IFNAMSIZ];
        KernelAddr ka;
        Vip *v;
        int r, type = kernel_addr_from_message(msg, &ka);

        if (type == 0)
                return NL_OK;
        index_update(m, &ka.addr, ka.ifindex, type == RTM_NEWADDR);
        link_local_update(m, &ka.addr, ka.ifindex, type == RTM_NEWADDR);
        if (type == RTM_NEWADDR) {
                /* The end of a VIP's duplicate-address detection. */
                v = manager_find_vip(m, &ka.addr);
                if (v && v->tentative && ka.prefixlen == family_max_prefixlen(ka.addr.family)) {
                        if (ka.flags & IFA_F_DADFAILED)
                                vip_dad_done(v, -EADDRINUSE,
                                             "address: duplicate-address detection failed: another host on "
                                             "the link has it");
                        else if (!(ka.flags & IFA_F_TENTATIVE))
                                vip_dad_done(v, 0, NULL);
                }
                return NL_OK;
        }
        if (type != RTM_DELADDR)
                return NL_OK;
        if (!if_indextoname((unsigned)ka.ifindex, ifname))
                return NL_OK;

        /* Ours, and someone else removed it (we forget a VIP before we
         * delete it). */
        v = manager_find_vip(m, &ka.addr);
        if (!v || !v->service || !streq(v->ifname, ifname))
                return NL_OK;
        r = addr_add(m, v);
        if (r < 0)
                log_warning_errno(r, "VIP %s of %s was removed from %s and cannot be restored: %m",
                                  ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), v->service->key,
                                  ifname);
        else {
                log_notice("VIP %s of %s was removed from %s by someone else: restored",
                           ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), v->service->key, ifname);
                announce_start(m, v);
        }
        return NL_OK;
}

/* Reads every address event already queued: the index is then as current
 * as a dump made now would be. */
static void watch_drain(Manager *m)
{
        bool overrun = false;
        int r;

        for (;;) {
                r = nl_recvmsgs_default(m->nl_watch);
                if (r >= 0)
                        continue;
                if (r == -NLE_AGAIN)
                        break;
                if (r == -NLE_NOMEM) {
                        /* ENOBUFS: the kernel dropped events. */
                        overrun = true;
                        continue;
                }
                log_warning("address watch: %s", nl_geterror(r));
                break;
        }
        if (overrun) {
                log_notice("address events were lost (ENOBUFS): dumping and reconciling");
                m->node_addrs_stale = true;
                (void)addr_reconcile(m);
        }
}

static int on_index_dump(const KernelAddr *ka, void *userdata)
{
        Manager *m = userdata;

        index_update(m, &ka->addr, ka->ifindex, true);
        link_local_update(m, &ka->addr, ka->ifindex, true);
        return 0;
}

static int index_rebuild(Manager *m)
{
        int r;

        podmap_done(&m->node_addrs);
        m->n_link_locals = 0;
        m->node_addrs_stale = false;
        r = addr_dump(m, AF_INET, on_index_dump, m);
        if (r >= 0)
                r = addr_dump(m, AF_INET6, on_index_dump, m);
        if (r >= 0 && m->node_addrs_stale)
                r = -ENOMEM;
        if (r < 0)
                m->node_addrs_stale = true;
        return r;
}

static int on_watch_readable(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        (void)source;
        (void)fd;
        (void)revents;
        watch_drain(userdata);
        return 0;
}

int addr_open(Manager *m)
{
        int r, fd, sz = ADDR_WATCH_RCVBUF;

        m->nl = nl_socket_alloc();
        m->nl_watch = nl_socket_alloc();
        if (!m->nl || !m->nl_watch)
                return -ENOMEM;
        r = nl_connect(m->nl, NETLINK_ROUTE);
        if (r < 0)
                return nl_to_errno(r);

        nl_socket_disable_seq_check(m->nl_watch);
        r = nl_socket_modify_cb(m->nl_watch, NL_CB_VALID, NL_CB_CUSTOM, on_addr_message, m);
        if (r < 0)
                return nl_to_errno(r);
        r = nl_connect(m->nl_watch, NETLINK_ROUTE);
        if (r < 0)
                return nl_to_errno(r);
        r = nl_socket_add_memberships(m->nl_watch, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, 0);
        if (r < 0)
                return nl_to_errno(r);
        r = nl_socket_set_nonblocking(m->nl_watch);
        if (r < 0)
                return nl_to_errno(r);
        fd = nl_socket_get_fd(m->nl_watch);
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
                (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        /* Subscribed first, then dumped: no address falls between. */
        (void)index_rebuild(m);
        return sd_event_add_io(m->event, &m->nl_watch_source, fd, EPOLLIN, on_watch_readable, m);
}

void addr_close(Manager *m)
{
        m->nl_watch_source = sd_event_source_disable_unref(m->nl_watch_source);
        if (m->nl_watch)
                nl_socket_free(m->nl_watch);
        if (m->nl)
                nl_socket_free(m->nl);
        m->nl_watch = m->nl = NULL;
        podmap_done(&m->node_addrs);
        m->link_locals = mfree(m->link_locals);
        m->n_link_locals = m->cap_link_locals = 0;
}
