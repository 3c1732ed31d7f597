/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Counters, gauges and histograms a daemon keeps for `kvctl metrics`, and
 * their Prometheus text exposition (format 0.0.4). Each daemon renders its
 * own families into a string on a read-only bus call (GetMetrics); kvctl
 * concatenates them and serves them over HTTP from a process that holds no
 * capability and no API credential. Plain structs in the daemon's Manager:
 * no globals, no locking (one event loop). */

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-event.h>

#include "macros.h"

#define METRICS_MAX_BUCKETS 16

typedef struct MetricHistogram {
        const double *bounds; /* upper bounds, ascending; +Inf is implied */
        size_t n_bounds;
        uint64_t counts[METRICS_MAX_BUCKETS]; /* per bucket, not cumulative */
        uint64_t count;
        double sum;
} MetricHistogram;

/* Seconds, from 1 ms to 30 s: latencies of transactions, reconciles,
 * failovers. */
extern const double metrics_seconds_bounds[];
extern const size_t metrics_seconds_n_bounds;
#define METRIC_HISTOGRAM_SECONDS                                                                            \
        {                                                                                                   \
                .bounds = metrics_seconds_bounds, .n_bounds = 13                                            \
        }

void metric_histogram_observe(MetricHistogram *h, double value);

/* "# HELP" and "# TYPE" of a family: once, before its samples. */
void metrics_family(FILE *f, const char *name, const char *type, const char *help);
/* name{labels} value; labels is "" or 'a="x",b="y"' (values escaped by the
 * caller with metrics_label_escape when they come from outside). */
void metrics_sample(FILE *f, const char *name, const char *labels, double value);
void metrics_histogram(FILE *f, const char *name, const char *labels, const MetricHistogram *h);
/* Escapes \, " and newline for a label value into buf. */
const char *metrics_label_escape(const char *s, char *buf, size_t size);

/* Event-loop lag: a timer every second that measures how late it fires,
 * kept as a histogram and the last value. */
typedef struct LoopLag {
        sd_event_source *source;
        uint64_t due_usec;
        double last_seconds;
        double max_seconds; /* the worst since start */
        MetricHistogram histogram;
} LoopLag;
int loop_lag_start(sd_event *e, LoopLag *l);
void loop_lag_stop(LoopLag *l);
void loop_lag_write(FILE *f, const LoopLag *l, const char *daemon);
