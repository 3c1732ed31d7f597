/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cluster's own networks (pod and service CIDRs), which egress never
 * SNATs: a pod talking to a pod or a ClusterIP keeps its address.
 *
 * Every source found is used and their union is excluded, since each one
 * names cluster-internal ranges and excluding more only narrows the SNAT:
 *   service: ServiceCIDR objects, kube-controller-manager's
 *            --service-cluster-ip-range, kubeadm-config's serviceSubnet;
 *   pod:     Node.spec.podCIDRs of EVERY node (kube-vip used only the
 *            pod's own node, so cross-node pod traffic was SNATed),
 *            kube-controller-manager's --cluster-cidr, kubeadm-config's
 *            podSubnet.
 * egress_podcidr / egress_servicecidr replace detection for each family
 * they name. A family with nothing found gets a default: kube-vip's
 * 10.0.0.0/16 (pod) and 10.96.0.0/12 (service) for IPv4; for IPv6, where
 * kube-vip had none, fd00:10:244::/56 and fd00:10:96::/112 (kind's and
 * kube-vip's e2e ranges), so IPv6 egress is never left with no exclusion. */

#include <stdbool.h>
#include <stddef.h>

#include "kube-objects.h"
#include "netaddr.h"

#define CLUSTER_DEFAULT_POD_CIDR4 "10.0.0.0/16"
#define CLUSTER_DEFAULT_SERVICE_CIDR4 "10.96.0.0/12"
#define CLUSTER_DEFAULT_POD_CIDR6 "fd00:10:244::/56"
#define CLUSTER_DEFAULT_SERVICE_CIDR6 "fd00:10:96::/112"

/* After aggregation; more than this is refused (it would not fit kvnetd). */
#define CLUSTER_CIDRS_MAX 128

typedef enum ClusterCidrDefaulted {
        CLUSTER_DEFAULTED_POD4 = 1 << 0,
        CLUSTER_DEFAULTED_POD6 = 1 << 1,
        CLUSTER_DEFAULTED_SVC4 = 1 << 2,
        CLUSTER_DEFAULTED_SVC6 = 1 << 3,
} ClusterCidrDefaulted;

typedef struct ClusterCidrSources {
        const IpPrefix *env_pod; /* egress_podcidr */
        size_t n_env_pod;
        const IpPrefix *env_service; /* egress_servicecidr */
        size_t n_env_service;

        const KubeServiceCIDR *const *service_cidrs;
        size_t n_service_cidrs;
        const KubeNode *const *nodes;
        size_t n_nodes;
        const KubePod *const *controller_managers; /* kube-system, component=kube-controller-manager */
        size_t n_controller_managers;
        const KubeConfigMap *kubeadm_config; /* kube-system/kubeadm-config, or NULL */
} ClusterCidrSources;

typedef struct ClusterCidrs {
        IpPrefix *pod; /* sorted, aggregated */
        size_t n_pod;
        IpPrefix *service;
        size_t n_service;
        unsigned defaulted; /* ClusterCidrDefaulted bits */
} ClusterCidrs;

int cluster_cidrs_compute(const ClusterCidrSources *src, ClusterCidrs *ret);
void cluster_cidrs_done(ClusterCidrs *c);
bool cluster_cidrs_equal(const ClusterCidrs *a, const ClusterCidrs *b);

/* networking.podSubnet / networking.serviceSubnet of a kubeadm
 * ClusterConfiguration (YAML); each NULL when absent. */
int kubeadm_networking_parse(const char *yaml, char **ret_pod_subnet, char **ret_service_subnet);

/* Sorts, drops duplicates and prefixes inside another, and merges sibling
 * halves into their parent, in place; returns the new count. Thousands of
 * node /24s inside one cluster /16 become that /16. */
size_t ip_prefix_aggregate(IpPrefix *v, size_t n);
