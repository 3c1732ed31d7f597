/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers of libkvkube: buffers, files, base64, backoff. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "kube-internal.h"

int kube_buf_reserve(KubeBuf *b, size_t extra)
{
        size_t want;
        char *p;

        if (extra > SIZE_MAX / 2 - b->len)
                return -ENOMEM;
        want = b->len + extra + 1;
        if (want <= b->cap)
                return 0;
        want = MAX(want, MAX(b->cap * 2, (size_t)256));
        p = realloc(b->data, want);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = want;
        return 0;
}

int kube_buf_append(KubeBuf *b, const void *p, size_t n)
{
        int r = kube_buf_reserve(b, n);

        if (r < 0)
                return r;
        if (n > 0)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

int kube_buf_printf(KubeBuf *b, const char *fmt, ...)
{
        va_list ap;
        int n, r;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        r = kube_buf_reserve(b, (size_t)n);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        (void)vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
}

void kube_buf_consume(KubeBuf *b, size_t n)
{
        if (n >= b->len) {
                b->len = 0;
                if (b->data)
                        b->data[0] = '\0';
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = '\0';
}

int kube_buf_steal(KubeBuf *b, char **ret)
{
        if (!b->data) {
                char *e = strdup("");
                if (!e)
                        return -ENOMEM;
                *ret = e;
                return 0;
        }
        *ret = TAKE_PTR(b->data);
        b->len = b->cap = 0;
        return 0;
}

void kube_buf_done(KubeBuf *b)
{
        b->data = mfree(b->data);
        b->len = b->cap = 0;
}

int kube_read_file(const char *path, size_t max, char **ret, size_t *ret_size)
{
        _cleanup_(kube_buf_done) KubeBuf b = {};
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t n;

                r = kube_buf_reserve(&b, 4096);
                if (r < 0)
                        return r;
                n = read(fd, b.data + b.len, b.cap - b.len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                b.len += (size_t)n;
                b.data[b.len] = '\0';
                if (b.len > max)
                        return -EFBIG;
        }
        if (ret_size)
                *ret_size = b.len;
        return kube_buf_steal(&b, ret);
}

int kube_base64_decode(const char *in, char **ret, size_t *ret_size)
{
        _cleanup_free_ char *clean = NULL, *out = NULL;
        size_t n = 0, len;
        int m;

        /* EVP_DecodeBlock wants one unbroken block: drop whitespace first, as
         * Go's base64 decoder ignores \r and \n. */
        clean = malloc(strlen(in) + 1);
        if (!clean)
                return -ENOMEM;
        for (const char *p = in; *p; p++)
                if (!strchr(" \t\r\n", *p))
                        clean[n++] = *p;
        clean[n] = '\0';
        if (n % 4 != 0)
                return -EINVAL;
        out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        m = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)clean, (int)n);
        if (m < 0)
                return -EINVAL;
        len = (size_t)m;
        /* EVP_DecodeBlock counts the padding as zero bytes. */
        if (n >= 1 && clean[n - 1] == '=')
                len--;
        if (n >= 2 && clean[n - 2] == '=')
                len--;
        out[len] = '\0';
        if (ret_size)
                *ret_size = len;
        *ret = TAKE_PTR(out);
        return 0;
}

static uint64_t random_u64(void)
{
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = (uint64_t)random() << 32 ^ (uint64_t)random();
        return v;
}

uint64_t kube_random_range(uint64_t min, uint64_t max)
{
        if (max <= min)
                return min;
        return min + random_u64() % (max - min);
}

uint64_t kube_backoff_next(KubeBackoff *b)
{
        uint64_t d;

        if (b->current_usec == 0)
                b->current_usec = b->initial_usec;
        else
                b->current_usec = MIN(b->current_usec * 2, b->max_usec);
        d = b->current_usec;
        /* Full jitter upwards (client-go's jitter factor 1.0), capped. */
        return MIN(kube_random_range(d, d * 2), MAX(b->max_usec, b->initial_usec));
}

void kube_backoff_reset(KubeBackoff *b)
{
        b->current_usec = 0;
}

bool kube_env_range(const char *name, uint64_t *ret_min, uint64_t *ret_max)
{
        const char *v = getenv(name);
        unsigned long long a, b;
        char c;

        if (isempty(v))
                return false;
        if (sscanf(v, "%llu,%llu%c", &a, &b, &c) == 2 && a <= b) {
                *ret_min = a;
                *ret_max = b;
                return true;
        }
        if (sscanf(v, "%llu%c", &a, &c) == 1) {
                *ret_min = *ret_max = a;
                return true;
        }
        return false;
}
