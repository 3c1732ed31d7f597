/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Resource-owning helpers in the style of systemd: every resource a function
 * acquires is released by the compiler on every exit path, and ownership is
 * handed on explicitly with TAKE_PTR()/TAKE_FD(). */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _pure_ __attribute__((pure))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define STRINGIFY(x) XSTRINGIFY(x)
#define XSTRINGIFY(x) #x

#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL
#define NSEC_PER_USEC 1000ULL

#define TAKE_PTR(p)                                                                                         \
        ({                                                                                                  \
                __typeof__(p) _ptr_ = (p);                                                                  \
                (p) = NULL;                                                                                 \
                _ptr_;                                                                                      \
        })

#define TAKE_FD(fd)                                                                                         \
        ({                                                                                                  \
                int _fd_ = (fd);                                                                            \
                (fd) = -EBADF;                                                                              \
                _fd_;                                                                                       \
        })

/* Defines const char *name(type v): table[v], or NULL when v is outside the
 * table (systemd's DEFINE_STRING_TABLE_LOOKUP_TO_STRING). */
#define DEFINE_STRING_TABLE_TO_STRING(name, type, table)                                                    \
        const char *name(type v)                                                                            \
        {                                                                                                   \
                return (size_t)v < ELEMENTSOF(table) ? table[v] : NULL;                                     \
        }

/* Defines func##p(type *p) that calls func(*p) when *p is not NULL, for use
 * with _cleanup_. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                             \
        static inline void func##p(type *p)                                                                 \
        {                                                                                                   \
                if (*p)                                                                                     \
                        func(*p);                                                                           \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                (void)close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void strv_free(char **l)
{
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static inline bool isempty(const char *s)
{
        return !s || !*s;
}

#define streq(a, b) (strcmp((a), (b)) == 0)

/* Frees *p and sets it to NULL; returns NULL so it can be used in expressions. */
#define mfree(p)                                                                                            \
        ({                                                                                                  \
                free(p);                                                                                    \
                (__typeof__(p))NULL;                                                                        \
        })
