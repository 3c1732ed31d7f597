/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvnetd's record: services, their VIPs and egress policies, and what the
 * kernel holds for each; the egress classes (nft.h) with the number of
 * services in each; the indexes over them (service by key, class by name,
 * VIP by address, pod address by owning service, services by grant
 * deadline); and the pod diff of a SetEgress. No kernel call is made here:
 * manager.c runs the transactions and brings the record in line after
 * them, and the fuzz target links this file as it is.
 *
 * Every lookup is hashed and the deadlines are a binary heap, so no request
 * walks all services. Memory per service (x86-64): the Service (~200 bytes)
 * with its key, one slot in the key map (~40 bytes incl. the key copy),
 * one heap slot (8 bytes), and per VIP 48 bytes plus its
 * map slot; per pod 20 bytes in the service and ~2 x 40 in the pod map
 * (load factor <= 1/2); the policy holds its own arrays. */

#include <net/if.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "kvnetd-bus.h"
#include "netaddr.h"
#include "podmap.h"

typedef uint64_t usec_t;
typedef struct Manager Manager;

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

void egress_policy_free(EgressPolicy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(EgressPolicy *, egress_policy_free);

typedef struct Service Service;

/* An egress class (nft.h): one chain and its sets in the kernel, shared by
 * the services whose policies differ only in VIPs and pods. */
typedef struct EgressClass {
        char name[24];        /* "cls_" + 16 hex digits of a hash of its rules */
        uint64_t fingerprint; /* of its chain and sets, in the chain's last rule */
        unsigned sets;        /* its optional named sets (NFT_SET_*) */
        char *text;           /* its rules as text (nft_policy_class()); NULL: adopted, not yet replayed */
        size_t refs;          /* services of the record in it */
        bool in_kernel;
        /* While one transaction is composed (egress-batch.c): the services
         * in it after that transaction, and what the transaction does. */
        size_t planned;
        bool touched, created, rewritten;
        struct EgressClass *prev, *next;
} EgressClass;

typedef struct Vip {
        IpAddr addr;
        char ifname[IFNAMSIZ];
        Service *service;
        unsigned announce_left; /* gratuitous ARP / NA still to send */
        bool adopted;           /* found in the kernel at start, not yet claimed by a client */
        /* IPv6 bound with DAD, not ended yet: GrantVip answered after (dad.h). */
        bool tentative;
        sd_bus_message **dad_waiting;
        size_t n_dad_waiting, cap_dad_waiting;
        sd_event_source *dad_timer;
        Manager *dad_manager;
} Vip;

struct Service {
        char *key;       /* "namespace/name" */
        usec_t deadline; /* CLOCK_MONOTONIC; the grant ends here unless renewed */
        size_t heap_index;
        bool claimed; /* a client named it since we started */
        Vip *vips[KVNETD_MAX_VIPS_PER_SERVICE];
        size_t n_vips;

        /* What the kernel holds for this service's egress: its pods in
         * cls's sets and in the VIP maps, to vip4/vip6; or (legacy) a chain
         * of the previous shape (nft.h), its pods in the old pod maps. An
         * egress (service_has_egress()) with policy == NULL means adopted
         * at start and not yet replayed. */
        EgressClass *cls;
        bool legacy;
        unsigned legacy_sets; /* the legacy chain's named sets (NFT_SET_*) */
        IpAddr vip4, vip6;    /* family 0: none */
        IpAddr *pods;         /* sorted, as in the kernel's sets */
        size_t n_pods;
        EgressPolicy *policy;
        bool egress_queued; /* a SetEgress waits in the queue (egress-batch.h) */

        Service *prev, *next;
};

/* The record's part of the Manager (manager.h embeds these fields). */
#define SERVICE_RECORD_FIELDS                                                                               \
        Service *services; /* a list, for iteration */                                                      \
        size_t n_services;                                                                                  \
        size_t n_vips;                                                                                      \
        StrMap services_by_key;                                                                             \
        EgressClass *classes; /* a list, for iteration */                                                   \
        size_t n_classes;                                                                                   \
        size_t n_legacy; /* services with a legacy chain */                                                 \
        StrMap classes_by_name;                                                                             \
        PodMap vips_by_addr; /* VIP address -> Vip */                                                       \
        PodMap pods;         /* pod address -> Service, over all services */                                \
        Service **deadlines; /* a binary min-heap on Service.deadline */                                    \
        size_t n_deadlines, cap_deadlines;                                                                  \
        size_t max_services /* the limits in force: KVNETD_MAX_* unless a test lowers them */;              \
        size_t max_vips;                                                                                    \
        size_t max_pods_total

Service *manager_find_service(Manager *m, const char *key);
/* A new service with no VIP and no egress: -E2BIG past the limit. */
int manager_add_service(Manager *m, const char *key, Service **ret);

static inline bool service_has_egress(const Service *s)
{
        return s->cls || s->legacy;
}

EgressClass *egress_class_find(Manager *m, const char *name);
/* The class of that name, created (not in the kernel, no service) if new;
 * NULL when out of memory. */
EgressClass *egress_class_get(Manager *m, const char *name, uint64_t fingerprint, unsigned sets);
/* Frees c if no service is in it and it is not in the kernel. */
void egress_class_maybe_free(Manager *m, EgressClass *c);
/* Frees every class with no service that is not in the kernel (after a
 * transaction; no diff may hold one then). */
void egress_classes_gc(Manager *m);
/* Takes s out of its class or legacy chain (the kernel no longer holds
 * them), keeping its pods; frees a class left empty that is not in the
 * kernel. */
void service_drop_egress(Manager *m, Service *s);
/* Forgets s with its VIPs and pods (no kernel change). */
void service_free(Manager *m, Service *s);
Vip *manager_find_vip(Manager *m, const IpAddr *a);

/* Makes room for one more VIP, so that service_attach_vip() cannot fail. */
int service_reserve_vip(Manager *m);
/* Adds v to s (v->service must be NULL; counted in n_vips if new). */
void service_attach_vip(Manager *m, Service *s, Vip *v, bool is_new);
/* Takes v off its service; with forget, also out of the index and count. */
void service_detach_vip(Manager *m, Vip *v, bool forget);

/* Sets s's deadline and keeps the heap ordered: O(log services). */
void service_set_deadline(Manager *m, Service *s, usec_t deadline);
/* The service with the earliest deadline, or NULL. */
Service *service_earliest(const Manager *m);

/* What a SetEgress changes, all allocated before the transaction so that
 * service_egress_apply() cannot fail after it. */
typedef struct EgressDiff {
        IpAddr *added, *removed, *stolen, *flush, *new_pods;
        size_t n_added, n_removed, n_stolen, n_flush, n_new;
        EgressClass *cls;     /* p's class, created by the diff if new; NULL without p */
        uint64_t fingerprint; /* of p's class's chain and sets */
        char *cls_text;       /* its rules as text, for a class that has none yet */
        bool class_rewrite;   /* the class is in the kernel with other rules (fingerprint) */
        bool class_change;    /* the pods move to another class (or from a legacy chain) */
        bool vip_change;      /* the VIP map elements are rewritten */
        bool rules_change;    /* either: every pod's SNAT may change */
} EgressDiff;

/* Diffs s's pods against p's (p NULL: remove the egress), and finds p's
 * class. A pod of another live service is a conflict (-EBUSY), one of an
 * adopted leftover is taken over; past the node's pod limit, -E2BIG; a
 * class whose name is another's (a 64-bit hash collision), -EEXIST; all
 * with *ret_error. */
int service_egress_diff(Manager *m, Service *s, const EgressPolicy *p, EgressDiff *d, char **ret_error);
/* After the transaction: the record follows, taking p. Cannot fail (the
 * class was created by the composition, egress-batch.c). */
void service_egress_apply(Manager *m, Service *s, EgressPolicy *p, EgressDiff *d);
void egress_diff_done(EgressDiff *d);

/* All pods of services with a policy (for a rebuild's conntrack pass). */
int service_all_pods(Manager *m, IpAddr **ret, size_t *ret_n);
void service_record_done(Manager *m);
