/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The desired egress state of one Service on this node: a pure function of
 * the Service, all its EndpointSlices, the cluster networks and this node's
 * configuration. Nothing here talks to the API or a daemon, so every rule
 * below is table-tested.
 *
 * Choices (see also annotations.h and cluster-cidrs.h):
 *  - VIPs: kube-vip.io/loadbalancerIPs, else status.loadBalancer.ingress[].ip,
 *    else spec.loadBalancerIP. All VIPs are bound; the first of each family
 *    is that family's SNAT source.
 *  - Families: every family that has a VIP is handled, at once. A dual-stack
 *    Service gets IPv4 and IPv6 egress together (kube-vip handled one family
 *    per Service). egress-ipv6: "true" keeps meaning "handle IPv6": it is
 *    honoured whenever the Service has an IPv6 VIP, and warned about when it
 *    has none. IPv4 is NOT dropped then: a Service whose manifest names an
 *    IPv4 VIP gets its IPv4 pods SNATed to it.
 *  - Pods: ALL local ready endpoints are SNATed, not only the active one.
 *    The SNAT matches the pod's source address, so every replica on the
 *    lease holder leaves with the stable VIP; with kube-vip's one-pod rule a
 *    second local replica would leave with the node's address, which is
 *    exactly what egress is meant to prevent. The active-endpoint
 *    annotations still name one pod per family, for kube-vip compatibility.
 *  - Local ready: ready && serving && !terminating && nodeName == this node,
 *    from every slice labelled kubernetes.io/service-name=<service>, API
 *    defaults for absent conditions. (kube-vip took serving only, so a
 *    terminating pod could stay "active", and only the last slice per
 *    family.)
 *  - Active endpoint per family: sticky while it stays local and ready,
 *    otherwise the first one in slice-name and endpoint order.
 *  - externalTrafficPolicy must be Local: the VIP must live where the pods
 *    are. Anything else is EgressInvalid, with no egress.
 */

#include <stdbool.h>
#include <stddef.h>

#include "annotations.h"
#include "cluster-cidrs.h"
#include "kube-objects.h"
#include "netaddr.h"

#define EGRESS_MAX_PODS KVNETD_MAX_PODS_PER_SERVICE
_Static_assert(EGRESS_MAX_PODS <= KVNETD_MAX_PODS_TOTAL, "one Service's pods must fit in kvnetd's total");

typedef enum EgressState {
        EGRESS_NONE,    /* not an egress Service here: nothing wanted, nothing to report */
        EGRESS_INVALID, /* egress asked for but refused: error says why */
        EGRESS_IDLE,    /* valid, but no VIP yet or no local endpoint at all: do not campaign */
        /* Valid with local endpoints, none of them ready (starting up or
         * terminating) while another node has a ready one: leadership goes
         * there. Handled as IDLE by the controller (a holder releases the VIP,
         * then withdraws, so the VIP is never on two nodes); a state of its
         * own so that status and kvctl say why. */
        EGRESS_YIELDING,
        EGRESS_READY, /* valid with a local ready endpoint, or the only endpoints are here: campaign */
        _EGRESS_STATE_MAX,
        _EGRESS_STATE_INVALID = -EINVAL,
} EgressState;

typedef enum VipSource {
        VIP_SOURCE_NONE,
        VIP_SOURCE_ANNOTATION,
        VIP_SOURCE_INGRESS,
        VIP_SOURCE_SPEC,
        _VIP_SOURCE_MAX,
        _VIP_SOURCE_INVALID = -EINVAL,
} VipSource;

typedef struct EgressPolicy {
        unsigned n_ref; /* immutable once computed, so sharing it is safe */
        EgressState state;
        char *service_key; /* "namespace/name" */
        char *uid;

        /* EGRESS_INVALID: the annotation at fault (or NULL) and a message
         * naming the service, the annotation and the bad entry. */
        const char *error_annotation;
        char *error;
        /* Something worth an Event that does not block egress. */
        char *warning;

        VipSource vip_source;
        IpAddr *vips; /* all VIPs to bind, in order */
        size_t n_vips;
        bool has_vip4, has_vip6;
        IpAddr vip4, vip6; /* SNAT sources */

        /* Every local endpoint of a family that has a VIP, ready or not,
         * terminating included: a pod is SNATed from the moment its address
         * is in a slice until it leaves it (kube-vip #865). Sorted. */
        IpAddr *pods;
        size_t n_pods;
        bool has_local_endpoint; /* any family, any condition */
        bool has_local_ready;    /* ready and not terminating */
        bool has_remote_ready;   /* a ready endpoint on another node */
        bool has_active4, has_active6;
        IpAddr active4, active6;

        PortSpec *ports;
        size_t n_ports;
        IpPrefix *allowed;
        size_t n_allowed;
        IpPrefix *denied; /* egress-denied-networks + detected API server */
        size_t n_denied;
        IpPrefix *excluded; /* cluster pod and service networks */
        size_t n_excluded;

        char *ifname; /* annotation, else the node's default; may be "auto" */
        char *lease_namespace;
        char *lease_name;

        /* status.loadBalancer.ingress is ours to write only when it was not
         * where the VIPs came from (then someone else owns it). */
        bool owns_ingress_status;
} EgressPolicy;

/* kube-vip's spec.loadBalancerClass filter (lb_class_name, lb_class_only,
 * lb_class_legacy_handling), so that a node running kvegress acts on exactly
 * the Services kube-vip would have acted on. */
typedef struct LbClassFilter {
        const char *name; /* default "kube-vip.io/kube-vip-class"; "" allowed */
        bool only;        /* legacy mode: also refuse Services without a class */
        bool legacy;      /* default true */
} LbClassFilter;

#define LB_CLASS_NAME_DEFAULT "kube-vip.io/kube-vip-class"

/* Legacy mode (kube-vip's default): a Service with a class is ours only if
 * it is our class; one without is ours unless "only". Strict mode: the
 * class must equal the name, and "no class" matches only an empty name. */
bool lb_class_accepts(const LbClassFilter *f, const char *service_class);

typedef struct EgressInput {
        const KubeService *service;
        const KubeEndpointSlice *const *slices; /* this service's slices (others are skipped) */
        size_t n_slices;
        const ClusterCidrs *cidrs;
        const char *node_name;
        const char *default_ifname;
        const IpAddr *api_servers; /* for egress-detect-api-server */
        size_t n_api_servers;
        const IpAddr *prev_active4; /* sticky choice, or NULL */
        const IpAddr *prev_active6;
        const LbClassFilter *lb_class; /* NULL: kube-vip's defaults */
} EgressInput;

/* Never fails for bad input (that is EGRESS_INVALID); only -ENOMEM. */
int egress_policy_compute(const EgressInput *in, EgressPolicy **ret);
/* Drops a reference; frees on the last. */
EgressPolicy *egress_policy_free(EgressPolicy *p);
EgressPolicy *egress_policy_ref(EgressPolicy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(EgressPolicy *, egress_policy_free);

/* Same kvnetd programming (VIPs, interface, SNAT sources, pods, filters). */
bool egress_policy_net_equal(const EgressPolicy *a, const EgressPolicy *b);
/* Same lease. */
bool egress_policy_lease_equal(const EgressPolicy *a, const EgressPolicy *b);

const char *egress_state_to_string(EgressState s);
const char *vip_source_to_string(VipSource s);
