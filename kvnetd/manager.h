/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvnetd's one context: options, the event loop, the bus server, the netlink
 * and nft handles, and the state it owns in the kernel (services, their VIPs
 * and egress mappings). Every callback gets the Manager as userdata. */

#include <net/if.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bus-server.h"
#include "netaddr.h"
#include "podmap.h"

typedef uint64_t usec_t;

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
} Config;

/* The egress policy of one service, validated and normalised (sorted,
 * de-duplicated, networks with no overlaps), exactly as installed. */
typedef struct EgressPolicy {
        IpAddr vip4, vip6; /* family 0: none */
        IpAddr *pods;
        size_t n_pods;
        PortSpec *ports;
        size_t n_ports;
        IpPrefix *allowed, *denied, *excluded;
        size_t n_allowed, n_denied, n_excluded;
} EgressPolicy;

typedef struct Service Service;

typedef struct Vip {
        IpAddr addr;
        char ifname[IFNAMSIZ];
        Service *service;
        unsigned announce_left; /* gratuitous ARP / NA still to send */
        bool adopted;           /* found in the kernel at start, not yet claimed by a client */
} Vip;

struct Service {
        char *key; /* "namespace/name" */
        char chain[24]; /* "svc_" + 16 hex digits of a hash of key */
        usec_t deadline; /* CLOCK_MONOTONIC; the grant ends here unless renewed */
        bool claimed;    /* a client named it since we started */
        Vip *vips[8];    /* KVNETD_MAX_VIPS_PER_SERVICE */
        size_t n_vips;

        /* What the kernel holds for this service's egress. has_chain with
         * policy == NULL means adopted at start and not yet replayed. */
        bool has_chain;
        uint64_t fingerprint; /* of the chain's rules and sets, stored in a rule comment */
        IpAddr *pods;         /* sorted, as in the kernel's pod maps */
        size_t n_pods;
        EgressPolicy *policy;

        Service *next;
};

typedef struct Manager {
        Config *config;
        sd_event *event;
        BusServer *bus;
        sd_event_source *fence_timer;
        sd_event_source *announce_timer;
        sd_event_source *reconcile_timer;
        sd_event_source *save_timer;
        usec_t grace_end; /* 0 once the grace period is over */

        struct nl_sock *nl;       /* rtnetlink requests */
        struct nl_sock *nl_watch; /* address events */
        sd_event_source *nl_watch_source;
        struct nl_sock *nl_ct; /* conntrack */
        struct nft_ctx *nft;
        int arp_fd; /* AF_PACKET: gratuitous ARP and unsolicited NA (announce.c) */

        Service *services;
        size_t n_services;
        size_t n_vips;
        PodMap pods; /* pod address -> Service, over all services */
} Manager;

int manager_new(Config *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Reads what the kernel holds (adopts it for the grace period), starts the
 * watchers, timers and the bus. */
int manager_start(Manager *m);
/* On exit: leaves everything in place unless clean_on_stop. */
void manager_stop(Manager *m);

usec_t now_usec(void);

Service *manager_find_service(Manager *m, const char *key);
int manager_add_service(Manager *m, const char *key, Service **ret);
Vip *manager_find_vip(Manager *m, const IpAddr *a);

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

void egress_policy_free(EgressPolicy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(EgressPolicy *, egress_policy_free);
