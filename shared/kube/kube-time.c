/* SPDX-License-Identifier: Apache-2.0 */
/* Kubernetes time formats. MicroTime is parsed by the apiserver with a fixed
 * layout ("2006-01-02T15:04:05.000000Z07:00"), so a Lease time with any other
 * number of fractional digits is a 400: we always write exactly six. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kube-objects.h"

static int format_utc(uint64_t realtime_usec, bool micro, char buf[static 32])
{
        time_t sec = (time_t)(realtime_usec / USEC_PER_SEC);
        struct tm tm;
        size_t n;

        if (!gmtime_r(&sec, &tm))
                return -EOVERFLOW;
        /* Years past 9999 do not fit RFC 3339. */
        if (tm.tm_year + 1900 > 9999)
                return -EOVERFLOW;
        n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0)
                return -EOVERFLOW;
        if (micro)
                (void)snprintf(buf + n, 32 - n, ".%06uZ", (unsigned)(realtime_usec % USEC_PER_SEC));
        else
                (void)snprintf(buf + n, 32 - n, "Z");
        return 0;
}

int kube_microtime_format(uint64_t realtime_usec, char buf[static 32])
{
        return format_utc(realtime_usec, true, buf);
}

int kube_time_format(uint64_t realtime_usec, char buf[static 32])
{
        return format_utc(realtime_usec, false, buf);
}

/* Reads exactly n decimal digits. */
static int digits(const char **p, unsigned n, int *ret)
{
        int v = 0;

        for (unsigned i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return -EINVAL;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int expect(const char **p, char c)
{
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

/* frac_digits: -1 = any number (at least one) or none, else exactly that many. */
static int parse_rfc3339(const char *s, int frac_digits, uint64_t *ret)
{
        int year, mon, mday, hour, min, sec, usec = 0, off = 0;
        const char *p = s;
        struct tm tm = {};
        time_t t;

        if (!s)
                return -EINVAL;
        if (digits(&p, 4, &year) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &mon) < 0 ||
            expect(&p, '-') < 0 || digits(&p, 2, &mday) < 0 || (*p != 'T' && *p != 't'))
                return -EINVAL;
        p++;
        if (digits(&p, 2, &hour) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &min) < 0 ||
            expect(&p, ':') < 0 || digits(&p, 2, &sec) < 0)
                return -EINVAL;

        if (*p == '.') {
                unsigned n = 0;
                int scale = 100000;

                p++;
                while (*p >= '0' && *p <= '9') {
                        if (n < 6)
                                usec += (*p - '0') * scale;
                        scale /= 10;
                        n++;
                        p++;
                }
                if (n == 0 || (frac_digits >= 0 && n != (unsigned)frac_digits))
                        return -EINVAL;
        } else if (frac_digits > 0)
                return -EINVAL;

        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (digits(&p, 2, &oh) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &om) < 0 || oh > 23 ||
                    om > 59)
                        return -EINVAL;
                off = sign * (oh * 3600 + om * 60);
        } else
                return -EINVAL;
        if (*p != '\0')
                return -EINVAL;

        if (mon < 1 || mon > 12 || mday < 1 || mday > 31 || hour > 23 || min > 59 || sec > 60)
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = mday;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        t = timegm(&tm);
        if (t == (time_t)-1 || tm.tm_mday != mday) /* timegm normalises Feb 30 */
                return -EINVAL;
        t -= off;
        if (t < 0)
                return -ERANGE;
        *ret = (uint64_t)t * USEC_PER_SEC + (uint64_t)usec;
        return 0;
}

int kube_microtime_parse(const char *s, uint64_t *ret_realtime_usec)
{
        return parse_rfc3339(s, 6, ret_realtime_usec);
}

int kube_time_parse(const char *s, uint64_t *ret_realtime_usec)
{
        return parse_rfc3339(s, -1, ret_realtime_usec);
}
