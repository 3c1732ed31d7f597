/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The journal catalogue's message ids: one fixed 128-bit id per kind of
 * event, as systemd's catalogue uses them, so an operator filters with
 *   journalctl MESSAGE_ID=<id>    or    journalctl KVEGRESS_SERVICE=default/web
 * and `journalctl -x` explains each line from systemd/kvegress.catalog
 * (installed to /usr/lib/systemd/catalog/). Never change an id; add new ones.
 *
 * The object fields that go with them (where they apply):
 *   KVEGRESS_SERVICE=namespace/name  KVEGRESS_VIP=address
 *   KVEGRESS_POD=address             KVEGRESS_NODE=node name
 *   KVEGRESS_LEASE=namespace/name    KVEGRESS_DAEMON=kvnetd|kvelectd|kvpd (who refused)
 * Never a token, a kubeconfig or any other credential. */

#define KVEGRESS_MESSAGE_VIP_BOUND "MESSAGE_ID=d5d38373d0ef43ba87f2a38f115008a1"
#define KVEGRESS_MESSAGE_VIP_RELEASED "MESSAGE_ID=28d6f9a5bf794948990d28d18e6ed833"
#define KVEGRESS_MESSAGE_VIP_FENCED "MESSAGE_ID=22a9ea33bea143ccb158fddc7503e6a2"
#define KVEGRESS_MESSAGE_EGRESS_APPLIED "MESSAGE_ID=d966d50de11844f58f866eab2f711a32"
#define KVEGRESS_MESSAGE_EGRESS_REMOVED "MESSAGE_ID=f8d03cea8a5c42acab4e93d897638cb1"
#define KVEGRESS_MESSAGE_EGRESS_REFUSED "MESSAGE_ID=7dfdac8d082d4cacbd7d6f24cd181b60"
#define KVEGRESS_MESSAGE_LEADERSHIP_GAINED "MESSAGE_ID=de33c03f11ce4160ad8fa3b98965bdbd"
#define KVEGRESS_MESSAGE_LEADERSHIP_LOST "MESSAGE_ID=cf27a04133e14847bacec80054ba30ce"
#define KVEGRESS_MESSAGE_INPUT_REJECTED "MESSAGE_ID=36679562147744ac8c5700d74b90593f"
#define KVEGRESS_MESSAGE_API_UNREACHABLE "MESSAGE_ID=f83b2d756baa4c30b167dd403e873027"
#define KVEGRESS_MESSAGE_API_REACHABLE "MESSAGE_ID=dc8ca5672bb344fda682bcfe6b52e8a1"

/* Field buffers: "KVEGRESS_SERVICE=" + a key of at most 253 + 1 + 63. */
#define KVEGRESS_FIELD_MAX 384
