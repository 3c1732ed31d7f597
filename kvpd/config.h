/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* kvpd's configuration: environment variables only (the unit reads
 * /etc/kvegress/kvegress.env), with kube-vip's names where kube-vip has one,
 * so an existing kube-vip manifest's env block carries over. Every error
 * names the variable. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "egress-policy.h"
#include "netaddr.h"

typedef struct Config {
        char *node_name;         /* vip_nodename, else the hostname, lowercased */
        char *service_interface; /* vip_servicesinterface, else vip_interface, else "auto" */
        char *namespace;         /* svc_namespace: NULL = every namespace */

        /* egress_podcidr / egress_servicecidr: when set, they replace
         * detection for the families they name. */
        IpPrefix *pod_cidrs;
        size_t n_pod_cidrs;
        IpPrefix *service_cidrs;
        size_t n_service_cidrs;

        /* KUBERNETES_SERVICE_HOST (and the kubeconfig's server, added by the
         * manager), denied when egress-detect-api-server is "true". */
        IpAddr *api_servers;
        size_t n_api_servers, cap_api_servers;

        char *kubeconfig; /* KVEGRESS_KUBECONFIG, else $CREDENTIALS_DIRECTORY/kubeconfig, else auto */
        char *kube_context;
        char *kvnetd_socket;
        char *kvelectd_socket;
        char *kvpd_socket; /* kvctl's read-only socket when not socket-activated; NULL: none */

        uint64_t grant_margin_usec; /* subtracted from kvelectd's deadline before it goes to kvnetd */
        uint64_t debounce_usec;     /* how long changes to one service are gathered */
        uint64_t stop_timeout_usec; /* bound on the clean-up at SIGTERM */
        uint64_t status_retry_usec; /* retry period of failed status writes */

        bool egress_clean; /* accepted; stale state is always removed after the first sync */

        /* lb_class_name / lb_class_only / lb_class_legacy_handling */
        LbClassFilter lb_class;
        char *lb_class_name;
} Config;

#define CONFIG_GRANT_MARGIN_DEFAULT_USEC (500 * USEC_PER_MSEC)
#define CONFIG_DEBOUNCE_DEFAULT_USEC (5 * USEC_PER_MSEC)
#define CONFIG_STOP_TIMEOUT_DEFAULT_USEC (5 * USEC_PER_SEC)
#define CONFIG_STATUS_RETRY_DEFAULT_USEC (1 * USEC_PER_SEC)

/* Reads the environment. Returns a negative errno after logging
 * "VARIABLE=value: reason". */
int config_load(Config *ret);
void config_done(Config *c);
/* The table of variables, for --help. */
void config_help(FILE *f);
