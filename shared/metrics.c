/* SPDX-License-Identifier: Apache-2.0 */
#include "metrics.h"

#include <float.h>
#include <string.h>

#define LOOP_LAG_PERIOD_USEC (1 * USEC_PER_SEC)

const double metrics_seconds_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10};
const size_t metrics_seconds_n_bounds = ELEMENTSOF(metrics_seconds_bounds);

_Static_assert(ELEMENTSOF(metrics_seconds_bounds) == 13, "METRIC_HISTOGRAM_SECONDS names 13 bounds");

void metric_histogram_observe(MetricHistogram *h, double value)
{
        size_t i = 0;

        while (i < h->n_bounds && value > h->bounds[i])
                i++;
        if (i < METRICS_MAX_BUCKETS)
                h->counts[i]++;
        h->count++;
        h->sum += value;
}

void metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void print_value(FILE *f, double v)
{
        if (v > DBL_MAX || v < -DBL_MAX)
                fputs(v > 0 ? "+Inf" : "-Inf", f);
        else if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v)
                fprintf(f, "%lld", (long long)v);
        else
                fprintf(f, "%.9g", v);
}

void metrics_sample(FILE *f, const char *name, const char *labels, double value)
{
        if (labels && *labels)
                fprintf(f, "%s{%s} ", name, labels);
        else
                fprintf(f, "%s ", name);
        print_value(f, value);
        fputc('\n', f);
}

void metrics_histogram(FILE *f, const char *name, const char *labels, const MetricHistogram *h)
{
        const char *sep = labels && *labels ? "," : "";
        uint64_t cumulative = 0;

        for (size_t i = 0; i <= h->n_bounds && i < METRICS_MAX_BUCKETS; i++) {
                cumulative += h->counts[i];
                fprintf(f, "%s_bucket{%s%sle=\"", name, labels ? labels : "", sep);
                if (i < h->n_bounds)
                        print_value(f, h->bounds[i]);
                else
                        fputs("+Inf", f);
                fprintf(f, "\"} %llu\n", (unsigned long long)cumulative);
        }
        fprintf(f, "%s_sum%s%s%s ", name, *sep ? "{" : "", *sep ? labels : "", *sep ? "}" : "");
        print_value(f, h->sum);
        fprintf(f, "\n%s_count%s%s%s %llu\n", name, *sep ? "{" : "", *sep ? labels : "", *sep ? "}" : "",
                (unsigned long long)h->count);
}

const char *metrics_label_escape(const char *s, char *buf, size_t size)
{
        size_t o = 0;

        for (; s && *s && o + 3 < size; s++) {
                if (*s == '\\' || *s == '"') {
                        buf[o++] = '\\';
                        buf[o++] = *s;
                } else if (*s == '\n') {
                        buf[o++] = '\\';
                        buf[o++] = 'n';
                } else
                        buf[o++] = *s;
        }
        buf[o] = '\0';
        return buf;
}

static int on_loop_lag(sd_event_source *s, uint64_t usec, void *userdata)
{
        LoopLag *l = userdata;
        uint64_t now = 0;

        (void)usec;
        (void)sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now);
        l->last_seconds = now > l->due_usec ? (double)(now - l->due_usec) / USEC_PER_SEC : 0;
        metric_histogram_observe(&l->histogram, l->last_seconds);
        if (l->last_seconds > l->max_seconds)
                l->max_seconds = l->last_seconds;
        l->due_usec = now + LOOP_LAG_PERIOD_USEC;
        (void)sd_event_source_set_time(s, l->due_usec);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

int loop_lag_start(sd_event *e, LoopLag *l)
{
        uint64_t now = 0;

        l->histogram = (MetricHistogram)METRIC_HISTOGRAM_SECONDS;
        (void)sd_event_now(e, CLOCK_MONOTONIC, &now);
        l->due_usec = now + LOOP_LAG_PERIOD_USEC;
        /* Accuracy 1 ms: what is measured is the loop being busy, not
         * sd-event's coalescing. Lowest priority: it waits behind real work. */
        if (sd_event_add_time(e, &l->source, CLOCK_MONOTONIC, l->due_usec, USEC_PER_MSEC, on_loop_lag, l) <
            0)
                return -ENOMEM;
        (void)sd_event_source_set_priority(l->source, SD_EVENT_PRIORITY_IDLE);
        return 0;
}

void loop_lag_stop(LoopLag *l)
{
        l->source = sd_event_source_disable_unref(l->source);
}

void loop_lag_write(FILE *f, const LoopLag *l, const char *daemon)
{
        char labels[64];

        (void)snprintf(labels, sizeof(labels), "daemon=\"%s\"", daemon);
        metrics_family(f, "kvegress_event_loop_lag_seconds", "histogram",
                       "How late a 1 s timer of the daemon's event loop fires (the loop was busy)");
        metrics_histogram(f, "kvegress_event_loop_lag_seconds", labels, &l->histogram);
        metrics_family(f, "kvegress_event_loop_lag_max_seconds", "gauge",
                       "The latest the daemon's 1 s timer has fired since start");
        fprintf(f, "kvegress_event_loop_lag_max_seconds{%s} ", labels);
        print_value(f, l->max_seconds);
        fputc('\n', f);
}
