/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the informer's HTTP paths (shared/kube/kube-informer.c over
 * kube-http.c and libcurl): list pages, watch streams, status codes, headers,
 * chunked bodies, truncated and oversized responses, streams split anywhere.
 *
 * A real KubeInformer (Services, all namespaces) talks plain HTTP to a
 * server in the same sd-event loop, on 127.0.0.1 of a network namespace of
 * its own (unshare; the target exits 77, "skipped", where it cannot make
 * one). Input: byte 0 seeds the piece sizes; the rest is a list of raw
 * HTTP responses separated by "%%\n". Each request the informer makes
 * gets the next response, written verbatim in pieces of 1 to 64 bytes, one
 * piece per loop iteration (so curl sees the stream cut anywhere), then the
 * connection is closed: a response shorter than its Content-Length or its
 * chunks is a truncated one. When the responses run out, the run ends.
 *
 * Invariants: every event and every cached object is a JSON object with a
 * name; the cache holds what foreach() walks; the informer and client free
 * cleanly (ASan: no leak, no use after free) whatever the server sent. */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "kube-client.h"
#include "log.h"

#define RUN_USEC (1000 * 1000ULL)
/* No new request this long after a response: the informer is backing off,
 * and the run is over. */
#define IDLE_USEC (100 * 1000ULL)

typedef struct Server {
        sd_event *event;
        sd_event_source *listen_source;
        sd_event_source *conn_source;
        sd_event_source *write_source;
        sd_event_source *idle_source;
        int conn_fd;
        char req[8192];
        size_t req_len;
        const uint8_t *resp[16];
        size_t resp_len[16];
        size_t n_resp, next_resp, off;
        uint32_t rnd;
        bool done;
} Server;

static int listen_fd = -1;
static unsigned short port;

static void conn_close(Server *s)
{
        s->conn_source = sd_event_source_disable_unref(s->conn_source);
        s->write_source = sd_event_source_disable_unref(s->write_source);
        if (s->conn_fd >= 0)
                close(s->conn_fd);
        s->conn_fd = -1;
        s->req_len = 0;
        if (s->next_resp >= s->n_resp)
                s->done = true;
        if (s->idle_source) {
                (void)sd_event_source_set_time_relative(s->idle_source, IDLE_USEC);
                (void)sd_event_source_set_enabled(s->idle_source, SD_EVENT_ONESHOT);
        }
}

static int on_write(sd_event_source *es, void *userdata)
{
        Server *s = userdata;
        const uint8_t *p = s->resp[s->next_resp - 1];
        size_t len = s->resp_len[s->next_resp - 1], n;

        (void)es;
        s->rnd = s->rnd * 1103515245u + 12345u;
        n = 1 + (s->rnd >> 16) % 64;
        if (n > len - s->off)
                n = len - s->off;
        if (n > 0 && write(s->conn_fd, p + s->off, n) < 0) {
                conn_close(s);
                return 0;
        }
        s->off += n;
        if (s->off >= len)
                conn_close(s);
        return 0;
}

static int on_conn(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        Server *s = userdata;
        ssize_t n;

        (void)es;
        (void)revents;
        n = read(fd, s->req + s->req_len, sizeof(s->req) - 1 - s->req_len);
        if (n <= 0) {
                conn_close(s);
                return 0;
        }
        s->req_len += (size_t)n;
        s->req[s->req_len] = '\0';
        if (!strstr(s->req, "\r\n\r\n")) {
                if (s->req_len >= sizeof(s->req) - 1)
                        conn_close(s);
                return 0;
        }
        /* The request is complete (the informer sends GETs only). */
        fuzz_assert(strncmp(s->req, "GET /api/v1/services?", 21) == 0);
        s->conn_source = sd_event_source_disable_unref(s->conn_source);
        s->off = 0;
        s->next_resp++;
        fuzz_assert(sd_event_add_defer(s->event, &s->write_source, on_write, s) >= 0);
        (void)sd_event_source_set_enabled(s->write_source, SD_EVENT_ON);
        return 0;
}

static int on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        Server *s = userdata;
        int cfd;

        (void)es;
        (void)revents;
        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0)
                return 0;
        if (s->conn_fd >= 0 || s->next_resp >= s->n_resp) {
                /* One request at a time; none once the responses ran out. */
                close(cfd);
                if (s->conn_fd < 0)
                        s->done = true;
                return 0;
        }
        (void)sd_event_source_set_enabled(s->idle_source, SD_EVENT_OFF);
        (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        s->conn_fd = cfd;
        fuzz_assert(sd_event_add_io(s->event, &s->conn_source, cfd, EPOLLIN, on_conn, s) >= 0);
        return 0;
}

static int on_deadline(sd_event_source *es, uint64_t usec, void *userdata)
{
        (void)es;
        (void)usec;
        return sd_event_exit(userdata, 0);
}

static void on_event(KubeInformer *inf, KubeWatchEventType type, json_t *object, void *userdata)
{
        (void)inf;
        (void)userdata;
        fuzz_assert(type >= 0 && type < _KUBE_WATCH_MAX);
        fuzz_assert(json_is_object(object));
        fuzz_assert(json_is_string(json_object_get(json_object_get(object, "metadata"), "name")));
}

static int count_one(json_t *object, void *userdata)
{
        fuzz_assert(json_is_object(object));
        fuzz_assert(json_is_string(json_object_get(json_object_get(object, "metadata"), "name")));
        (*(size_t *)userdata)++;
        return 0;
}

static void setup(void)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        struct ifreq ifr = {};
        int fd;

        if (listen_fd >= 0)
                return;
        log_set_max_level(LOG_CRIT);
        /* Never the host's network namespace: one of our own, lo up. */
        if (unshare(CLONE_NEWNET) < 0) {
                fprintf(stderr, "fuzz-informer-http: cannot make a network namespace (%s): skipped\n",
                        strerror(errno));
                exit(77);
        }
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        fuzz_assert(fd >= 0);
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        fuzz_assert(ioctl(fd, SIOCGIFFLAGS, &ifr) == 0);
        ifr.ifr_flags |= IFF_UP;
        fuzz_assert(ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);
        close(fd);
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        fuzz_assert(listen_fd >= 0);
        fuzz_assert(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        fuzz_assert(listen(listen_fd, 16) == 0);
        fuzz_assert(getsockname(listen_fd, (struct sockaddr *)&sa, &sl) == 0);
        port = ntohs(sa.sin_port);
        /* Retries come at once, so a run does not wait out a backoff. */
        setenv("KVEGRESS_WATCH_IDLE_SEC", "1", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_(kube_informer_freep) KubeInformer *inf = NULL;
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sd_event_source *deadline = NULL;
        char server_url[64];
        KubeConfig config = {.server = server_url, .source = (char *)"fuzz"};
        KubeInformerOps ops = {.event = on_event};
        Server s = {.conn_fd = -1};
        const uint8_t *p, *end;
        size_t cached = 0;

        if (size < 1 || size > 64 * 1024)
                return 0;
        setup();
        s.rnd = data[0] | 0x100u;
        /* Split the responses at "%%\n" lines. */
        p = data + 1;
        end = data + size;
        while (p <= end && s.n_resp < 16) {
                const uint8_t *q = p;
                while (q + 3 <= end && !(q[0] == '%' && q[1] == '%' && q[2] == '\n'))
                        q++;
                if (q + 3 > end)
                        q = end;
                s.resp[s.n_resp] = p;
                s.resp_len[s.n_resp++] = (size_t)(q - p);
                p = q + 3;
        }

        snprintf(server_url, sizeof(server_url), "http://127.0.0.1:%u", port);
        fuzz_assert(sd_event_new(&event) >= 0);
        s.event = event;
        fuzz_assert(sd_event_add_io(event, &s.listen_source, listen_fd, EPOLLIN, on_accept, &s) >= 0);
        fuzz_assert(sd_event_add_time_relative(event, &deadline, CLOCK_MONOTONIC, RUN_USEC, 0, on_deadline,
                                               event) >= 0);
        fuzz_assert(sd_event_add_time_relative(event, &s.idle_source, CLOCK_MONOTONIC, IDLE_USEC, 0,
                                               on_deadline, event) >= 0);
        (void)sd_event_source_set_enabled(s.idle_source, SD_EVENT_OFF);
        fuzz_assert(kube_client_new(event, &config, NULL, &client) >= 0);
        fuzz_assert(kube_informer_new(client, &kube_resource_services, NULL, &ops, NULL, &inf) >= 0);
        while (!s.done) {
                if (sd_event_run(event, RUN_USEC) <= 0 && sd_event_get_state(event) == SD_EVENT_FINISHED)
                        break;
                if (sd_event_get_state(event) == SD_EVENT_FINISHED)
                        break;
        }
        /* Let the client see the last close. */
        for (int i = 0; i < 4 && sd_event_get_state(event) != SD_EVENT_FINISHED; i++)
                (void)sd_event_run(event, 0);

        fuzz_assert(kube_informer_foreach(inf, count_one, &cached) == 0);
        fuzz_assert(cached == kube_informer_size(inf));
        fuzz_escape(kube_informer_get(inf, "default", "web"));

        inf = kube_informer_free(inf);
        client = kube_client_free(client);
        conn_close(&s);
        s.listen_source = sd_event_source_disable_unref(s.listen_source);
        deadline = sd_event_source_disable_unref(deadline);
        s.idle_source = sd_event_source_disable_unref(s.idle_source);
        /* Drain what the listener queued, so the next run starts clean. */
        for (int fd; (fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
                close(fd);
        return 0;
}
