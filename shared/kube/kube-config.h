/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Where the API is and how to authenticate: a kubeconfig file (parsed with
 * libyaml) or the in-cluster service-account files. */

#include <stdbool.h>

#include "macros.h"

typedef struct KubeConfig {
        char *server; /* "https://host:port" */
        char *tls_server_name;
        bool insecure_skip_tls_verify;
        /* CA: a PEM file path or in-memory PEM (from *-data). */
        char *ca_file;
        char *ca_pem;
        /* Client certificate: paths (re-read when they change on disk, for
         * the kubelet's rotating kubelet-client-current.pem) or PEM data. */
        char *client_cert_file;
        char *client_key_file;
        char *client_cert_pem;
        char *client_key_pem;
        /* Bearer token: literal, or a file re-read on 401 and periodically. */
        char *token;
        char *token_file;
        char *namespace; /* the context's namespace, or NULL */
        char *context_name;
        char *source; /* the file it came from, for messages */
        /* Added: the cluster's proxy-url (http:// or socks5://), or NULL. */
        char *proxy_url;
} KubeConfig;

/* Loads path; context NULL means current-context. Parsing only: files named
 * by paths are read later, by kube_client_new() and on every reload.
 * insecure_skip_tls_verify is returned as a flag; warning about it is the
 * caller's job. exec plugins, auth-providers and basic auth are refused with
 * -EOPNOTSUPP and a message saying so. Relative paths resolve
 * against the file's directory. On failure returns a negative errno and sets
 * *ret_error to a message naming the file and the field (caller frees). */
int kube_config_load(const char *path, const char *context, KubeConfig **ret, char **ret_error);

/* In-cluster: KUBERNETES_SERVICE_HOST/_PORT and the service-account files
 * under root (normally "/" -> /var/run/secrets/kubernetes.io/serviceaccount). */
int kube_config_in_cluster(const char *root, KubeConfig **ret, char **ret_error);

/* kube-vip's search order: explicit path, then /etc/kubernetes/admin.conf,
 * then ~/.kube/config, then in-cluster. */
int kube_config_auto(const char *explicit_path, const char *context, KubeConfig **ret, char **ret_error);

/* For a kube_client_new() failure, which cannot say which field it was: the
 * file and every field naming what the client parses or reads (server,
 * certificate-authority, tokenFile, client-certificate, client-key), control
 * characters shown as '?'. NULL on allocation failure (caller frees). */
char *kube_config_describe(const KubeConfig *c);

KubeConfig *kube_config_free(KubeConfig *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeConfig *, kube_config_free);
