/* SPDX-License-Identifier: Apache-2.0 */
#include "kube-diagnose.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#include "log.h"
#include "macros.h"

static const char *source_of(const KubeConfig *cfg)
{
        return cfg && cfg->source ? cfg->source : "the in-cluster service account";
}

/* Which credential the client sent, as the kubeconfig names it. */
static void credential_field(const KubeConfig *cfg, char *buf, size_t n)
{
        if (cfg->token_file)
                snprintf(buf, n, "its tokenFile %s", cfg->token_file);
        else if (cfg->token)
                snprintf(buf, n, "its token");
        else if (cfg->client_cert_file)
                snprintf(buf, n, "its client-certificate %s", cfg->client_cert_file);
        else if (cfg->client_cert_pem)
                snprintf(buf, n, "its client-certificate-data");
        else
                snprintf(buf, n, "no credentials at all (the user has no token or client certificate)");
}

static void ca_field(const KubeConfig *cfg, char *buf, size_t n)
{
        if (cfg->ca_file)
                snprintf(buf, n, "certificate-authority %s", cfg->ca_file);
        else if (cfg->ca_pem)
                snprintf(buf, n, "certificate-authority-data");
        else
                snprintf(buf, n, "certificate-authority (not set: the system's CAs were used)");
}

/* The "message" of a Kubernetes Status object, or "". */
static void status_message(const char *body, size_t size, char *buf, size_t n)
{
        json_t *j, *msg;

        buf[0] = '\0';
        if (!body || size == 0)
                return;
        j = json_loadb(body, size, 0, NULL);
        msg = json_is_object(j) ? json_object_get(j, "message") : NULL;
        if (json_is_string(msg))
                snprintf(buf, n, ": %s", json_string_value(msg));
        json_decref(j);
}

KubeApiProblem kube_diagnose_tls_text(const char *text)
{
        /* OpenSSL's wording, as curl passes it on: an alert the server sent
         * is about our certificate; a failed verification is about its. */
        static const char *const client[] = {"alert certificate expired",
                                             "alert bad certificate",
                                             "alert unknown ca",
                                             "alert certificate required",
                                             "alert certificate revoked",
                                             "alert certificate unknown",
                                             "alert unsupported certificate",
                                             NULL};
        static const char *const server[] = {"certificate verify failed",
                                             "unable to get local issuer",
                                             "self-signed certificate",
                                             "self signed certificate",
                                             "certificate has expired",
                                             "certificate is not yet valid",
                                             "SSL certificate problem",
                                             "does not match target host name",
                                             "no alternative certificate subject name",
                                             NULL};

        if (!text || !text[0])
                return KUBE_API_OK;
        for (size_t i = 0; client[i]; i++)
                if (strstr(text, client[i]))
                        return KUBE_API_TLS_CLIENT;
        for (size_t i = 0; server[i]; i++)
                if (strstr(text, server[i]))
                        return KUBE_API_TLS_SERVER;
        return KUBE_API_OK;
}

void kube_diagnose_result(KubeDiagnosis *d, const KubeConfig *cfg, const char *what, int error, long status,
                          const char *body, size_t body_size, const char *tls_error)
{
        const char *server = cfg && cfg->server ? cfg->server : "(unknown)";
        KubeApiProblem p = KUBE_API_OK;
        char field[512], msg[512];

        if (error < 0)
                p = kube_diagnose_tls_text(tls_error);
        else if (status == 401)
                p = KUBE_API_UNAUTHORIZED;
        else if (status == 403)
                p = KUBE_API_FORBIDDEN;
        else if (status < 200 || status >= 300) /* 404, 409, 410, 5xx: not about credentials */
                return;
        if (error < 0 && p == KUBE_API_OK)
                return; /* unreachable, reset, timed out: said elsewhere, and not a kubeconfig problem */
        if (p == d->problem)
                return;
        if (p == KUBE_API_OK) {
                log_notice("kube: API %s accepts the credentials from %s again (%s)", server, source_of(cfg),
                           what);
                d->problem = p;
                return;
        }
        d->problem = p;
        d->reported++;
        switch (p) {
        case KUBE_API_UNAUTHORIZED:
                credential_field(cfg, field, sizeof(field));
                log_warning(
                        "kube: API %s refused the credentials from %s (HTTP 401 Unauthorized for %s): check "
                        "%s; retrying",
                        server, source_of(cfg), what, field);
                break;
        case KUBE_API_FORBIDDEN:
                status_message(body, body_size, msg, sizeof(msg));
                log_warning(
                        "kube: API %s forbids the user of %s %s (HTTP 403 Forbidden%s): the user lacks RBAC "
                        "rights (apply the shipped rbac.yaml); retrying",
                        server, source_of(cfg), what, msg);
                break;
        case KUBE_API_TLS_SERVER:
                ca_field(cfg, field, sizeof(field));
                log_warning(
                        "kube: TLS with API %s failed for %s: %s: the server's certificate is not trusted; "
                        "check %s in %s; retrying",
                        server, what, tls_error, field, source_of(cfg));
                break;
        case KUBE_API_TLS_CLIENT:
                credential_field(cfg, field, sizeof(field));
                log_warning("kube: TLS with API %s failed for %s: %s: the server refused the client "
                            "certificate; "
                            "check %s in %s; retrying",
                            server, what, tls_error, field, source_of(cfg));
                break;
        default:
                break;
        }
}

bool kube_diagnose_client_cert(const char *pem, const char *source, const char *field)
{
        BIO *bio;
        X509 *x;
        bool bad = false;

        if (!pem)
                return false;
        bio = BIO_new_mem_buf(pem, -1);
        if (!bio)
                return false;
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        if (!x)
                return false; /* not ours to judge: the TLS layer says what is wrong with it */
        if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
                log_warning(
                        "kube: the client certificate (%s in %s) has expired: the API server will refuse it",
                        field, source ? source : "the kubeconfig");
                bad = true;
        } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
                log_warning(
                        "kube: the client certificate (%s in %s) is not valid yet: check the node's clock",
                        field, source ? source : "the kubeconfig");
                bad = true;
        }
        X509_free(x);
        return bad;
}
