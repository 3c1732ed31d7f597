/* SPDX-License-Identifier: Apache-2.0 */
/* LD_PRELOAD shim for the wall-clock tests: shifts CLOCK_REALTIME (and
 * gettimeofday/time) of one process by the number of seconds in the file
 * named by $KVTEST_REALTIME_OFFSET_FILE, re-read on every call, so a test can
 * make one kvelectd's wall clock jump back and forth while it runs, without
 * touching the machine's clock (which other tests and the TLS certificates
 * depend on). CLOCK_MONOTONIC is left alone: that is the point. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_sec(void)
{
        const char *path = getenv("KVTEST_REALTIME_OFFSET_FILE");
        char buf[32] = {};
        ssize_t n;
        int fd;

        if (!path)
                return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        return n > 0 ? strtoll(buf, NULL, 10) : 0;
}

static int real_clock_gettime(clockid_t id, struct timespec *ts)
{
        static int (*next)(clockid_t, struct timespec *);

        if (!next)
                next = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
        return next(id, ts);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
        int r = real_clock_gettime(id, ts);

        if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
                ts->tv_sec += offset_sec();
        return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
        struct timespec ts;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return -1;
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
        return 0;
}

time_t time(time_t *t)
{
        struct timespec ts;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return (time_t)-1;
        if (t)
                *t = ts.tv_sec;
        return ts.tv_sec;
}
