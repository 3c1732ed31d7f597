/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What an operator must hear about the API connection, said once when it
 * starts and once when it ends: the API server refusing these credentials
 * (401), refusing this user a request (403), or TLS failing (an untrusted
 * server certificate, a client certificate the server refuses). Each
 * request's own outcome stays at debug level; this names the kubeconfig and
 * the field to look at. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube-config.h"

typedef enum KubeApiProblem {
        KUBE_API_OK,
        KUBE_API_UNAUTHORIZED, /* 401 */
        KUBE_API_FORBIDDEN,    /* 403 */
        KUBE_API_TLS_SERVER,   /* the server's certificate is not trusted */
        KUBE_API_TLS_CLIENT,   /* the server refused our client certificate */
        _KUBE_API_PROBLEM_MAX,
} KubeApiProblem;

typedef struct KubeDiagnosis {
        KubeApiProblem problem;
        uint64_t reported; /* problems said so far (for tests and metrics) */
} KubeDiagnosis;

/* One finished request: error is 0 or a negative errno, status the HTTP
 * status, body the answer (a Status object for 401/403), tls_error curl's
 * text for a failed handshake (or NULL). what is "GET /api/v1/services". */
void kube_diagnose_result(KubeDiagnosis *d, const KubeConfig *cfg, const char *what, int error, long status,
                          const char *body, size_t body_size, const char *tls_error);

/* Classifies curl's text for a failed TLS handshake; KUBE_API_OK if it does
 * not read like one. Pure, for tests. */
KubeApiProblem kube_diagnose_tls_text(const char *text);

/* Warns if the client certificate (PEM) has expired or is not valid yet,
 * naming where it came from. Returns true if it is outside its validity. */
bool kube_diagnose_client_cert(const char *pem, const char *source, const char *field);
