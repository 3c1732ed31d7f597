/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvnetd's one context: options, the event loop, the bus server, the netlink
 * and nft handles, and the state it owns in the kernel (services, their VIPs
 * and egress mappings). Every callback gets the Manager as userdata. */

#include <net/if.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bus-server.h"
#include "clock.h" /* now_usec() */
#include "egress-batch.h"
#include "netaddr.h"
#include "metrics.h"
#include "podmap.h"
#include "service.h"

typedef struct LinkLocal {
        int ifindex;
        struct in6_addr addr;
} LinkLocal;

typedef struct Config {
        char *socket_path;
        mode_t socket_mode;
        uid_t *allow_uids;
        size_t n_allow_uids;
        gid_t *allow_gids;
        size_t n_allow_gids;
        IpPrefix *vip_ranges;
        size_t n_vip_ranges;
        char **interfaces; /* strv */
        char *state_dir;
        char *user;
        char *table; /* nft table name, family inet */
        usec_t grace_usec;
        usec_t reconcile_usec;
        bool clean_on_stop;
        bool ipv6_nodad;
        bool allow_extra_caps;
        bool flush_and_exit;
        /* 0: the built-in KVNETD_MAX_* (lowered only, by tests) */
        size_t max_services, max_vips, max_pods;
} Config;

struct Manager {
        Config *config;
        sd_event *event;
        BusServer *bus;
        sd_event_source *fence_timer;
        sd_event_source *announce_timer;
        sd_event_source *reconcile_timer;
        sd_event_source *save_timer;
        int journal_fd;   /* <state-dir>/vips.journal, open for appending (state.c) */
        usec_t grace_end; /* 0 once the grace period is over */

        struct nl_sock *nl;            /* rtnetlink requests */
        struct nl_sock *nl_watch;      /* address events */
        PodMap node_addrs;             /* every address on the node (addr.c) */
        bool node_addrs_stale;         /* rebuilt from a dump before its next use */
        struct LinkLocal *link_locals; /* per interface, for NA (addr.c) */
        size_t n_link_locals, cap_link_locals;
        sd_event_source *nl_watch_source;
        struct nft_ctx *nft;       /* reading the table (JSON listing) */
        struct mnl_socket *nft_nl; /* writing it (netlink batches, nft.c) */
        /* The ruleset generation at which the kernel held exactly what the
         * record says (after kvnetd's own read or commit); see
         * manager_reconcile_table(). */
        uint32_t nft_gen;
        bool nft_gen_known;
        int arp_fd; /* AF_PACKET: gratuitous ARP and unsolicited NA (announce.c) */

        /* Conntrack entries of changed pods are deleted by a worker thread
         * (ctworker.c), never on this loop; ct_pending holds the addresses
         * its bounded queue had no room for yet. */
        struct CtWorker *ct_worker;
        PodMap ct_pending;
        uint64_t ct_deleted;

        /* SetEgress requests waiting for this iteration's transaction. */
        EgressQueue egress;

        /* The bus connections, drained before a fence fires. */
        sd_bus **conns;
        size_t n_conns, cap_conns;
        uint64_t n_fences;

        struct RefusalLog *refusals; /* bus.c: a refusal repeated by a retrying client is logged once */
        struct {                     /* introspect.c renders them (GetMetrics) */
                uint64_t nft_ok, nft_failed;
                uint64_t table_reads, table_reads_skipped; /* by the reconcile */
                MetricHistogram nft_seconds;
                LoopLag loop_lag;
        } metrics;

        SERVICE_RECORD_FIELDS;
};

int manager_new(Config *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Reads what the kernel holds (adopts it for the grace period), starts the
 * watchers, timers and the bus. */
int manager_start(Manager *m);
/* On exit: leaves everything in place unless clean_on_stop. */
void manager_stop(Manager *m);

/* Binds the VIP for s (idempotent; claims an adopted VIP). */
int manager_grant_vip(Manager *m, Service *s, const IpAddr *a, const char *ifname, usec_t deadline);
int manager_release_vip(Manager *m, Service *s, Vip *v);
/* Installs policy (takes ownership) as s's egress in one nft transaction,
 * then flushes the conntrack entries of every pod whose mapping changed.
 * policy NULL removes the egress. On failure the kernel and s are unchanged. */
int manager_set_egress(Manager *m, Service *s, EgressPolicy *policy, char **ret_error);
/* Removes s's egress and VIPs and frees s. */
int manager_remove_service(Manager *m, Service *s);
/* The fence: re-arms the one timer at the earliest deadline. */
void manager_update_fence(Manager *m);
void manager_update_status(Manager *m);
void manager_schedule_save(Manager *m, bool now);

/* Deletes (later, on the conntrack worker) the conntrack entries of addrs. */
void manager_queue_conntrack(Manager *m, const IpAddr *addrs, size_t n);
/* Pod addresses whose conntrack entries are still to be deleted. */
size_t manager_conntrack_pending(Manager *m);
/* Records a bus connection, to drain it before fencing. */
int manager_add_connection(Manager *m, sd_bus *bus);

/* adopt.c: what a previous kvnetd left (read at start, kept for the grace
 * period), and the periodic comparison of the table with the record. */
int manager_adopt(Manager *m);
/* Compares the table with the record and rebuilds it on any difference;
 * skips the read (a JSON listing of the whole table) when the ruleset's
 * generation is the one kvnetd's own last commit or read left. */
int manager_reconcile_table(Manager *m);
/* Every transaction of kvnetd goes through here: nft_commit(), then the
 * generation kvnetd knows follows it (or is forgotten, when someone else's
 * transaction came in between). */
struct NftBatch;
int manager_nft_commit(Manager *m, struct NftBatch *b, char **ret_error);
