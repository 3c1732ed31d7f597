/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Logging for the daemons. Under systemd (JOURNAL_STREAM names our stderr)
 * messages go to the journal with structured fields (CODE_FILE, CODE_LINE,
 * ERRNO and any KEY=value pairs the caller adds with log_struct()); otherwise
 * they go to stderr as "ident: message". shared/ code itself logs at debug at
 * most, as systemd's library code does: the caller decides what matters. */

#include <stdarg.h>
#include <syslog.h>

#include "macros.h"

void log_setup(const char *ident);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Parses "debug", "info", "notice", "warning", "err"/"error", or a digit. */
int log_level_from_string(const char *s);

/* Returns -abs(error) (or 0 when error is 0) so callers can write
 * "return log_error_errno(r, ...);". %m in the format expands to strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
        _printf_(6, 7);

/* Like log_internal(), with extra journal fields given as a NULL-terminated
 * list of "KEY=value" strings before the message format. */
int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *const *fields, const char *fmt, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...)                                                                   \
        log_internal(level, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) (void)log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* log_struct(LOG_INFO, 0, LOG_FIELDS("SERVICE=default/web", "VIP=10.0.0.1"), "bound %s", vip); */
#define LOG_FIELDS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define log_struct(level, error, fields, ...)                                                               \
        log_struct_internal(level, error, __FILE__, __LINE__, __func__, fields, __VA_ARGS__)

/* The catalogue's events (shared/catalog.h): the MESSAGE_ID and the object
 * fields that are set, as KVEGRESS_SERVICE=, KVEGRESS_VIP=, KVEGRESS_POD=,
 * KVEGRESS_NODE=, KVEGRESS_LEASE=, KVEGRESS_DAEMON=. Only names and
 * addresses go here, never a credential. */
typedef struct LogObject {
        const char *service, *vip, *pod, *node, *lease, *daemon;
} LogObject;
int log_event_internal(int level, int error, const char *file, int line, const char *func,
                       const char *message_id, const LogObject *o, const char *fmt, ...) _printf_(8, 9);
/* log_event(LOG_INFO, 0, KVEGRESS_MESSAGE_VIP_BOUND, LOG_OBJECT(.service = key, .vip = addr), "bound %s",
 * addr); */
#define LOG_OBJECT(...) (&(const LogObject){__VA_ARGS__})
#define log_event(level, error, message_id, object, ...)                                                    \
        log_event_internal(level, error, __FILE__, __LINE__, __func__, message_id, object, __VA_ARGS__)

/* A fatal error in setup: logs and exits with EXIT_FAILURE. */
_noreturn_ void log_fatal_internal(int error, const char *file, int line, const char *func, const char *fmt,
                                   ...) _printf_(5, 6);
#define log_fatal_errno(e, ...) log_fatal_internal(e, __FILE__, __LINE__, __func__, __VA_ARGS__)
