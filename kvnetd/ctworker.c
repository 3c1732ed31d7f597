/* SPDX-License-Identifier: Apache-2.0 */
#include "ctworker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "conntrack.h"
#include "log.h"

struct CtWorker {
        /* Shared with the thread, under lock. */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        PodMap queue;
        size_t busy;       /* addresses in the pass under way */
        bool stop;         /* finish the queue, then exit */
        uint64_t deleted;  /* since the loop last read it */
        int error;         /* of the last failed pass since then */
        atomic_bool abort; /* drop the pass under way (read without the lock) */

        /* The thread's own. */
        Conntrack ct;
        pthread_t thread;
        bool started;

        /* The loop's own. */
        int efd;
        sd_event_source *source;
        CtWorkerDoneFn done;
        void *userdata;
};

static uint64_t now_monotonic(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

/* Waits, under the lock, until usec (CLOCK_MONOTONIC) or a stop. */
static void rest_until(CtWorker *w, uint64_t usec)
{
        struct timespec ts = {.tv_sec = (time_t)(usec / USEC_PER_SEC),
                              .tv_nsec = (long)(usec % USEC_PER_SEC) * 1000};

        while (!w->stop && now_monotonic() < usec)
                if (pthread_cond_timedwait(&w->wake, &w->lock, &ts) == ETIMEDOUT)
                        break;
}

static void *worker_main(void *arg)
{
        CtWorker *w = arg;

        for (;;) {
                PodMap batch;
                uint64_t t;
                int64_t r;

                pthread_mutex_lock(&w->lock);
                while (!w->stop && w->queue.n == 0)
                        pthread_cond_wait(&w->wake, &w->lock);
                if (w->queue.n == 0 || atomic_load(&w->abort)) {
                        pthread_mutex_unlock(&w->lock);
                        break;
                }
                /* The whole queue is one pass; the loop fills a new one
                 * meanwhile. An address queued again while its pass runs is
                 * done again: the pass may have read the table before the
                 * change that queued it. */
                batch = w->queue;
                w->queue = (PodMap){};
                w->busy = batch.n;
                pthread_mutex_unlock(&w->lock);

                t = now_monotonic();
                r = conntrack_delete_sources(&w->ct, &batch, &w->abort);
                podmap_done(&batch);
                t = now_monotonic() - t;

                pthread_mutex_lock(&w->lock);
                if (r != -ECANCELED)
                        w->busy = 0; /* else counted as left undone */
                if (r > 0)
                        w->deleted += (uint64_t)r;
                else if (r < 0 && r != -ECANCELED)
                        w->error = (int)r;
                (void)eventfd_write(w->efd, 1);
                /* Rest as long as the pass took (at most a second): on a
                 * busy node the loop that serves renewals gets at least the
                 * other half of a core, and what changes meanwhile joins
                 * one next pass rather than many. */
                rest_until(w, now_monotonic() + MIN(t, (uint64_t)USEC_PER_SEC));
                pthread_mutex_unlock(&w->lock);
        }
        return NULL;
}

static int on_worker_event(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        CtWorker *w = userdata;
        eventfd_t v;
        uint64_t deleted;
        int error;

        (void)source;
        (void)revents;
        (void)eventfd_read(fd, &v);
        pthread_mutex_lock(&w->lock);
        deleted = w->deleted;
        error = w->error;
        w->deleted = 0;
        w->error = 0;
        pthread_mutex_unlock(&w->lock);
        if (w->done)
                w->done(w, deleted, error, w->userdata);
        return 0;
}

int ct_worker_new(sd_event *event, CtWorkerDoneFn done, void *userdata, CtWorker **ret)
{
        _cleanup_(ct_worker_freep) CtWorker *w = NULL;
        pthread_condattr_t ca;
        sigset_t all, old;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->efd = -EBADF;
        pthread_mutex_init(&w->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->wake, &ca);
        pthread_condattr_destroy(&ca);
        atomic_init(&w->abort, false);
        w->done = done;
        w->userdata = userdata;
        r = conntrack_open(&w->ct);
        if (r < 0)
                return r;
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0)
                return -errno;
        r = sd_event_add_io(event, &w->source, w->efd, EPOLLIN, on_worker_event, w);
        if (r < 0)
                return r;
        /* Signals stay with the loop (sd-event's signalfd). */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        w->started = true;
        (void)pthread_setname_np(w->thread, "kvnetd-ct");
        *ret = TAKE_PTR(w);
        return 0;
}

static void stop_thread(CtWorker *w, bool abort, uint64_t timeout_usec)
{
        struct timespec ts;

        if (!w->started)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        if (abort)
                atomic_store(&w->abort, true);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        if (!abort) {
                (void)clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)(timeout_usec / USEC_PER_SEC);
                ts.tv_nsec += (long)(timeout_usec % USEC_PER_SEC) * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0) {
                        w->started = false;
                        return;
                }
                atomic_store(&w->abort, true);
        }
        pthread_join(w->thread, NULL);
        w->started = false;
}

CtWorker *ct_worker_free(CtWorker *w)
{
        if (!w)
                return NULL;
        stop_thread(w, true, 0);
        sd_event_source_disable_unref(w->source);
        if (w->efd >= 0)
                close(w->efd);
        conntrack_close(&w->ct);
        podmap_done(&w->queue);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

static size_t move(CtWorker *w, PodMap *from, size_t max)
{
        size_t moved = 0;

        for (size_t i = 0; i < from->size && from->n > 0; i++) {
                PodMapEntry *e = &from->entries[i];
                IpAddr a;

                if (e->addr.family == 0)
                        continue;
                if (w->queue.n >= max && !podmap_get(&w->queue, &e->addr))
                        break;
                if (podmap_put(&w->queue, &e->addr, (void *)1) < 0)
                        break; /* stays in from, for the next time */
                a = e->addr;
                podmap_remove(from, &a);
                moved++;
        }
        if (from->n == 0)
                podmap_done(from); /* and its tombstones */
        return moved;
}

size_t ct_worker_take(CtWorker *w, PodMap *from)
{
        size_t moved;

        pthread_mutex_lock(&w->lock);
        moved = move(w, from, CT_WORKER_QUEUE_MAX);
        if (moved > 0)
                pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        return moved;
}

size_t ct_worker_pending(CtWorker *w)
{
        size_t n;

        pthread_mutex_lock(&w->lock);
        n = w->queue.n + w->busy;
        pthread_mutex_unlock(&w->lock);
        return n;
}

size_t ct_worker_finish(CtWorker *w, PodMap *from, uint64_t timeout_usec)
{
        size_t left;

        pthread_mutex_lock(&w->lock);
        (void)move(w, from, SIZE_MAX);
        pthread_mutex_unlock(&w->lock);
        stop_thread(w, false, timeout_usec);
        /* The thread is gone: no lock needed any more. */
        left = w->queue.n + w->busy + from->n;
        return left;
}
