/* SPDX-License-Identifier: Apache-2.0 */
#include "bus-server.h"

#include <fcntl.h>
#include <inttypes.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>

#include "array.h"
#include "log.h"

typedef struct BusConnection BusConnection;

struct BusConnection {
        BusServer *server;
        sd_bus *bus;
        sd_bus_slot *disconnect_slot;
        BusConnection *next, *prev;
};

struct BusServer {
        sd_event *event;
        sd_event_source *listen_source;
        int listen_fd;
        char *socket_path; /* set only if we bound it ourselves, so we unlink it */
        BusPeerPolicy policy;
        uid_t *uids;
        gid_t *gids;
        unsigned max_connections;
        unsigned n_connections;
        BusServerSetupFn setup;
        void *userdata;
        BusServerConnectionsFn connections_fn;
        void *connections_userdata;
        BusConnection *connections;
        /* Read-only introspection peers (bus_server_set_read_only). */
        BusPeerPolicy ro_policy;
        uid_t *ro_uids;
        gid_t *ro_gids;
        const char *const *ro_methods;
        uint64_t max_queued; /* signals a client may leave unread (bus_server_set_max_queued) */
};

/* Bytes of send buffer per client socket (the kernel doubles it). */
#define BUS_SERVER_SNDBUF (128 * 1024)

static void connections_changed(BusServer *s)
{
        if (s->connections_fn)
                s->connections_fn(s, s->n_connections, s->connections_userdata);
}

/* flush: write what is queued first (a client that left, or the server
 * stopping); a client dropped for not reading would block it. */
static void connection_free_full(BusConnection *c, bool flush)
{
        BusServer *s;

        if (!c)
                return;
        s = c->server;
        if (s) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        s->connections = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                s->n_connections--;
        }
        sd_bus_slot_unref(c->disconnect_slot);
        if (flush)
                sd_bus_flush_close_unref(c->bus);
        else
                sd_bus_close_unref(c->bus);
        free(c);
        if (s)
                connections_changed(s);
}

static void connection_free(BusConnection *c)
{
        connection_free_full(c, true);
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        BusConnection *c = userdata;
        (void)m;
        (void)error;
        log_debug("bus client disconnected");
        connection_free(c);
        return 0;
}

static bool peer_admitted(const BusPeerPolicy *p, const struct ucred *cred)
{
        if (p->allow_any || (cred->uid == 0 && p->allow_root))
                return true;
        for (size_t i = 0; i < p->n_uids; i++)
                if (p->uids[i] == cred->uid)
                        return true;
        for (size_t i = 0; i < p->n_gids; i++)
                if (p->gids[i] == cred->gid)
                        return true;
        return false;
}

/* The read-only policy also matches supplementary groups, read from the
 * kernel (SO_PEERGROUPS: the groups at connect() time), never from anything
 * the peer sends. */
static bool peer_admitted_read_only(const BusServer *s, int fd, const struct ucred *cred)
{
        gid_t groups[256];
        socklen_t len = sizeof(groups);

        if (!s->ro_methods)
                return false;
        if (peer_admitted(&s->ro_policy, cred))
                return true;
        if (s->ro_policy.n_gids == 0 || getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false;
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                for (size_t j = 0; j < s->ro_policy.n_gids; j++)
                        if (groups[i] == s->ro_policy.gids[j])
                                return true;
        return false;
}

/* Installed first on a read-only connection: whatever is not on the list
 * never reaches a handler. */
static int read_only_filter(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
#define NA(x) ((x) ? (x) : "n/a")
        const BusServer *s = userdata;
        const char *iface, *member;
        (void)error;

        if (!sd_bus_message_is_method_call(m, NULL, NULL))
                return 0;
        iface = sd_bus_message_get_interface(m);
        member = sd_bus_message_get_member(m);
        if (streq_ptr(iface, "org.freedesktop.DBus.Introspectable") ||
            streq_ptr(iface, "org.freedesktop.DBus.Peer"))
                return 0;
        for (const char *const *i = s->ro_methods; member && *i; i++)
                if (streq(member, *i) && iface && strncmp(iface, "org.freedesktop.", 16) != 0)
                        return 0;
        log_debug("refused %s.%s on a read-only connection", NA(iface), NA(member));
        (void)sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s is not allowed to this peer (read-only introspection only)",
                                         NA(member));
        return 1;
#undef NA
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        BusServer *s = userdata;
        _cleanup_close_ int cfd = -EBADF;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        BusConnection *c;
        sd_id128_t id;
        bool read_only;
        int r;

        (void)source;
        (void)revents;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
                if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        return 0;
                log_warning_errno(errno, "accept() failed: %m");
                return 0;
        }
        /* Who is calling is checked first, before a single byte is read. */
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(errno, "SO_PEERCRED failed, dropping connection: %m");
                return 0;
        }
        if (peer_admitted(&s->policy, &cred))
                read_only = false;
        else if (peer_admitted_read_only(s, cfd, &cred))
                read_only = true;
        else {
                log_warning("refused bus connection from uid %u gid %u pid %d: not in the allowed uids/gids",
                            (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
                return 0;
        }
        if (s->n_connections >= s->max_connections) {
                log_warning("refused bus connection from pid %d: %u connections already", (int)cred.pid,
                            s->n_connections);
                return 0;
        }

        r = sd_bus_new(&bus);
        if (r < 0)
                return log_error_errno(r, "sd_bus_new failed: %m"), 0;
        r = sd_bus_set_fd(bus, cfd, cfd);
        if (r < 0)
                return log_error_errno(r, "sd_bus_set_fd failed: %m"), 0;
        TAKE_FD(cfd);
        r = sd_id128_randomize(&id);
        if (r < 0)
                return log_error_errno(r, "sd_id128_randomize failed: %m"), 0;
        r = sd_bus_set_server(bus, 1, id);
        if (r < 0)
                return log_error_errno(r, "sd_bus_set_server failed: %m"), 0;
        /* Clients authenticate with EXTERNAL (their uid); the kernel-checked
         * SO_PEERCRED above is what we trust. */
        r = sd_bus_set_anonymous(bus, false);
        if (r < 0)
                return log_error_errno(r, "sd_bus_set_anonymous failed: %m"), 0;

        c = calloc(1, sizeof(*c));
        if (!c)
                return log_error_errno(ENOMEM, "out of memory"), 0;

        if (read_only) {
                r = sd_bus_add_filter(bus, NULL, read_only_filter, s);
                if (r < 0) {
                        free(c);
                        return log_error_errno(r, "bus filter failed: %m"), 0;
                }
        }
        r = s->setup(bus, s->userdata);
        if (r < 0) {
                free(c);
                return log_error_errno(r, "bus setup failed: %m"), 0;
        }
        r = sd_bus_match_signal(bus, &c->disconnect_slot, "org.freedesktop.DBus.Local",
                                "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local", "Disconnected",
                                on_disconnected, c);
        if (r < 0) {
                free(c);
                return log_error_errno(r, "bus match failed: %m"), 0;
        }
        r = sd_bus_attach_event(bus, s->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                sd_bus_slot_unref(c->disconnect_slot);
                free(c);
                return log_error_errno(r, "sd_bus_attach_event failed: %m"), 0;
        }
        r = sd_bus_start(bus);
        if (r < 0) {
                sd_bus_slot_unref(c->disconnect_slot);
                free(c);
                return log_error_errno(r, "sd_bus_start failed: %m"), 0;
        }
        /* sd-bus raises the socket's send buffer to 8 MiB (SO_SNDBUFFORCE as
         * root): 8 MiB of kernel memory per client before the unread bound
         * (max_queued) even starts counting. Our messages are small and a
         * client that reads drains them at once. */
        {
                int size = BUS_SERVER_SNDBUF;

                (void)setsockopt(sd_bus_get_fd(bus), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        }

        c->server = s;
        c->bus = TAKE_PTR(bus);
        c->next = s->connections;
        if (c->next)
                c->next->prev = c;
        s->connections = c;
        s->n_connections++;
        log_debug("bus client connected: pid %d uid %u%s", (int)cred.pid, (unsigned)cred.uid,
                  read_only ? " (read-only)" : "");
        connections_changed(s);
        return 0;
}

static int listen_socket(const char *path, mode_t mode, int *ret_fd)
{
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        mode_t old_umask;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void)unlink(path);
        /* Create the socket with its final mode: no window in which it is
         * more open than configured. */
        old_umask = umask(~mode & 0777);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_umask);
        if (r < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int bus_server_new(sd_event *event, const char *socket_path, mode_t socket_mode, const BusPeerPolicy *policy,
                   unsigned max_connections, BusServerSetupFn setup, void *userdata, BusServer **ret)
{
        _cleanup_(bus_server_freep) BusServer *s = NULL;
        int n, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->listen_fd = -EBADF;
        s->event = sd_event_ref(event);
        s->setup = setup;
        s->userdata = userdata;
        s->max_connections = max_connections;
        s->max_queued = BUS_SERVER_MAX_QUEUED_DEFAULT;
        s->policy.allow_root = policy->allow_root;
        s->policy.allow_any = policy->allow_any;
        if (policy->n_uids > 0) {
                s->uids = calloc(policy->n_uids, sizeof(uid_t));
                if (!s->uids)
                        return -ENOMEM;
                memcpy(s->uids, policy->uids, policy->n_uids * sizeof(uid_t));
                s->policy.uids = s->uids;
                s->policy.n_uids = policy->n_uids;
        }
        if (policy->n_gids > 0) {
                s->gids = calloc(policy->n_gids, sizeof(gid_t));
                if (!s->gids)
                        return -ENOMEM;
                memcpy(s->gids, policy->gids, policy->n_gids * sizeof(gid_t));
                s->policy.gids = s->gids;
                s->policy.n_gids = policy->n_gids;
        }

        n = sd_listen_fds(true);
        if (n < 0)
                return n;
        if (n > 1)
                return -E2BIG;
        if (n == 1) {
                r = sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0);
                if (r <= 0)
                        return r < 0 ? r : -ENOTSOCK;
                s->listen_fd = SD_LISTEN_FDS_START;
                r = fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK);
                if (r < 0)
                        return -errno;
        } else {
                r = listen_socket(socket_path, socket_mode, &s->listen_fd);
                if (r < 0)
                        return r;
                s->socket_path = strdup(socket_path);
                if (!s->socket_path)
                        return -ENOMEM;
        }

        r = sd_event_add_io(event, &s->listen_source, s->listen_fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

BusServer *bus_server_free(BusServer *s)
{
        if (!s)
                return NULL;
        s->connections_fn = NULL; /* the owner is going away too */
        while (s->connections)
                connection_free(s->connections);
        sd_event_source_disable_unref(s->listen_source);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        if (s->socket_path)
                (void)unlink(s->socket_path);
        free(s->socket_path);
        free(s->uids);
        free(s->gids);
        free(s->ro_uids);
        free(s->ro_gids);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

int bus_server_emit_signal(BusServer *s, const char *path, const char *interface, const char *member,
                           const char *types, ...)
{
        BusConnection *next;
        int ret = 0;

        for (BusConnection *c = s->connections; c; c = next) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
                uint64_t queued = 0;
                va_list ap;
                int r;

                next = c->next;
                /* A client that stopped reading (frozen, or stuck in a long
                 * callback) would make every signal since pile up in our
                 * memory: 101 MiB in kvelectd with kvpd stopped. Past the
                 * bound it is disconnected, as dbus-daemon does past its
                 * outgoing limit; a client that connects again asks for the
                 * state it needs. */
                if (sd_bus_get_n_queued_write(c->bus, &queued) >= 0 && queued >= s->max_queued) {
                        log_warning("a bus client left %" PRIu64 " signals unread: disconnecting it",
                                    queued);
                        connection_free_full(c, false);
                        continue;
                }

                r = sd_bus_message_new_signal(c->bus, &m, path, interface, member);
                if (r >= 0) {
                        va_start(ap, types);
                        r = sd_bus_message_appendv(m, types, ap);
                        va_end(ap);
                }
                if (r >= 0)
                        r = sd_bus_send(c->bus, m, NULL);
                if (r < 0)
                        ret = r;
        }
        return ret;
}

int bus_server_set_read_only(BusServer *s, const BusPeerPolicy *policy, const char *const *read_only_methods)
{
        _cleanup_free_ uid_t *uids = NULL;
        _cleanup_free_ gid_t *gids = NULL;

        if (policy->n_uids > 0) {
                uids = calloc(policy->n_uids, sizeof(uid_t));
                if (!uids)
                        return -ENOMEM;
                memcpy(uids, policy->uids, policy->n_uids * sizeof(uid_t));
        }
        if (policy->n_gids > 0) {
                gids = calloc(policy->n_gids, sizeof(gid_t));
                if (!gids)
                        return -ENOMEM;
                memcpy(gids, policy->gids, policy->n_gids * sizeof(gid_t));
        }
        free(s->ro_uids);
        free(s->ro_gids);
        s->ro_uids = TAKE_PTR(uids);
        s->ro_gids = TAKE_PTR(gids);
        s->ro_policy = (BusPeerPolicy){.uids = s->ro_uids,
                                       .n_uids = policy->n_uids,
                                       .gids = s->ro_gids,
                                       .n_gids = policy->n_gids,
                                       .allow_root = policy->allow_root,
                                       .allow_any = policy->allow_any};
        s->ro_methods = read_only_methods;
        return 0;
}

void bus_server_set_connections_callback(BusServer *s, BusServerConnectionsFn fn, void *userdata)
{
        s->connections_fn = fn;
        s->connections_userdata = userdata;
}

void bus_server_set_max_queued(BusServer *s, uint64_t max_queued)
{
        s->max_queued = max_queued ?: BUS_SERVER_MAX_QUEUED_DEFAULT;
}

unsigned bus_server_n_connections(const BusServer *s)
{
        return s->n_connections;
}

static int parse_id_list(const char *s, bool group, unsigned **ret, size_t *ret_n)
{
        _cleanup_free_ unsigned *v = NULL;
        _cleanup_free_ char *copy = NULL;
        size_t n = 0, cap = 0;
        char *save = NULL;

        copy = strdup(s ? s : "");
        if (!copy)
                return -ENOMEM;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
                unsigned id;
                char *end;

                errno = 0;
                id = (unsigned)strtoul(t, &end, 10);
                if (errno != 0 || *end != '\0' || end == t) {
                        if (group) {
                                struct group *g = getgrnam(t);
                                if (!g)
                                        return -ESRCH;
                                id = g->gr_gid;
                        } else {
                                struct passwd *p = getpwnam(t);
                                if (!p)
                                        return -ESRCH;
                                id = p->pw_uid;
                        }
                }
                if (ARRAY_RESERVE(v, cap, n + 1) < 0)
                        return -ENOMEM;
                v[n++] = id;
        }
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

int parse_uid_list(const char *s, uid_t **ret, size_t *ret_n)
{
        _Static_assert(sizeof(uid_t) == sizeof(unsigned), "uid_t size");
        return parse_id_list(s, false, (unsigned **)ret, ret_n);
}

int parse_gid_list(const char *s, gid_t **ret, size_t *ret_n)
{
        _Static_assert(sizeof(gid_t) == sizeof(unsigned), "gid_t size");
        return parse_id_list(s, true, (unsigned **)ret, ret_n);
}

int socket_mode_arg_parse(const char *name, const char *v, mode_t *ret)
{
        char *end;
        unsigned long m;

        errno = 0;
        m = strtoul(v, &end, 8);
        if (errno != 0 || isempty(v) || *end != '\0' || m > 0777)
                return log_error_errno(EINVAL, "%s=%s: not an octal mode", name, v);
        *ret = (mode_t)m;
        return 0;
}

static int id_list_arg_parse(const char *name, const char *v, bool group, unsigned **ret, size_t *ret_n)
{
        unsigned *l = NULL;
        size_t n = 0;
        int r;

        r = parse_id_list(v, group, &l, &n);
        if (r < 0)
                return log_error_errno(r, "%s=%s: %s", name, v,
                                       r == -ESRCH ? (group ? "no such group" : "no such user")
                                                   : "invalid list");
        free(*ret);
        *ret = l;
        *ret_n = n;
        return 0;
}

int uid_list_arg_parse(const char *name, const char *v, uid_t **ret, size_t *ret_n)
{
        return id_list_arg_parse(name, v, false, (unsigned **)ret, ret_n);
}

int gid_list_arg_parse(const char *name, const char *v, gid_t **ret, size_t *ret_n)
{
        return id_list_arg_parse(name, v, true, (unsigned **)ret, ret_n);
}

int bus_reply_array_new(sd_bus_message *call, const char *reply_sig, sd_bus_message **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (reply_sig[0] != 'a')
                return -EINVAL;
        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', reply_sig + 1);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(reply);
        return 0;
}

int bus_reply_array_send(sd_bus_message *reply)
{
        int r = sd_bus_message_close_container(reply);

        return r < 0 ? r : sd_bus_send(NULL, reply, NULL);
}
