/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Field checks for every request kvnetd serves. Pure functions of the
 * request and the Config (plus if_nametoindex for "the interface exists"),
 * so they are unit-tested without a bus or a kernel. Each failure fills a
 * ParseError whose message starts with the field's name as the D-Bus
 * signature names it ("pods[3]: ..."), and returns -EINVAL, or -E2BIG when a
 * limit is passed. */

#include "manager.h"

/* A field name with an optional index: "pods[3]" or "address". */
#define FIELD_NONE ((size_t)-1)

int validate_string(const char *field, size_t idx, const char *s, ParseError *err);
int validate_service_key(const char *field, const char *s, ParseError *err);
/* A VIP: a bare address, or one with /32 (IPv4) or /128 (IPv6), of family
 * (AF_UNSPEC for either), inside one of the configured VIP ranges. */
int validate_vip(const Config *c, const char *field, const char *s, int family, IpAddr *ret,
                 ParseError *err);
/* Valid name, on the allowlist, and present in this network namespace. */
int validate_ifname(const Config *c, const char *field, const char *s, ParseError *err);
/* deadline must lie in (now, now + KVNETD_MAX_GRANT_USEC]. */
int validate_deadline(usec_t now, usec_t deadline, const char *field, ParseError *err);

/* SetEgress, as plain C arrays (the bus handler reads the message into
 * this, stopping at the limits). */
typedef struct EgressRequest {
        const char *vip4, *vip6;
        const char **pods;
        size_t n_pods;
        const char **port_protos;
        const uint16_t *port_numbers;
        size_t n_ports;
        const char **allowed, **denied, **excluded;
        size_t n_allowed, n_denied, n_excluded;
} EgressRequest;

/* Validates every field and returns the normalised policy. It does not look
 * at state: whether the VIPs are granted to the service is the caller's. */
int egress_request_validate(const Config *c, const EgressRequest *req, EgressPolicy **ret, ParseError *err);
