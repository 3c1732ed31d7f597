/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Typed views of the API objects the daemons use, parsed from jansson
 * values. Parsing is total: unknown fields are ignored, null is accepted
 * wherever the API may send it (lists, maps, times, pointers), and anything
 * malformed is an error naming the field, never a crash. Only the fields the
 * daemons read are kept. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "macros.h"

typedef struct KubeParseError {
        char message[256]; /* e.g. "spec.ports[2].port: expected an integer" */
} KubeParseError;

typedef struct KubeStringMap {
        size_t n;
        char **keys;
        char **values;
} KubeStringMap;

const char *kube_string_map_get(const KubeStringMap *m, const char *key);

typedef struct KubeObjectMeta {
        char *name;
        char *namespace;
        char *uid;
        char *resource_version;
        int64_t generation;
        bool deleting; /* deletionTimestamp set */
        KubeStringMap labels;
        KubeStringMap annotations;
} KubeObjectMeta;

typedef struct KubeServicePort {
        char *name;
        char *protocol; /* "TCP", "UDP", "SCTP" */
        int32_t port;
} KubeServicePort;

typedef struct KubeLoadBalancerIngress {
        char *ip;
        char *hostname;
        char *ip_mode;
} KubeLoadBalancerIngress;

typedef struct KubeService {
        KubeObjectMeta meta;
        char *type;                    /* "LoadBalancer", ... */
        char *external_traffic_policy; /* "Local", "Cluster" or NULL */
        char *load_balancer_ip;        /* deprecated spec.loadBalancerIP */
        char *load_balancer_class;
        char **ip_families; /* NULL-terminated: "IPv4", "IPv6" */
        char *ip_family_policy;
        char **cluster_ips; /* NULL-terminated */
        KubeServicePort *ports;
        size_t n_ports;
        KubeLoadBalancerIngress *ingress; /* status.loadBalancer.ingress */
        size_t n_ingress;
} KubeService;

typedef struct KubeEndpoint {
        char **addresses; /* NULL-terminated */
        /* API defaults: nil ready/serving mean true, nil terminating false. */
        bool ready, serving, terminating;
        char *node_name;
        char *hostname;
        char *target_kind, *target_namespace, *target_name, *target_uid;
} KubeEndpoint;

typedef struct KubeEndpointSlice {
        KubeObjectMeta meta;
        char *address_type; /* "IPv4", "IPv6", "FQDN" */
        KubeEndpoint *endpoints;
        size_t n_endpoints;
        char *service_name; /* label kubernetes.io/service-name, or NULL */
        /* Set by kube_endpointslice_keep_node(): the slice had a ready (and
         * serving, not terminating) endpoint with an address on another
         * node, which it dropped. */
        bool remote_ready;
} KubeEndpointSlice;

typedef struct KubeNodeAddress {
        char *type; /* "InternalIP", "ExternalIP", "Hostname" */
        char *address;
} KubeNodeAddress;

typedef struct KubeNode {
        KubeObjectMeta meta;
        char **pod_cidrs; /* spec.podCIDRs, else [spec.podCIDR]; NULL-terminated */
        KubeNodeAddress *addresses;
        size_t n_addresses;
        bool ready;
} KubeNode;

typedef struct KubeLease {
        KubeObjectMeta meta;
        char *holder_identity; /* NULL if absent; "" after a release */
        bool has_holder_identity;
        int32_t lease_duration_seconds; /* 0 if absent */
        char *acquire_time;             /* MicroTime text as received, or NULL */
        char *renew_time;
        int32_t lease_transitions;
} KubeLease;

typedef struct KubeConfigMap {
        KubeObjectMeta meta;
        KubeStringMap data;
} KubeConfigMap;

typedef struct KubeContainer {
        char *name;
        char **command; /* NULL-terminated */
        char **args;    /* NULL-terminated */
} KubeContainer;

typedef struct KubePod {
        KubeObjectMeta meta;
        char *node_name;
        KubeContainer *containers;
        size_t n_containers;
        char *phase;
        char **pod_ips; /* NULL-terminated */
} KubePod;

typedef struct KubeServiceCIDR {
        KubeObjectMeta meta;
        char **cidrs; /* NULL-terminated */
} KubeServiceCIDR;

typedef struct KubeStatus {
        char *status; /* "Failure" */
        char *message;
        char *reason;
        int32_t code;
        unsigned retry_after_seconds;
} KubeStatus;

int kube_service_parse(json_t *j, KubeService **ret, KubeParseError *err);
int kube_endpointslice_parse(json_t *j, KubeEndpointSlice **ret, KubeParseError *err);
int kube_node_parse(json_t *j, KubeNode **ret, KubeParseError *err);
int kube_lease_parse(json_t *j, KubeLease **ret, KubeParseError *err);
int kube_configmap_parse(json_t *j, KubeConfigMap **ret, KubeParseError *err);
int kube_pod_parse(json_t *j, KubePod **ret, KubeParseError *err);
int kube_servicecidr_parse(json_t *j, KubeServiceCIDR **ret, KubeParseError *err);
int kube_status_parse(json_t *j, KubeStatus **ret, KubeParseError *err);

/* Added, for caches that keep many objects (the informer keeps uid and
 * resourceVersion itself): drop the labels, annotations, uid and
 * resourceVersion (parsed fields such as service_name stay); keep only the
 * endpoints on one node (none if node_name is NULL), after trimming. */
void kube_object_meta_trim(KubeObjectMeta *m);
void kube_endpointslice_keep_node(KubeEndpointSlice *s, const char *node_name);

KubeService *kube_service_free(KubeService *s);
KubeEndpointSlice *kube_endpointslice_free(KubeEndpointSlice *s);
KubeNode *kube_node_free(KubeNode *n);
KubeLease *kube_lease_free(KubeLease *l);
KubeConfigMap *kube_configmap_free(KubeConfigMap *c);
KubePod *kube_pod_free(KubePod *p);
KubeServiceCIDR *kube_servicecidr_free(KubeServiceCIDR *s);
KubeStatus *kube_status_free(KubeStatus *s);

DEFINE_TRIVIAL_CLEANUP_FUNC(KubeService *, kube_service_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeEndpointSlice *, kube_endpointslice_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeNode *, kube_node_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeLease *, kube_lease_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeConfigMap *, kube_configmap_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubePod *, kube_pod_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeServiceCIDR *, kube_servicecidr_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeStatus *, kube_status_free);

/* MicroTime: "2006-01-02T15:04:05.000000Z" (exactly 6 fractional digits, UTC),
 * as the apiserver requires for Lease times. */
int kube_microtime_format(uint64_t realtime_usec, char buf[static 32]);
int kube_microtime_parse(const char *s, uint64_t *ret_realtime_usec);
/* Time: RFC 3339 with seconds, "2006-01-02T15:04:05Z". */
int kube_time_format(uint64_t realtime_usec, char buf[static 32]);
/* Added: parses RFC 3339 with or without a fraction of any length. */
int kube_time_parse(const char *s, uint64_t *ret_realtime_usec);

/* Well-known annotation and label keys. */
#define KUBE_LABEL_SERVICE_NAME "kubernetes.io/service-name"
