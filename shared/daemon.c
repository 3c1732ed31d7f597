/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "netaddr.h"

#ifndef PROJECT_VERSION
#define PROJECT_VERSION "unknown"
#endif

int daemon_event_new_unhandled(sd_event **ret)
{
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        sigset_t ss;
        int r;

        r = sd_event_default(&e);
        if (r < 0)
                return r;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        r = sd_event_set_watchdog(e, true);
        if (r < 0)
                return r;
        /* A peer that goes away mid-write must not kill us. */
        (void)signal(SIGPIPE, SIG_IGN);
        *ret = TAKE_PTR(e);
        return 0;
}

int daemon_event_add_stop_handler(sd_event *event, sd_event_signal_handler_t handler, void *userdata)
{
        int r;

        /* A NULL handler makes sd-event exit the loop with code 0. */
        r = sd_event_add_signal(event, NULL, SIGTERM, handler, userdata);
        if (r < 0)
                return r;
        return sd_event_add_signal(event, NULL, SIGINT, handler, userdata);
}

int daemon_event_new(sd_event **ret)
{
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        int r;

        r = daemon_event_new_unhandled(&e);
        if (r < 0)
                return r;
        r = daemon_event_add_stop_handler(e, NULL, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

void daemon_notify_ready(const char *status)
{
        if (status)
                (void)sd_notifyf(false, "READY=1\nSTATUS=%s", status);
        else
                (void)sd_notify(false, "READY=1");
}

void daemon_notify_stopping(void)
{
        (void)sd_notify(false, "STOPPING=1");
}

void daemon_notify_status(const char *status)
{
        (void)sd_notifyf(false, "STATUS=%s", status);
}

void daemon_print_version(const char *program)
{
        printf("%s %s\n", program, PROJECT_VERSION);
}

int env_get_string(const char *name, const char **ret)
{
        const char *v = getenv(name);

        if (!v)
                return 0;
        *ret = v;
        return 1;
}

int env_get_bool(const char *name, bool *ret)
{
        static const char *const yes[] = {"1", "true", "yes", "on", "y", "t"};
        static const char *const no[] = {"0", "false", "no", "off", "n", "f", ""};
        const char *v = getenv(name);

        if (!v)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(v, yes[i]) == 0) {
                        *ret = true;
                        return 1;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(v, no[i]) == 0) {
                        *ret = false;
                        return 1;
                }
        return log_error_errno(EINVAL, "%s=%s: not a boolean (true/false)", name, v);
}

int env_get_uint64(const char *name, uint64_t min, uint64_t max, uint64_t *ret)
{
        const char *v = getenv(name);
        unsigned long long x;
        char *end;

        if (!v)
                return 0;
        errno = 0;
        x = strtoull(v, &end, 10);
        if (!isdigit((unsigned char)*v) || errno != 0 || *end != '\0')
                return log_error_errno(EINVAL, "%s=%s: not a number", name, v);
        if (x < min || x > max)
                return log_error_errno(ERANGE, "%s=%s: must be between %llu and %llu", name, v,
                                       (unsigned long long)min, (unsigned long long)max);
        *ret = x;
        return 1;
}

int parse_duration_usec(const char *s, uint64_t *ret)
{
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                {"us", 1},
                {"ms", USEC_PER_MSEC},
                {"s", USEC_PER_SEC},
                {"m", 60 * USEC_PER_SEC},
                {"h", 3600 * USEC_PER_SEC},
                {"", USEC_PER_SEC},
        };
        unsigned long long x;
        char *end;

        if (isempty(s) || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        x = strtoull(s, &end, 10);
        if (errno != 0)
                return -ERANGE;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(end, units[i].suffix)) {
                        if (x > UINT64_MAX / units[i].usec)
                                return -ERANGE;
                        *ret = x * units[i].usec;
                        return 0;
                }
        return -EINVAL;
}

int duration_arg_parse(const char *name, const char *v, uint64_t min_usec, uint64_t max_usec, uint64_t *ret)
{
        uint64_t x;

        if (parse_duration_usec(v, &x) < 0)
                return log_error_errno(EINVAL, "%s=%s: not a duration (seconds, or e.g. 500ms, 15s)", name,
                                       v);
        if (x < min_usec && max_usec == UINT64_MAX)
                return log_error_errno(ERANGE, "%s=%s: must be at least %llums", name, v,
                                       (unsigned long long)(min_usec / USEC_PER_MSEC));
        if (x < min_usec || x > max_usec)
                return log_error_errno(ERANGE, "%s=%s: must be between %llums and %llums", name, v,
                                       (unsigned long long)(min_usec / USEC_PER_MSEC),
                                       (unsigned long long)(max_usec / USEC_PER_MSEC));
        *ret = x;
        return 0;
}

int env_get_duration_usec(const char *name, uint64_t min_usec, uint64_t max_usec, uint64_t *ret)
{
        const char *v = getenv(name);
        int r;

        if (!v)
                return 0;
        r = duration_arg_parse(name, v, min_usec, max_usec, ret);
        return r < 0 ? r : 1;
}

int credential_path(const char *name, char **ret)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char *p;

        *ret = NULL;
        if (isempty(dir))
                return 0;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        if (access(p, R_OK) < 0) {
                free(p);
                return 0;
        }
        *ret = p;
        return 1;
}

const char *env_first(const char *const *names, const char **ret_name)
{
        for (const char *const *n = names; *n; n++) {
                const char *v = getenv(*n);
                if (v) {
                        if (ret_name)
                                *ret_name = *n;
                        return v;
                }
        }
        return NULL;
}

int node_name_load(const char *option, const char *option_name, char **ret, const char **ret_source)
{
        static const char *const names[] = {"vip_nodename", "KVEGRESS_NODE_NAME", NULL};
        char host[HOST_NAME_MAX + 1] = {};
        const char *v = option, *which = option_name ? option_name : "option";
        char *name;

        if (!v) {
                v = env_first(names, &which);
                if (isempty(v)) {
                        if (gethostname(host, sizeof(host) - 1) < 0)
                                return log_error_errno(errno,
                                                       "vip_nodename is unset and gethostname() failed: %m");
                        v = host;
                        which = "hostname";
                }
        }
        name = strdup(v);
        if (!name)
                return log_error_errno(ENOMEM, "out of memory");
        for (char *p = name; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        if (!k8s_dns_subdomain_valid(name)) {
                free(name);
                return log_error_errno(EINVAL, "%s=%s: not a valid Kubernetes node name", which, v);
        }
        *ret = name;
        if (ret_source)
                *ret_source = which;
        return 0;
}
