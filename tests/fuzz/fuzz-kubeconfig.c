/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kubeconfig loading (shared/kube/kube-config.c) and the YAML
 * reader under it (kube-yaml.c), plus the base64 decoder for *-data fields.
 *
 * Input: byte 0 picks the mode: 0-1 the whole loader with current-context
 * (the file is a memfd, read through /proc/self/fd, since the loader only
 * takes a path), 2 the loader with the context named on the first line,
 * 3 kube_yaml_parse() alone, 4 kube_base64_decode(). Invariants: a loaded
 * config has an http(s) server without a trailing slash, never a CA together
 * with insecure-skip-tls-verify, and a client certificate only with a key;
 * every failure but -ENOMEM comes with a message naming the file. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "kube-config.h"
#include "kube-internal.h"

static int memfd = -1;
static char memfd_path[64];

static int write_input(const uint8_t *data, size_t size)
{
        if (memfd < 0) {
                memfd = memfd_create("fuzz-kubeconfig", MFD_CLOEXEC);
                if (memfd < 0)
                        return -errno;
                snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
        }
        if (ftruncate(memfd, 0) < 0)
                return -errno;
        if (size > 0 && pwrite(memfd, data, size, 0) != (ssize_t)size)
                return -EIO;
        return 0;
}

static void check_config(const KubeConfig *c)
{
        size_t n;

        fuzz_assert(c->server);
        fuzz_assert(strncmp(c->server, "https://", 8) == 0 || strncmp(c->server, "http://", 7) == 0);
        n = strlen(c->server);
        fuzz_assert(n > 0 && c->server[n - 1] != '/');
        fuzz_assert(!(c->insecure_skip_tls_verify && (c->ca_file || c->ca_pem)));
        fuzz_assert(!!(c->client_cert_file || c->client_cert_pem) ==
                    !!(c->client_key_file || c->client_key_pem));
        /* *-data beats the path; a path given is made absolute. */
        fuzz_assert(!(c->ca_file && c->ca_pem));
        fuzz_assert(!c->ca_file || c->ca_file[0] == '/');
        fuzz_assert(!c->token_file || c->token_file[0] == '/');
        fuzz_assert(!c->client_cert_file || c->client_cert_file[0] == '/');
        fuzz_assert(!c->client_key_file || c->client_key_file[0] == '/');
        fuzz_assert(c->context_name && c->source && streq(c->source, memfd_path));
}

static void load(const uint8_t *data, size_t size, const char *context)
{
        _cleanup_(kube_config_freep) KubeConfig *c = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        if (write_input(data, size) < 0)
                return;
        r = kube_config_load(memfd_path, context, &c, &error);
        if (r < 0) {
                fuzz_assert(!c);
                if (r != -ENOMEM) {
                        fuzz_assert(error);
                        fuzz_assert(strncmp(error, memfd_path, strlen(memfd_path)) == 0);
                }
                return;
        }
        fuzz_assert(r == 0 && c && !error);
        check_config(c);
        if (context)
                fuzz_assert(streq(c->context_name, context));
        /* The copy the client keeps must be a faithful one. */
        {
                _cleanup_(kube_config_freep) KubeConfig *d = kube_config_dup(c);
                if (d) {
                        fuzz_assert(streq(d->server, c->server));
                        fuzz_assert(streq_ptr(d->token, c->token));
                        fuzz_assert(streq_ptr(d->proxy_url, c->proxy_url));
                        check_config(d);
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 128 * 1024)
                return 0;
        switch (data[0] % 5) {
        case 0:
        case 1:
                load(data + 1, size - 1, NULL);
                break;
        case 2: {
                const uint8_t *nl = memchr(data + 1, '\n', size - 1);
                _cleanup_free_ char *ctx = NULL;
                if (!nl)
                        return 0;
                ctx = fuzz_strdup(data + 1, (size_t)(nl - data - 1));
                if (!ctx || strlen(ctx) == 0)
                        return 0;
                load(nl + 1, size - (size_t)(nl + 1 - data), ctx);
                break;
        }
        case 3: {
                _cleanup_free_ char *error = NULL;
                json_t *root = NULL;
                int r = kube_yaml_parse((const char *)data + 1, size - 1, &root, &error);
                if (r < 0) {
                        fuzz_assert(!root);
                        fuzz_assert(r == -ENOMEM || error);
                } else {
                        fuzz_assert(root);
                        /* The tree is well-formed: it serialises. */
                        char *dump = json_dumps(root, JSON_ENCODE_ANY | JSON_COMPACT);
                        fuzz_escape(dump);
                        free(dump);
                        json_decref(root);
                }
                break;
        }
        default: {
                _cleanup_free_ char *in = fuzz_strdup(data + 1, size - 1), *out = NULL;
                size_t n = 0;
                if (in && kube_base64_decode(in, &out, &n) == 0) {
                        fuzz_assert(out);
                        fuzz_assert(n <= strlen(in) / 4 * 3);
                        fuzz_escape(out);
                }
        }
        }
        return 0;
}
