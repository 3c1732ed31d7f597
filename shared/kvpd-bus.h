/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvpd's read-only introspection interface, for kvctl: what kvpd wants for
 * each egress Service on this node, and the last error, with the daemon it
 * came from. kvpd holds the API credentials, so this interface only ever
 * reads kvpd's memory: it has no method that changes anything, and answers
 * nothing it did not compute itself from the API objects (no tokens, no
 * kubeconfig).
 *
 * Transport as for kvnetd and kvelectd: sd-bus peer-to-peer on a private
 * AF_UNIX socket. Under systemd the socket is kvpd.socket (group kvegress,
 * mode 0660: the file mode is the check, since kvpd runs with
 * PrivateUsers= and sees every other peer as nobody); elsewhere
 * KVEGRESS_KVPD_SOCKET names a path kvpd binds itself. */

#define KVPD_BUS_INTERFACE "io.kvegress.Controller1"
#define KVPD_BUS_PATH "/io/kvegress/Controller1"
#define KVPD_SOCKET_PATH_DEFAULT "/run/kvpd/kvpd.sock"

/* GetNode() -> (s node, s version, b synced, b kvnetd, b kvelectd)
 *   synced: every watch has listed once. kvnetd/kvelectd: connected now. */
#define KVPD_METHOD_GET_NODE "GetNode"
#define KVPD_SIG_GET_NODE_REPLY "ssbbb"

/* ListServices() -> a(sssbstsasasa(sq)asasbsst), one entry per egress
 * Service kvpd knows:
 *   key "namespace/name"; state "none", "invalid", "idle" or "ready";
 *   lease "namespace/name" ("" while not campaigning); leading; holder (last
 *   observed); deadline_usec (CLOCK_MONOTONIC, 0 when not leading);
 *   interface (as configured, may be "auto"); vips; pods (local ready
 *   endpoints SNATed when leading); ports; allowed; denied;
 *   programmed (kvnetd accepted the whole current state);
 *   error, error_from ("kvpd", "kvnetd" or "kvelectd"),
 *   error_usec (CLOCK_REALTIME; 0: no error): the last error, and
 *   failing: whether it still stands (last in the tuple, "b"). */
#define KVPD_METHOD_LIST_SERVICES "ListServices"
#define KVPD_SIG_SERVICE "(sssbstsasasa(sq)asasbsstb)"
#define KVPD_SIG_LIST_SERVICES_REPLY "a" KVPD_SIG_SERVICE

/* GetMetrics() -> s: kvpd's metrics in the Prometheus text format. */
#define KVPD_METHOD_GET_METRICS "GetMetrics"

#define KVPD_MAX_CONNECTIONS 8
