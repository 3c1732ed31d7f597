/* SPDX-License-Identifier: Apache-2.0 */
/* kubeconfig and in-cluster configuration, following client-go's clientcmd
 * rules: *-data beats paths, relative paths resolve against the kubeconfig's
 * own directory, a CA together with insecure-skip-tls-verify is an error.
 * Every error names the file and the field, since the person reading it is
 * an operator looking at that file. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kube-config.h"
#include "kube-internal.h"

#define KUBECONFIG_SIZE_MAX (4U * 1024U * 1024U)
#define SERVICEACCOUNT_DIR "var/run/secrets/kubernetes.io/serviceaccount"

static void describe_field(FILE *f, const char *name, const char *value)
{
        if (!value)
                return;
        fprintf(f, ", %s \"", name);
        for (const char *p = value; *p && p - value < 256; p++)
                fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, f);
        fputc('"', f);
}

char *kube_config_describe(const KubeConfig *c)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        fprintf(f, "%s", c->source ? c->source : "kubeconfig");
        describe_field(f, "server", c->server);
        describe_field(f, "certificate-authority", c->ca_file);
        describe_field(f, "tokenFile", c->token_file);
        describe_field(f, "client-certificate", c->client_cert_file);
        describe_field(f, "client-key", c->client_key_file);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

KubeConfig *kube_config_free(KubeConfig *c)
{
        if (!c)
                return NULL;
        free(c->server);
        free(c->tls_server_name);
        free(c->ca_file);
        free(c->ca_pem);
        free(c->client_cert_file);
        free(c->client_key_file);
        free(c->client_cert_pem);
        free(c->client_key_pem);
        free(c->token);
        free(c->token_file);
        free(c->namespace);
        free(c->context_name);
        free(c->source);
        free(c->proxy_url);
        return mfree(c);
}

static int dup_str(const char *s, char **ret)
{
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

KubeConfig *kube_config_dup(const KubeConfig *c)
{
        _cleanup_(kube_config_freep) KubeConfig *d = NULL;

        d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->insecure_skip_tls_verify = c->insecure_skip_tls_verify;
        if (dup_str(c->server, &d->server) < 0 || dup_str(c->tls_server_name, &d->tls_server_name) < 0 ||
            dup_str(c->ca_file, &d->ca_file) < 0 || dup_str(c->ca_pem, &d->ca_pem) < 0 ||
            dup_str(c->client_cert_file, &d->client_cert_file) < 0 ||
            dup_str(c->client_key_file, &d->client_key_file) < 0 ||
            dup_str(c->client_cert_pem, &d->client_cert_pem) < 0 ||
            dup_str(c->client_key_pem, &d->client_key_pem) < 0 || dup_str(c->token, &d->token) < 0 ||
            dup_str(c->token_file, &d->token_file) < 0 || dup_str(c->namespace, &d->namespace) < 0 ||
            dup_str(c->context_name, &d->context_name) < 0 || dup_str(c->source, &d->source) < 0 ||
            dup_str(c->proxy_url, &d->proxy_url) < 0)
                return NULL;
        return TAKE_PTR(d);
}

typedef struct Loader {
        const char *source;
        char *dir; /* absolute directory of the file, for relative paths */
        char **ret_error;
} Loader;

_printf_(4, 5) static int fail(Loader *l, int error, const char *field, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int n;

        if (!l->ret_error)
                return error;
        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        free(*l->ret_error);
        *l->ret_error = NULL;
        if (field)
                n = asprintf(l->ret_error, "%s: %s: %s", l->source, field, msg);
        else
                n = asprintf(l->ret_error, "%s: %s", l->source, msg);
        if (n < 0)
                *l->ret_error = NULL;
        return error;
}

/* Optional string field; absent and null give NULL. */
static int get_str(Loader *l, json_t *obj, const char *key, const char *path, const char **ret)
{
        json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return fail(l, -EINVAL, path, "expected a string");
        *ret = json_string_value(v);
        if (**ret == '\0')
                *ret = NULL;
        return 0;
}

static int get_bool(Loader *l, json_t *obj, const char *key, const char *path, bool *ret)
{
        json_t *v = json_object_get(obj, key);

        *ret = false;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_boolean(v))
                return fail(l, -EINVAL, path, "expected true or false");
        *ret = json_is_true(v);
        return 0;
}

/* Finds {name: NAME, <what>: {...}} in the list under key. */
static int find_named(Loader *l, json_t *root, const char *list, const char *what, const char *name,
                      json_t **ret)
{
        json_t *a = json_object_get(root, list), *e;
        char path[512];
        size_t i;

        if (!a || json_is_null(a))
                return fail(l, -ENOENT, list, "no %s named \"%s\" (the list is empty)", what, name);
        if (!json_is_array(a))
                return fail(l, -EINVAL, list, "expected a list");
        json_array_foreach(a, i, e)
        {
                json_t *n = NULL, *body = NULL;

                (void)snprintf(path, sizeof(path), "%s[%zu]", list, i);
                if (!json_is_object(e))
                        return fail(l, -EINVAL, path, "expected a mapping");
                n = json_object_get(e, "name");
                if (!json_is_string(n))
                        return fail(l, -EINVAL, path, "name: expected a string");
                if (!streq(json_string_value(n), name))
                        continue;
                body = json_object_get(e, what);
                if (body && !json_is_object(body) && !json_is_null(body)) {
                        (void)snprintf(path, sizeof(path), "%s[\"%s\"].%s", list, name, what);
                        return fail(l, -EINVAL, path, "expected a mapping");
                }
                *ret = json_is_object(body) ? body : NULL;
                return 0;
        }
        return fail(l, -ENOENT, list, "no %s named \"%s\"", what, name);
}

static int resolve_path(Loader *l, const char *p, char **ret)
{
        int n;

        if (p[0] == '/')
                return dup_str(p, ret);
        if (p[0] == '~' && p[1] == '/' && getenv("HOME"))
                n = asprintf(ret, "%s/%s", getenv("HOME"), p + 2);
        else
                n = asprintf(ret, "%s/%s", l->dir, p);
        return n < 0 ? -ENOMEM : 0;
}

static int decode_data(Loader *l, const char *b64, const char *path, char **ret)
{
        size_t n;
        int r;

        r = kube_base64_decode(b64, ret, &n);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(l, -EINVAL, path, "not valid base64");
        if (strlen(*ret) != n) {
                *ret = mfree(*ret);
                return fail(l, -EINVAL, path, "decodes to binary data, expected PEM");
        }
        return 0;
}

static int load_cluster(Loader *l, json_t *root, const char *name, KubeConfig *c)
{
        const char *server, *ca, *ca_data, *sni, *proxy;
        char p[600];
        json_t *cl = NULL;
        size_t n;
        int r;

        r = find_named(l, root, "clusters", "cluster", name, &cl);
        if (r < 0)
                return r;
#define FIELD(k) ((void)snprintf(p, sizeof(p), "clusters[\"%s\"].cluster.%s", name, k), p)
        if (!cl)
                return fail(l, -EINVAL, FIELD("server"), "missing");
        if ((r = get_str(l, cl, "server", FIELD("server"), &server)) < 0 ||
            (r = get_str(l, cl, "certificate-authority", FIELD("certificate-authority"), &ca)) < 0 ||
            (r = get_str(l, cl, "certificate-authority-data", FIELD("certificate-authority-data"),
                         &ca_data)) < 0 ||
            (r = get_str(l, cl, "tls-server-name", FIELD("tls-server-name"), &sni)) < 0 ||
            (r = get_str(l, cl, "proxy-url", FIELD("proxy-url"), &proxy)) < 0 ||
            (r = get_bool(l, cl, "insecure-skip-tls-verify", FIELD("insecure-skip-tls-verify"),
                          &c->insecure_skip_tls_verify)) < 0)
                return r;
        if (!server)
                return fail(l, -EINVAL, FIELD("server"), "missing");
        if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
                return fail(l, -EINVAL, FIELD("server"), "\"%s\" is not an http(s):// URL", server);
        r = dup_str(server, &c->server);
        if (r < 0)
                return r;
        n = strlen(c->server);
        while (n > 0 && c->server[n - 1] == '/')
                c->server[--n] = '\0';

        if (ca_data) {
                r = decode_data(l, ca_data, FIELD("certificate-authority-data"), &c->ca_pem);
                if (r < 0)
                        return r;
        } else if (ca) {
                r = resolve_path(l, ca, &c->ca_file);
                if (r < 0)
                        return r;
        }
        if (c->insecure_skip_tls_verify && (ca || ca_data))
                return fail(l, -EINVAL, FIELD("insecure-skip-tls-verify"),
                            "specifying a root certificates file with the insecure flag is not allowed");
        if ((r = dup_str(sni, &c->tls_server_name)) < 0 || (r = dup_str(proxy, &c->proxy_url)) < 0)
                return r;
#undef FIELD
        return 0;
}

static int load_user(Loader *l, json_t *root, const char *name, KubeConfig *c)
{
        const char *token, *token_file, *cert, *cert_data, *key, *key_data, *s;
        char p[600];
        json_t *u = NULL;
        int r;

        r = find_named(l, root, "users", "user", name, &u);
        if (r < 0)
                return r;
        if (!u)
                return 0;
#define FIELD(k) ((void)snprintf(p, sizeof(p), "users[\"%s\"].user.%s", name, k), p)
        if (json_object_get(u, "exec") && !json_is_null(json_object_get(u, "exec")))
                return fail(l, -EOPNOTSUPP, FIELD("exec"),
                            "exec credential plugins are not supported; use a token, tokenFile or client "
                            "certificate");
        if (json_object_get(u, "auth-provider") && !json_is_null(json_object_get(u, "auth-provider")))
                return fail(l, -EOPNOTSUPP, FIELD("auth-provider"), "auth providers are not supported");
        r = get_str(l, u, "username", FIELD("username"), &s);
        if (r < 0)
                return r;
        if (s)
                return fail(l, -EOPNOTSUPP, FIELD("username"), "basic authentication is not supported");

        if ((r = get_str(l, u, "token", FIELD("token"), &token)) < 0 ||
            (r = get_str(l, u, "tokenFile", FIELD("tokenFile"), &token_file)) < 0 ||
            (r = get_str(l, u, "client-certificate", FIELD("client-certificate"), &cert)) < 0 ||
            (r = get_str(l, u, "client-certificate-data", FIELD("client-certificate-data"), &cert_data)) <
                    0 ||
            (r = get_str(l, u, "client-key", FIELD("client-key"), &key)) < 0 ||
            (r = get_str(l, u, "client-key-data", FIELD("client-key-data"), &key_data)) < 0)
                return r;

        if ((r = dup_str(token, &c->token)) < 0)
                return r;
        if (token_file && (r = resolve_path(l, token_file, &c->token_file)) < 0)
                return r;
        if (cert_data)
                r = decode_data(l, cert_data, FIELD("client-certificate-data"), &c->client_cert_pem);
        else if (cert)
                r = resolve_path(l, cert, &c->client_cert_file);
        if (r < 0)
                return r;
        if (key_data)
                r = decode_data(l, key_data, FIELD("client-key-data"), &c->client_key_pem);
        else if (key)
                r = resolve_path(l, key, &c->client_key_file);
        if (r < 0)
                return r;
        if ((cert || cert_data) && !(key || key_data))
                return fail(l, -EINVAL, FIELD("client-key"), "a client certificate needs a client key");
        if ((key || key_data) && !(cert || cert_data))
                return fail(l, -EINVAL, FIELD("client-certificate"),
                            "a client key needs a client certificate");
#undef FIELD
        return 0;
}

int kube_config_load(const char *path, const char *context, KubeConfig **ret, char **ret_error)
{
        _cleanup_(kube_config_freep) KubeConfig *c = NULL;
        _cleanup_free_ char *text = NULL, *abs = NULL, *yerr = NULL;
        const char *ctx_name, *cluster, *user, *ns;
        Loader l = {.source = path, .ret_error = ret_error};
        json_t *root = NULL, *ctx = NULL;
        char p[600], *slash;
        size_t size;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (isempty(path))
                return -EINVAL;

        r = kube_read_file(path, KUBECONFIG_SIZE_MAX, &text, &size);
        if (r < 0)
                return fail(&l, r, NULL, "cannot read: %s", strerror(-r));

        if (path[0] == '/')
                abs = strdup(path);
        else {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (!cwd || asprintf(&abs, "%s/%s", cwd, path) < 0)
                        abs = NULL;
        }
        if (!abs)
                return -ENOMEM;
        slash = strrchr(abs, '/');
        *slash = '\0';
        l.dir = abs[0] ? abs : (char *)"/";

        r = kube_yaml_parse(text, size, &root, &yerr);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(&l, -EINVAL, NULL, "not a kubeconfig: %s", yerr ?: "invalid YAML");
        /* From here on root must be released on every path. */
        c = calloc(1, sizeof(*c));
        if (!c) {
                r = -ENOMEM;
                goto finish;
        }
        if (!json_is_object(root)) {
                r = fail(&l, -EINVAL, NULL, "not a kubeconfig: expected a mapping at the top");
                goto finish;
        }

        ctx_name = context;
        if (!ctx_name) {
                r = get_str(&l, root, "current-context", "current-context", &ctx_name);
                if (r < 0)
                        goto finish;
                if (!ctx_name) {
                        r = fail(&l, -EINVAL, "current-context", "not set and no context was given");
                        goto finish;
                }
        }
        r = find_named(&l, root, "contexts", "context", ctx_name, &ctx);
        if (r < 0)
                goto finish;
#define FIELD(k) ((void)snprintf(p, sizeof(p), "contexts[\"%s\"].context.%s", ctx_name, k), p)
        if (!ctx) {
                r = fail(&l, -EINVAL, FIELD("cluster"), "missing");
                goto finish;
        }
        if ((r = get_str(&l, ctx, "cluster", FIELD("cluster"), &cluster)) < 0 ||
            (r = get_str(&l, ctx, "user", FIELD("user"), &user)) < 0 ||
            (r = get_str(&l, ctx, "namespace", FIELD("namespace"), &ns)) < 0)
                goto finish;
        if (!cluster) {
                r = fail(&l, -EINVAL, FIELD("cluster"), "missing");
                goto finish;
        }
#undef FIELD
        r = load_cluster(&l, root, cluster, c);
        if (r < 0)
                goto finish;
        /* No user means anonymous requests, which client-go allows too. */
        if (user) {
                r = load_user(&l, root, user, c);
                if (r < 0)
                        goto finish;
        }
        if ((r = dup_str(ns, &c->namespace)) < 0 || (r = dup_str(ctx_name, &c->context_name)) < 0 ||
            (r = dup_str(path, &c->source)) < 0)
                goto finish;
        *ret = TAKE_PTR(c);
        r = 0;
finish:
        json_decref(root);
        return r;
}

int kube_config_in_cluster(const char *root, KubeConfig **ret, char **ret_error)
{
        _cleanup_(kube_config_freep) KubeConfig *c = NULL;
        _cleanup_free_ char *dir = NULL, *ns = NULL;
        const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
        Loader l = {.source = "in-cluster configuration", .ret_error = ret_error};
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (isempty(host) || isempty(port))
                return fail(
                        &l, -ENOENT, NULL,
                        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must "
                        "both be set");
        if (asprintf(&dir, "%s/" SERVICEACCOUNT_DIR, streq(root ?: "/", "/") ? "" : root) < 0)
                return -ENOMEM;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0 ||
            asprintf(&c->token_file, "%s/token", dir) < 0 || asprintf(&c->ca_file, "%s/ca.crt", dir) < 0 ||
            asprintf(&c->source, "%s", l.source) < 0)
                return -ENOMEM;
        /* client-go fails when the token cannot be read; so do we, early. */
        if (access(c->token_file, R_OK) < 0) {
                r = -errno;
                return fail(&l, r, c->token_file, "cannot read the service account token: %s", strerror(-r));
        }
        if (access(c->ca_file, R_OK) < 0)
                c->ca_file = mfree(c->ca_file);
        free(dir);
        if (asprintf(&dir, "%s/" SERVICEACCOUNT_DIR "/namespace", streq(root ?: "/", "/") ? "" : root) < 0) {
                dir = NULL;
                return -ENOMEM;
        }
        if (kube_read_file(dir, 4096, &ns, NULL) >= 0) {
                size_t n = strlen(ns);
                while (n > 0 && strchr(" \t\r\n", ns[n - 1]))
                        ns[--n] = '\0';
                if (n > 0)
                        c->namespace = TAKE_PTR(ns);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int kube_config_auto(const char *explicit_path, const char *context, KubeConfig **ret, char **ret_error)
{
        _cleanup_free_ char *home_config = NULL;
        const char *home = getenv("HOME");

        if (!isempty(explicit_path))
                return kube_config_load(explicit_path, context, ret, ret_error);
        if (access("/etc/kubernetes/admin.conf", F_OK) == 0)
                return kube_config_load("/etc/kubernetes/admin.conf", context, ret, ret_error);
        if (!isempty(home)) {
                if (asprintf(&home_config, "%s/.kube/config", home) < 0)
                        return -ENOMEM;
                if (access(home_config, F_OK) == 0)
                        return kube_config_load(home_config, context, ret, ret_error);
        }
        return kube_config_in_cluster("/", ret, ret_error);
}
