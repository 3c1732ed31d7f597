/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The API client's counters as Prometheus families (shared/metrics.h), the
 * same in kvpd's and kvelectd's GetMetrics, labelled daemon="NAME". */

#include <stdio.h>

#include "kube-client.h"

/* c NULL (no client set up yet): every counter is 0. */
void kube_client_write_metrics(FILE *f, const KubeClient *c, const char *daemon);
