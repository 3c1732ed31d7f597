/* SPDX-License-Identifier: Apache-2.0 */
#include "state.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "log.h"
#include "kvnetd-bus.h"
#include "validate.h"

#define STATE_HEADER "kvnetd-state 1"

static char *journal_path(const Config *c)
{
        char *p = NULL;

        return asprintf(&p, "%s/vips.journal", c->state_dir) < 0 ? NULL : p;
}

void state_close(Manager *m)
{
        closep(&m->journal_fd);
        m->journal_fd = -EBADF;
}

int state_append(Manager *m, const char *key, const Vip *v, usec_t deadline)
{
        char line[64 + INET6_ADDRSTRLEN + IFNAMSIZ + KVNETD_MAX_SERVICE_KEY];
        int n;

        if (m->journal_fd < 0) {
                _cleanup_free_ char *path = journal_path(m->config);
                _cleanup_close_ int fd = -EBADF;

                if (!path)
                        return -ENOMEM;
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return -errno;
                if (write(fd, STATE_HEADER "\n", sizeof(STATE_HEADER)) != (ssize_t)sizeof(STATE_HEADER))
                        return -EIO;
                m->journal_fd = TAKE_FD(fd);
        }
        n = snprintf(line, sizeof(line), "vip %s %s %llu %s\n",
                     ip_addr_to_string(&v->addr, (char[INET6_ADDRSTRLEN]){}), v->ifname,
                     (unsigned long long)deadline, key);
        if (n < 0 || (size_t)n >= sizeof(line))
                return -EINVAL;
        /* One write of one line: a crash leaves it whole or absent (a
         * torn last line is skipped as malformed). */
        if (write(m->journal_fd, line, (size_t)n) != n) {
                state_close(m);
                return -EIO;
        }
        return 0;
}

int state_save(Manager *m)
{
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        FILE *f;
        int r = 0;

        if (asprintf(&path, "%s/vips", m->config->state_dir) < 0 ||
            asprintf(&tmp, "%s/.vips.tmp", m->config->state_dir) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        f = fdopen(fd, "w");
        if (!f)
                return -errno;
        TAKE_FD(fd);
        fprintf(f, STATE_HEADER "\n");
        for (Service *s = m->services; s; s = s->next)
                for (size_t i = 0; i < s->n_vips; i++)
                        fprintf(f, "vip %s %s %llu %s\n",
                                ip_addr_to_string(&s->vips[i]->addr, (char[INET6_ADDRSTRLEN]){}),
                                s->vips[i]->ifname, (unsigned long long)s->deadline, s->key);
        if (fflush(f) != 0 || ferror(f))
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlink(tmp);
                return r;
        }
        /* The snapshot holds everything the journal said. A crash before
         * this unlink leaves lines older than the snapshot: each is a grant
         * made before it, so at worst an earlier deadline (the safe side). */
        state_close(m);
        {
                _cleanup_free_ char *j = journal_path(m->config);
                if (j)
                        (void)unlink(j);
        }
        return 0;
}

void state_entries_free(StateEntry *e, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(e[i].key);
        free(e);
}

/* Appends the entries of one file (snapshot or journal) to *v. */
static int load_file(const char *path, StateEntry **v, size_t *n, size_t *cap)
{
        _cleanup_free_ char *line = NULL;
        size_t lineno = 0, sz = 0;
        FILE *f;

        f = fopen(path, "re");
        if (!f) {
                if (errno != ENOENT)
                        log_warning_errno(errno, "cannot read %s, starting without it: %m", path);
                return 0;
        }
        for (;;) {
                char addr[INET6_ADDRSTRLEN + 1], ifname[IFNAMSIZ + 1], key[KVNETD_MAX_SERVICE_KEY + 2];
                unsigned long long deadline;
                StateEntry e = {};
                ParseError pe;

                if (getline(&line, &sz, f) < 0)
                        break;
                lineno++;
                if (lineno == 1) {
                        if (strncmp(line, STATE_HEADER "\n", sizeof(STATE_HEADER)) != 0) {
                                log_warning("%s: unknown format, ignored", path);
                                break;
                        }
                        continue;
                }
                /* Our own file, but checked like any other input. */
                if (sscanf(line, "vip %46s %16s %llu %128s", addr, ifname, &deadline, key) != 4 ||
                    validate_service_key("key", key, &pe) < 0 || !ifname_valid(ifname) ||
                    ip_addr_parse(addr, AF_UNSPEC, &e.addr, NULL) < 0) {
                        log_warning("%s:%zu: malformed, ignored", path, lineno);
                        continue;
                }
                memcpy(e.ifname, ifname, strlen(ifname) + 1); /* ifname_valid(): < IFNAMSIZ */
                e.deadline = deadline;
                e.key = strdup(key);
                if (!e.key || ARRAY_RESERVE(*v, *cap, *n + 1) < 0) {
                        free(e.key);
                        fclose(f);
                        return -ENOMEM;
                }
                (*v)[(*n)++] = e;
        }
        fclose(f);
        return 0;
}

int state_load(const Config *c, StateEntry **ret, size_t *ret_n)
{
        _cleanup_free_ char *path = NULL, *journal = NULL;
        StateEntry *v = NULL;
        size_t n = 0, cap = 0;
        int r;

        if (asprintf(&path, "%s/vips", c->state_dir) < 0 || !(journal = journal_path(c)))
                return -ENOMEM;
        /* The snapshot, then the grants made after it, in order: for an
         * address named twice the later entry is the one that counts. */
        r = load_file(path, &v, &n, &cap);
        if (r >= 0)
                r = load_file(journal, &v, &n, &cap);
        if (r < 0) {
                state_entries_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}
