/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A peer-to-peer sd-bus server on a private AF_UNIX socket: accepts
 * connections (socket activation or its own bind), checks the peer's
 * credentials before any message is read, and runs one sd_bus per client on
 * the daemon's event loop. Used by kvnetd and kvelectd. */

#include <stdarg.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macros.h"

typedef struct BusServer BusServer;

typedef struct BusPeerPolicy {
        /* A peer is admitted if its uid is in uids or its gid is in gids.
         * Empty lists admit nobody except uid 0 when allow_root. */
        const uid_t *uids;
        size_t n_uids;
        const gid_t *gids;
        size_t n_gids;
        bool allow_root;
        /* Every peer that could open the socket: the file's mode is the
         * check (kvpd under PrivateUsers= sees other peers as nobody). */
        bool allow_any;
} BusPeerPolicy;

/* Called for each admitted connection, before it is started: add the object
 * vtables here. */
typedef int (*BusServerSetupFn)(sd_bus *bus, void *userdata);

/* socket_path is used when no socket was passed by systemd (LISTEN_FDS);
 * the socket is created with mode socket_mode. */
int bus_server_new(sd_event *event, const char *socket_path, mode_t socket_mode, const BusPeerPolicy *policy,
                   unsigned max_connections, BusServerSetupFn setup, void *userdata, BusServer **ret);
BusServer *bus_server_free(BusServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(BusServer *, bus_server_free);

/* Read-only introspection (kvctl, the metrics exporter): a peer that the
 * policy of bus_server_new() does not admit but this one does gets a
 * connection on which only the methods named in read_only_methods (members of
 * the daemon's interface) and org.freedesktop.DBus.Introspectable/Peer are
 * dispatched; every other call is answered AccessDenied before any handler
 * runs. Groups are matched against the peer's primary and supplementary
 * groups (SO_PEERGROUPS), since operators are added to kvegress as a
 * supplementary group. read_only_methods is NULL-terminated and must outlive
 * the server. */
int bus_server_set_read_only(BusServer *s, const BusPeerPolicy *policy,
                             const char *const *read_only_methods);

/* Called whenever a client connects or disconnects (not while the server is
 * freed), with the number of connections now. */
typedef void (*BusServerConnectionsFn)(BusServer *s, unsigned n_connections, void *userdata);
void bus_server_set_connections_callback(BusServer *s, BusServerConnectionsFn fn, void *userdata);

/* Emit a signal on every connected client. A client with max_queued
 * messages (signals, replies) still unwritten is disconnected instead: it
 * stopped reading, and its queue would grow without bound. */
#define BUS_SERVER_MAX_QUEUED_DEFAULT 16384U
void bus_server_set_max_queued(BusServer *s, uint64_t max_queued);
int bus_server_emit_signal(BusServer *s, const char *path, const char *interface, const char *member,
                           const char *types, ...);
unsigned bus_server_n_connections(const BusServer *s);

/* A method's reply that is one array, of signature reply_sig (e.g.
 * "a(ssst)", the interface header's *_REPLY): *ret is the reply with the
 * array open. Append the elements, then bus_reply_array_send() closes the
 * array and sends it. */
int bus_reply_array_new(sd_bus_message *call, const char *reply_sig, sd_bus_message **ret);
int bus_reply_array_send(sd_bus_message *reply);

/* Parses "1000,1001" into a malloc'd uid/gid list (names resolved with
 * getpwnam/getgrnam). */
int parse_uid_list(const char *s, uid_t **ret, size_t *ret_n);
int parse_gid_list(const char *s, gid_t **ret, size_t *ret_n);

/* The bus socket's options as a daemon takes them (kvnetd, kvelectd), from
 * an option or the environment; an error is logged naming it ("name=value:
 * reason") and returned as a negative errno. A list replaces *ret (freed). */
int socket_mode_arg_parse(const char *name, const char *v, mode_t *ret);
int uid_list_arg_parse(const char *name, const char *v, uid_t **ret, size_t *ret_n);
int gid_list_arg_parse(const char *name, const char *v, gid_t **ret, size_t *ret_n);

/* The same options' rows of a getopt_long() table; the caller's enum gives
 * the values, its switch calls the parsers above. */
/* clang-format off */
#define BUS_SERVER_LONG_OPTIONS(socket, socket_mode, allow_uid, allow_gid)      \
        {"socket", required_argument, NULL, (socket)},                          \
        {"socket-mode", required_argument, NULL, (socket_mode)},                \
        {"allow-uid", required_argument, NULL, (allow_uid)},                    \
        {"allow-gid", required_argument, NULL, (allow_gid)}
/* clang-format on */

/* sd-bus.h and sd-event.h define the *_unrefp cleanup helpers already. */
static inline void sd_bus_error_freep(sd_bus_error *e)
{
        sd_bus_error_free(e);
}
#define _cleanup_bus_error_ _cleanup_(sd_bus_error_freep)
