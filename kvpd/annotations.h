/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kube-vip's Service annotations, parsed strictly.
 *
 * These values are written by people, so a malformed one is reported with
 * the annotation and the entry that is wrong, and the service's egress is
 * refused rather than programmed with a guess: nothing here ever makes the
 * SNAT wider than what the operator wrote. */

#include <stdbool.h>
#include <stddef.h>

#include "kube-objects.h"
#include "kvnetd-bus.h"
#include "netaddr.h"

#define KV_ANNOTATION_PREFIX "kube-vip.io/"

/* Inputs. */
#define KV_ANN_EGRESS "kube-vip.io/egress"
#define KV_ANN_EGRESS_IPV6 "kube-vip.io/egress-ipv6"
#define KV_ANN_EGRESS_INTERNAL "kube-vip.io/egress-internal"
#define KV_ANN_EGRESS_DESTINATION_PORTS "kube-vip.io/egress-destination-ports"
#define KV_ANN_EGRESS_SOURCE_PORTS "kube-vip.io/egress-source-ports"
#define KV_ANN_EGRESS_DENIED_NETWORKS "kube-vip.io/egress-denied-networks"
#define KV_ANN_EGRESS_ALLOWED_NETWORKS "kube-vip.io/egress-allowed-networks"
#define KV_ANN_EGRESS_NO_INTERNAL_TRAFFIC "kube-vip.io/egress-no-internal-traffic"
#define KV_ANN_EGRESS_DETECT_API_SERVER "kube-vip.io/egress-detect-api-server"
#define KV_ANN_FLUSH_CONNTRACK "kube-vip.io/flush-conntrack"
#define KV_ANN_LOADBALANCER_IPS "kube-vip.io/loadbalancerIPs"
#define KV_ANN_LEASE_NAME "kube-vip.io/leaseName"
#define KV_ANN_SERVICE_INTERFACE "kube-vip.io/serviceInterface"
#define KV_ANN_SERVICE_VLAN "kube-vip.io/serviceVLAN"
#define KV_ANN_IGNORE "kube-vip.io/ignore"

/* Written by the lease holder. */
#define KV_ANN_VIP_HOST "kube-vip.io/vipHost"
#define KV_ANN_ACTIVE_ENDPOINT "kube-vip.io/active-endpoint"
#define KV_ANN_ACTIVE_ENDPOINT_IPV6 "kube-vip.io/active-endpoint-ipv6"
/* Ours, not kube-vip's: which node programmed what, and when (status.c). */
#define KV_ANN_EGRESS_PROGRAMMED "kvegress.io/egress-programmed"

/* Bounds on what one annotation may hold: kvnetd's limits (one source of
 * truth), so a service that parses here is never refused there for its
 * size. The API server addresses that egress-detect-api-server adds to the
 * denied networks are counted against the same limit (egress-policy.c). */
#define KV_MAX_LB_IPS KVNETD_MAX_VIPS_PER_SERVICE
#define KV_MAX_PORTS KVNETD_MAX_PORTS
#define KV_MAX_NETWORKS KVNETD_MAX_NETWORKS

typedef struct EgressAnnotations {
        bool egress;            /* kube-vip.io/egress is exactly "true" */
        bool ipv6;              /* egress-ipv6 is "true" */
        bool internal;          /* egress-internal: accepted, no effect (one datapath) */
        bool detect_api_server; /* egress-detect-api-server is "true" */
        bool ignore;            /* kube-vip.io/ignore is "true" */

        PortSpec *ports; /* NULL/0: every destination port */
        size_t n_ports;
        IpPrefix *denied;
        size_t n_denied;
        IpPrefix *allowed; /* NULL/0: every destination (minus exclusions) */
        size_t n_allowed;

        bool has_lb_ips; /* kube-vip.io/loadbalancerIPs present */
        IpAddr *lb_ips;
        size_t n_lb_ips;

        char *lease_namespace; /* NULL: kubevip-<service> in the service's namespace */
        char *lease_name;
        char *service_interface; /* NULL: the node's default; may be "auto" */
} EgressAnnotations;

typedef struct AnnotationError {
        const char *key; /* the annotation at fault */
        char message[384];
} AnnotationError;

/* Parses the egress-related annotations of a Service in service_namespace.
 * On failure returns a negative errno and fills err (key and a message that
 * names the entry). Only the annotations that matter for egress are read;
 * the filter annotations are read even when egress is off, so an operator
 * sees a mistake before turning egress on. */
int egress_annotations_parse(const KubeStringMap *annotations, const char *service_namespace,
                             EgressAnnotations *ret, AnnotationError *err);
void egress_annotations_done(EgressAnnotations *a);

/* Looks a key up in a KubeStringMap (NULL map or key absent: NULL). */
const char *annotation_get(const KubeStringMap *m, const char *key);
