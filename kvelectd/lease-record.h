/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The part of a coordination.k8s.io/v1 Lease that leader election reads and
 * writes (client-go's LeaderElectionRecord), and the request bodies built
 * from it. Kept apart from shared/kube so the election core builds and is
 * tested on its own; of shared/kube it uses only the MicroTime formatter. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "macros.h"

typedef struct LeaseRecord {
        char *holder; /* "" when absent, null or released */
        int32_t duration_sec;
        char *acquire_time; /* MicroTime text as received/written, "" when absent */
        char *renew_time;
        int32_t transitions;
} LeaseRecord;

void lease_record_done(LeaseRecord *r);
int lease_record_copy(LeaseRecord *dst, const LeaseRecord *src);
/* client-go compares the raw bytes of the record; comparing every field as
 * received is the same test. */
bool lease_record_equal(const LeaseRecord *a, const LeaseRecord *b);

/* Reads spec and metadata.resourceVersion of a Lease object. Total: missing
 * or null fields become ""/0; wrong types are -EBADMSG. */
int lease_record_from_json(json_t *lease, LeaseRecord *ret, char **ret_resource_version);

/* A full Lease body with rec as its spec. With base (the last seen object),
 * a copy of it with the five election fields replaced and
 * metadata.resourceVersion set to resource_version (for PUT); without, the
 * minimal create body kube-vip sends (kind, apiVersion, name, namespace,
 * spec). */
int lease_body_new(json_t *base, const char *namespace, const char *name, const LeaseRecord *rec,
                   const char *resource_version, json_t **ret);

/* Lease times are written with kube_microtime_format() (shared/kube):
 * "2006-01-02T15:04:05.000000Z", UTC, exactly 6 fractional digits. */

/* Names are checked with k8s_dns_label_valid()/k8s_dns_subdomain_valid()
 * (shared/netaddr.h), as the apiserver checks them. */
