/* SPDX-License-Identifier: Apache-2.0 */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include "log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <time.h>

/* The two process-wide settings the style allows outside a daemon's context:
 * the identity and the level. Set once at start-up. */
static const char *log_ident = "kvegress";
static int log_max_level = LOG_INFO;
static int log_to_journal = -1;
static bool
        log_time; /* KVEGRESS_LOG_TIME=1: stderr lines start with the UTC time (tests without a journal) */

static bool stderr_is_journal(void)
{
        /* systemd sets JOURNAL_STREAM=dev:inode of the stream it connected to
         * stderr; if it still matches, structured logging is available. */
        const char *e = getenv("JOURNAL_STREAM");
        struct stat st;
        unsigned long long dev, ino;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

void log_setup(const char *ident)
{
        const char *e;

        if (ident)
                log_ident = ident;
        log_to_journal = stderr_is_journal();
        e = getenv("KVEGRESS_LOG_TIME");
        log_time = e && streq(e, "1");
        e = getenv("KVEGRESS_LOG_LEVEL");
        if (e) {
                int l = log_level_from_string(e);
                if (l >= 0)
                        log_max_level = l;
        }
}

void log_set_max_level(int level)
{
        log_max_level = level;
}

int log_get_max_level(void)
{
        return log_max_level;
}

int log_level_from_string(const char *s)
{
        static const struct {
                const char *name;
                int level;
        } table[] = {
                {"emerg", LOG_EMERG},  {"alert", LOG_ALERT},   {"crit", LOG_CRIT},
                {"err", LOG_ERR},      {"error", LOG_ERR},     {"warning", LOG_WARNING},
                {"warn", LOG_WARNING}, {"notice", LOG_NOTICE}, {"info", LOG_INFO},
                {"debug", LOG_DEBUG},
        };

        if (!s)
                return -EINVAL;
        if (isdigit((unsigned char)s[0]) && s[1] == '\0' && s[0] <= '7')
                return s[0] - '0';
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(s, table[i].name) == 0)
                        return table[i].level;
        return -EINVAL;
}

_printf_(7, 0) static int log_dispatch(int level, int error, const char *file, int line, const char *func,
                                       const char *const *fields, const char *fmt, va_list ap)
{
        char msg[2048];
        int saved_errno = errno;

        if (error < 0)
                error = -error;
        if (level > log_max_level)
                return -error;

        /* %m expands to strerror(errno): make it name the error we were given. */
        errno = error;
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);

        if (log_to_journal < 0)
                log_to_journal = stderr_is_journal();

        if (log_to_journal) {
                struct iovec iov[24];
                char buf_msg[sizeof(msg) + 16], buf_prio[32], buf_file[256], buf_line[32], buf_func[128],
                        buf_errno[32], buf_ident[64];
                size_t n = 0;

#define IOV_PRINTF(buf, ...)                                                                                \
        do {                                                                                                \
                int _l = snprintf(buf, sizeof(buf), __VA_ARGS__);                                           \
                iov[n++] =                                                                                  \
                        (struct iovec){.iov_base = buf, .iov_len = (size_t)MIN(_l, (int)sizeof(buf) - 1)};  \
        } while (0)

                IOV_PRINTF(buf_msg, "MESSAGE=%s", msg);
                IOV_PRINTF(buf_prio, "PRIORITY=%d", level);
                IOV_PRINTF(buf_ident, "SYSLOG_IDENTIFIER=%s", log_ident);
                IOV_PRINTF(buf_file, "CODE_FILE=%s", file);
                IOV_PRINTF(buf_line, "CODE_LINE=%d", line);
                IOV_PRINTF(buf_func, "CODE_FUNC=%s", func);
                if (error != 0)
                        IOV_PRINTF(buf_errno, "ERRNO=%d", error);
#undef IOV_PRINTF
                for (const char *const *f = fields; f && *f && n < ELEMENTSOF(iov); f++)
                        iov[n++] = (struct iovec){.iov_base = (void *)*f, .iov_len = strlen(*f)};
                if (sd_journal_sendv(iov, (int)n) >= 0)
                        goto done;
        }

        {
                /* stderr: one line, with the structured fields appended so
                 * tests and operators without a journal still see them. */
                char extra[512] = "";
                size_t off = 0;
                for (const char *const *f = fields; f && *f; f++) {
                        int l = snprintf(extra + off, sizeof(extra) - off, " %s", *f);
                        if (l < 0 || (size_t)l >= sizeof(extra) - off)
                                break;
                        off += (size_t)l;
                }
                char stamp[32] = "";
                if (log_time) {
                        struct timespec ts;
                        struct tm tm;

                        if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm))
                                (void)snprintf(stamp, sizeof(stamp), "%02d:%02d:%02d.%03ld ", tm.tm_hour,
                                               tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
                }
                fprintf(stderr, "%s%s[%d]: %s%s%s%s\n", stamp, log_ident, (int)getpid(),
                        level <= LOG_ERR       ? "error: "
                        : level == LOG_WARNING ? "warning: "
                                               : "",
                        msg, off ? " |" : "", extra);
        }
done:
        errno = saved_errno;
        return -error;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_dispatch(level, error, file, line, func, NULL, fmt, ap);
        va_end(ap);
        return r;
}

int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *const *fields, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_dispatch(level, error, file, line, func, fields, fmt, ap);
        va_end(ap);
        return r;
}

int log_event_internal(int level, int error, const char *file, int line, const char *func,
                       const char *message_id, const LogObject *o, const char *fmt, ...)
{
        static const char *const names[] = {"KVEGRESS_SERVICE", "KVEGRESS_VIP",   "KVEGRESS_POD",
                                            "KVEGRESS_NODE",    "KVEGRESS_LEASE", "KVEGRESS_DAEMON"};
        const char *values[] = {o->service, o->vip, o->pod, o->node, o->lease, o->daemon};
        char buf[ELEMENTSOF(names)][384];
        const char *fields[ELEMENTSOF(names) + 2];
        size_t n = 0;
        va_list ap;
        int r;

        if (level > log_max_level)
                return error < 0 ? error : -error;
        fields[n++] = message_id;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (values[i] && *values[i]) {
                        (void)snprintf(buf[i], sizeof(buf[i]), "%s=%s", names[i], values[i]);
                        fields[n++] = buf[i];
                }
        fields[n] = NULL;
        va_start(ap, fmt);
        r = log_dispatch(level, error, file, line, func, fields, fmt, ap);
        va_end(ap);
        return r;
}

void log_fatal_internal(int error, const char *file, int line, const char *func, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        (void)log_dispatch(LOG_CRIT, error, file, line, func, NULL, fmt, ap);
        va_end(ap);
        exit(EXIT_FAILURE);
}
