/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What every daemon's main() does the same way: SIGTERM/SIGINT end the event
 * loop, the systemd watchdog is fed by sd-event, READY=1 is sent once the
 * daemon serves, STOPPING=1 when it leaves. */

#include <systemd/sd-event.h>

#include "macros.h"

/* Creates the event loop with SIGTERM and SIGINT handled (exit code 0) and
 * the watchdog enabled if WATCHDOG_USEC is set. */
int daemon_event_new(sd_event **ret);
/* The same loop with SIGTERM and SIGINT blocked but not yet handled: for a
 * daemon whose stop is a graceful job on the loop (release leases, clear
 * status), which adds its handler with daemon_event_add_stop_handler() once
 * the state that job needs exists. */
int daemon_event_new_unhandled(sd_event **ret);
int daemon_event_add_stop_handler(sd_event *event, sd_event_signal_handler_t handler, void *userdata);
void daemon_notify_ready(const char *status);
void daemon_notify_stopping(void);
void daemon_notify_status(const char *status);

/* --help (-h) and --version, the first rows of every program's
 * getopt_long() table (daemon_print_version() answers the latter). */
/* clang-format off */
#define DAEMON_LONG_OPTIONS_HELP_VERSION(version)                               \
        {"help", no_argument, NULL, 'h'},                                       \
        {"version", no_argument, NULL, (version)}
/* clang-format on */

/* Standard --version output. */
void daemon_print_version(const char *program);

/* Environment configuration with errors that name the variable. Values are
 * read with getenv(); kube-vip's variable names are accepted where they
 * exist. Each returns 0 and leaves *ret untouched when unset, 1 when set,
 * negative errno (after logging "VAR=value: reason") when malformed. */
int env_get_bool(const char *name, bool *ret);
int env_get_uint64(const char *name, uint64_t min, uint64_t max, uint64_t *ret);
int env_get_string(const char *name, const char **ret);
/* Seconds, as kube-vip takes them ("15"), or with a unit suffix ("15s", "500ms"). */
int env_get_duration_usec(const char *name, uint64_t min_usec, uint64_t max_usec, uint64_t *ret);
/* The same check for a value from anywhere (an option: name is "--grace-period"): 0, or a negative errno
 * after logging "name=value: reason". max_usec UINT64_MAX: no upper bound. */
int duration_arg_parse(const char *name, const char *v, uint64_t min_usec, uint64_t max_usec, uint64_t *ret);
/* First variable of names[] that is set wins (e.g. {"KVEGRESS_NODE_NAME", "vip_nodename"}). */
const char *env_first(const char *const *names, const char **ret_name);

/* $CREDENTIALS_DIRECTORY/name (what a unit's LoadCredential= hands over) when it is readable: 1 and a
 * malloc'd path; 0 and NULL when there is none; -ENOMEM. */
int credential_path(const char *name, char **ret);

/* This node's name, the one kvpd and kvelectd must agree on (it matches
 * EndpointSlice nodeName and is the Lease identity): option if set (named
 * option_name in errors), else vip_nodename, else KVEGRESS_NODE_NAME, else
 * the hostname; lowercased as kube-vip does (Node names are lowercase RFC
 * 1123 subdomains anyway) and checked. Logs and returns a negative errno on
 * failure. */
int node_name_load(const char *option, const char *option_name, char **ret, const char **ret_source);

/* Parses "15", "15s", "1500ms", "2m", "1h". */
int parse_duration_usec(const char *s, uint64_t *ret);
