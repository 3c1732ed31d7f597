/* SPDX-License-Identifier: Apache-2.0 */
#include "state.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "array.h"
#include "log.h"
#include "kvnetd-bus.h"
#include "validate.h"

#define STATE_HEADER "kvnetd-state 1"

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
        if (r < 0)
                (void)unlink(tmp);
        return r;
}

void state_entries_free(StateEntry *e, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(e[i].key);
        free(e);
}

int state_load(const Config *c, StateEntry **ret, size_t *ret_n)
{
        _cleanup_free_ char *path = NULL, *line = NULL;
        StateEntry *v = NULL;
        size_t n = 0, cap = 0, lineno = 0, sz = 0;
        FILE *f;

        if (asprintf(&path, "%s/vips", c->state_dir) < 0)
                return -ENOMEM;
        f = fopen(path, "re");
        if (!f) {
                if (errno != ENOENT)
                        log_warning_errno(errno, "cannot read %s, starting without it: %m", path);
                *ret = NULL;
                *ret_n = 0;
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
                if (!e.key || ARRAY_RESERVE(v, cap, n + 1) < 0) {
                        free(e.key);
                        fclose(f);
                        state_entries_free(v, n);
                        return -ENOMEM;
                }
                v[n++] = e;
        }
        fclose(f);
        *ret = v;
        *ret_n = n;
        return 0;
}
