/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The kvelectd D-Bus interface, used by kvpd: campaign for per-service
 * Leases and hear about leadership. Transport as for kvnetd: sd-bus
 * peer-to-peer on a private AF_UNIX socket, peer uid/gid checked. */

#define KVELECTD_BUS_INTERFACE "io.kvegress.Elect1"
#define KVELECTD_BUS_PATH "/io/kvegress/Elect1"
#define KVELECTD_SOCKET_PATH_DEFAULT "/run/kvelectd/kvelectd.sock"

/* Campaign(s namespace, s name): start (or keep) campaigning for the Lease
 * namespace/name with this node's identity. Idempotent. If already leading,
 * a LeadershipChanged(leading=true) signal is re-emitted, before the reply,
 * so a reconnecting client learns the state.
 * Campaigns outlive their client by renewDeadline: when the last client has
 * been gone that long, every campaign is withdrawn (as by Withdraw). */
#define KVELECTD_METHOD_CAMPAIGN "Campaign"
/* Errors: InvalidArgs (namespace not a DNS-1123 label, name not a DNS-1123
 * subdomain), LimitsExceeded (KVELECTD_MAX_CAMPAIGNS), Failed (stopping). */
#define KVELECTD_SIG_CAMPAIGN "ss"

/* Withdraw(s namespace, s name): stop campaigning; if leading, release the
 * Lease (holderIdentity "", leaseDurationSeconds 1) so another node takes it
 * at once. Idempotent. */
#define KVELECTD_METHOD_WITHDRAW "Withdraw"
#define KVELECTD_SIG_WITHDRAW "ss"

/* ListCampaigns() -> a(ssbst): (namespace, name, leading, holder, deadline_usec)
 *   holder is the holderIdentity last observed ("" if none, released or no
 *   Lease); deadline_usec as in LeadershipChanged. Withdrawn campaigns whose
 *   release is still in flight are not listed. */
#define KVELECTD_METHOD_LIST "ListCampaigns"
#define KVELECTD_SIG_LIST_REPLY "a(ssbst)"

/* Signal LeadershipChanged(s namespace, s name, b leading, t deadline_usec, s holder)
 *   Emitted when this node gains or loses a lease, and when the observed
 *   holder changes (except to this node's own identity while not leading: a
 *   restarted kvelectd finds its own Lease and renews it; the outcome of
 *   that renewal is what gets signalled). deadline_usec (CLOCK_MONOTONIC) is when leadership ends
 *   unless renewed: the send time of the last successful renew plus
 *   renewDeadline; 0 when not leading.
 *   Loss is signalled at the deadline itself (by timer, not when a request
 *   fails), at once when the API names another holder, and on Withdraw or
 *   SIGTERM before the Lease is released, so the VIP can go before another
 *   node is able to take the Lease. */
#define KVELECTD_SIGNAL_LEADERSHIP "LeadershipChanged"
#define KVELECTD_SIG_LEADERSHIP "ssbts"

/* Signal Renewed(s namespace, s name, t deadline_usec): a successful renewal
 * moved the deadline; kvpd passes it on to kvnetd (RenewGrant). */
#define KVELECTD_SIGNAL_RENEWED "Renewed"
#define KVELECTD_SIG_RENEWED "sst"

/* Read-only introspection (kvctl): root, unless it is the configured client,
 * and the kvegress group may call these only; anything else on their
 * connection is answered org.freedesktop.DBus.Error.AccessDenied. */
/* GetMetrics() -> s: kvelectd's metrics in the Prometheus text format. */
#define KVELECTD_METHOD_GET_METRICS "GetMetrics"
#define KVELECTD_READ_ONLY_METHODS                                                                          \
        {                                                                                                   \
                KVELECTD_METHOD_LIST, KVELECTD_METHOD_GET_METRICS, NULL                                     \
        }

#define KVELECTD_MAX_CAMPAIGNS 4096
#define KVELECTD_MAX_CONNECTIONS 8
