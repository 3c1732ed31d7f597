/* SPDX-License-Identifier: Apache-2.0 */
#include "conntrack.h"

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>
#include <sys/socket.h>

#include "log.h"

int conntrack_open(Manager *m)
{
        int r;

        m->nl_ct = nl_socket_alloc();
        if (!m->nl_ct)
                return -ENOMEM;
        r = nfnl_connect(m->nl_ct);
        return r < 0 ? -EIO : 0;
}

void conntrack_close(Manager *m)
{
        if (m->nl_ct)
                nl_socket_free(m->nl_ct);
        m->nl_ct = NULL;
}

int conntrack_flush_sources(Manager *m, const IpAddr *addrs, size_t n)
{
        struct nl_cache *cache = NULL;
        PodMap want = {};
        int r, deleted = 0;

        if (n == 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                r = podmap_put(&want, &addrs[i], (void *)1);
                if (r < 0) {
                        podmap_done(&want);
                        return r;
                }
        }
        /* The kernel has no "delete by source" that older kernels honour
         * (a delete without a full tuple flushes the whole table), so dump
         * and delete each entry by its own tuple. */
        r = nfnl_ct_alloc_cache(m->nl_ct, &cache);
        if (r < 0) {
                podmap_done(&want);
                return log_warning_errno(EIO, "conntrack dump failed: %s", nl_geterror(r));
        }
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct nfnl_ct *ct = (struct nfnl_ct *)o;
                struct nl_addr *src = nfnl_ct_get_src(ct, 0);
                IpAddr a = {};

                if (!src)
                        continue;
                a.family = nl_addr_get_family(src);
                if ((a.family != AF_INET && a.family != AF_INET6) ||
                    nl_addr_get_len(src) != (a.family == AF_INET6 ? 16u : 4u))
                        continue;
                memcpy(&a.addr, nl_addr_get_binary_addr(src), nl_addr_get_len(src));
                if (!podmap_get(&want, &a))
                        continue;
                r = nfnl_ct_del(m->nl_ct, ct, 0);
                if (r < 0 && r != -NLE_OBJ_NOTFOUND)
                        log_debug("conntrack delete failed: %s", nl_geterror(r));
                else
                        deleted++;
        }
        nl_cache_free(cache);
        podmap_done(&want);
        return deleted;
}
