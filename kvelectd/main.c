/* SPDX-License-Identifier: Apache-2.0 */
/* kvelectd: per-service leader election on Kubernetes Leases. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus-server.h"
#include "daemon.h"
#include "kube-client.h"
#include "kube-config.h"
#include "kvelectd-bus.h"
#include "lease-record.h"
#include "netaddr.h"
#include "log.h"
#include "manager.h"

/* kube-vip's defaults (cmd/kube-vip.go). */
#define LEASE_DURATION_DEFAULT (15 * USEC_PER_SEC)
#define RENEW_DEADLINE_DEFAULT (10 * USEC_PER_SEC)
#define RETRY_PERIOD_DEFAULT (2 * USEC_PER_SEC)
#define DURATION_MAX (3600 * USEC_PER_SEC)

static const char *arg_socket = KVELECTD_SOCKET_PATH_DEFAULT;
/* Admission is by the peer's uid/gid (SO_PEERCRED) on every connection, so
 * the file mode need not keep anyone out; systemd's socket unit may be
 * stricter. */
static mode_t arg_socket_mode = 0666;
static uid_t *arg_uids;
static size_t arg_n_uids;
static gid_t *arg_gids;
static size_t arg_n_gids;
static const char *arg_kubeconfig;
static char *arg_node_name;
static const char *arg_node_name_source = "--node-name";
/* Each duration remembers where it came from, for error messages. */
static struct {
        uint64_t usec;
        const char *source;
} arg_lease_duration = {LEASE_DURATION_DEFAULT, "default"},
  arg_renew_deadline = {RENEW_DEADLINE_DEFAULT, "default"},
  arg_retry_period = {RETRY_PERIOD_DEFAULT, "default"};
static bool arg_no_watch;
static uint64_t arg_max_unread = BUS_SERVER_MAX_QUEUED_DEFAULT;

static void help(void)
{
        printf("Usage: kvelectd [OPTIONS]\n\n"
               "Per-service leader election on Kubernetes Leases (client-go's algorithm,\n"
               "kube-vip's lease names), served to kvpd over %s.\n\n"
               "  -h --help                Show this help\n"
               "     --version             Show the version\n"
               "     --socket PATH         Listen here unless socket-activated [KVELECTD_SOCKET]\n"
               "                           (default %s)\n"
               "     --socket-mode MODE    Mode of that socket (default 0666: peers are admitted by "
               "uid/gid)\n"
               "     --allow-uid LIST      Peers admitted by uid (names or numbers, comma-separated);\n"
               "                           root and group kvegress may only read (kvctl), unless\n"
               "                           no peer is named: then root may do everything\n"
               "     --allow-gid LIST      Peers admitted by gid\n"
               "     --kubeconfig PATH     Kubeconfig (default: $CREDENTIALS_DIRECTORY/kubeconfig, as\n"
               "                           kvelectd.service passes it, else admin.conf,\n"
               "                           ~/.kube/config, in-cluster)\n"
               "     --node-name NAME      Lease identity (default: $vip_nodename, else the hostname)\n"
               "     --lease-duration DUR  (default: $vip_leaseduration, else 15s)\n"
               "     --renew-deadline DUR  (default: $vip_renewdeadline, else 10s)\n"
               "     --retry-period DUR    (default: $vip_retryperiod, else 2s)\n"
               "     --no-watch            Poll every retryPeriod like client-go instead of watching\n"
               "     --max-unread N        Disconnect a client that leaves N signals unread (default %u)\n"
               "     --log-level LEVEL     debug, info, notice, warning, err [KVEGRESS_LOG_LEVEL]\n\n"
               "Durations are seconds (\"15\", as kube-vip takes them) or carry a unit (\"500ms\").\n"
               "LeaseDuration > RenewDeadline > 1.2 * RetryPeriod must hold.\n",
               KVELECTD_BUS_INTERFACE, KVELECTD_SOCKET_PATH_DEFAULT, BUS_SERVER_MAX_QUEUED_DEFAULT);
}

static int parse_argv(int argc, char *argv[])
{
        enum {
                ARG_VERSION = 0x100,
                ARG_SOCKET,
                ARG_SOCKET_MODE,
                ARG_ALLOW_UID,
                ARG_ALLOW_GID,
                ARG_KUBECONFIG,
                ARG_NODE_NAME,
                ARG_LEASE_DURATION,
                ARG_RENEW_DEADLINE,
                ARG_RETRY_PERIOD,
                ARG_NO_WATCH,
                ARG_MAX_UNREAD,
                ARG_LOG_LEVEL,
        };
        static const struct option options[] = {
                DAEMON_LONG_OPTIONS_HELP_VERSION(ARG_VERSION),
                BUS_SERVER_LONG_OPTIONS(ARG_SOCKET, ARG_SOCKET_MODE, ARG_ALLOW_UID, ARG_ALLOW_GID),
                {"kubeconfig", required_argument, NULL, ARG_KUBECONFIG},
                {"node-name", required_argument, NULL, ARG_NODE_NAME},
                {"lease-duration", required_argument, NULL, ARG_LEASE_DURATION},
                {"renew-deadline", required_argument, NULL, ARG_RENEW_DEADLINE},
                {"retry-period", required_argument, NULL, ARG_RETRY_PERIOD},
                {"no-watch", no_argument, NULL, ARG_NO_WATCH},
                {"max-unread", required_argument, NULL, ARG_MAX_UNREAD},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {},
        };
        int c, r;

        /* As kvnetd's KVNETD_SOCKET: the environment file can move it. */
        if (!isempty(getenv("KVELECTD_SOCKET")))
                arg_socket = getenv("KVELECTD_SOCKET");
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        daemon_print_version("kvelectd");
                        return 0;
                case ARG_SOCKET:
                        arg_socket = optarg;
                        break;
                case ARG_SOCKET_MODE:
                        r = socket_mode_arg_parse("--socket-mode", optarg, &arg_socket_mode);
                        if (r < 0)
                                return r;
                        break;
                case ARG_ALLOW_UID:
                        r = uid_list_arg_parse("--allow-uid", optarg, &arg_uids, &arg_n_uids);
                        if (r < 0)
                                return r;
                        break;
                case ARG_ALLOW_GID:
                        r = gid_list_arg_parse("--allow-gid", optarg, &arg_gids, &arg_n_gids);
                        if (r < 0)
                                return r;
                        break;
                case ARG_KUBECONFIG:
                        arg_kubeconfig = optarg;
                        break;
                case ARG_NODE_NAME:
                        free(arg_node_name);
                        arg_node_name = strdup(optarg);
                        if (!arg_node_name)
                                return log_error_errno(ENOMEM, "out of memory");
                        break;
                case ARG_LEASE_DURATION:
                        r = duration_arg_parse("--lease-duration", optarg, 1, DURATION_MAX,
                                               &arg_lease_duration.usec);
                        if (r < 0)
                                return r;
                        arg_lease_duration.source = "--lease-duration";
                        break;
                case ARG_RENEW_DEADLINE:
                        r = duration_arg_parse("--renew-deadline", optarg, 1, DURATION_MAX,
                                               &arg_renew_deadline.usec);
                        if (r < 0)
                                return r;
                        arg_renew_deadline.source = "--renew-deadline";
                        break;
                case ARG_RETRY_PERIOD:
                        r = duration_arg_parse("--retry-period", optarg, 1, DURATION_MAX,
                                               &arg_retry_period.usec);
                        if (r < 0)
                                return r;
                        arg_retry_period.source = "--retry-period";
                        break;
                case ARG_NO_WATCH:
                        arg_no_watch = true;
                        break;
                case ARG_MAX_UNREAD: {
                        char *end = NULL;
                        unsigned long long n;

                        errno = 0;
                        n = strtoull(optarg, &end, 10);
                        if (errno != 0 || !end || *end || end == optarg || n < 16 || n > 1000000)
                                return log_error_errno(EINVAL,
                                                       "--max-unread: \"%s\" is not a number from 16 to "
                                                       "1000000",
                                                       optarg);
                        arg_max_unread = n;
                        break;
                }
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(EINVAL, "--log-level=%s: unknown level", optarg);
                        log_set_max_level(r);
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(EINVAL, "unexpected argument: %s", argv[optind]);
        return 1;
}

static int load_node_name(void)
{
        _cleanup_free_ char *name = NULL;
        int r;

        /* shared/daemon.c: the same name kvpd uses. */
        r = node_name_load(arg_node_name, "--node-name", &name, &arg_node_name_source);
        if (r < 0)
                return r;
        free(arg_node_name);
        arg_node_name = TAKE_PTR(name);
        return 0;
}

static int load_durations(void)
{
        int r;

        /* Options win over kube-vip's environment names. */
        if (streq(arg_lease_duration.source, "default")) {
                r = env_get_duration_usec("vip_leaseduration", 1, DURATION_MAX, &arg_lease_duration.usec);
                if (r < 0)
                        return r;
                if (r > 0)
                        arg_lease_duration.source = "vip_leaseduration";
        }
        if (streq(arg_renew_deadline.source, "default")) {
                r = env_get_duration_usec("vip_renewdeadline", 1, DURATION_MAX, &arg_renew_deadline.usec);
                if (r < 0)
                        return r;
                if (r > 0)
                        arg_renew_deadline.source = "vip_renewdeadline";
        }
        if (streq(arg_retry_period.source, "default")) {
                r = env_get_duration_usec("vip_retryperiod", 1, DURATION_MAX, &arg_retry_period.usec);
                if (r < 0)
                        return r;
                if (r > 0)
                        arg_retry_period.source = "vip_retryperiod";
        }

        /* client-go's NewLeaderElector checks, naming what to change. */
        if (arg_lease_duration.usec <= arg_renew_deadline.usec)
                return log_error_errno(
                        EINVAL,
                        "%s (%llums) must be greater than %s (%llums): leaseDuration must exceed "
                        "renewDeadline",
                        arg_lease_duration.source,
                        (unsigned long long)(arg_lease_duration.usec / USEC_PER_MSEC),
                        arg_renew_deadline.source,
                        (unsigned long long)(arg_renew_deadline.usec / USEC_PER_MSEC));
        if ((double)arg_renew_deadline.usec <= ELECTION_JITTER_FACTOR * (double)arg_retry_period.usec)
                return log_error_errno(
                        EINVAL,
                        "%s (%llums) must be greater than 1.2 x %s (%llums): renewDeadline must "
                        "exceed the jittered retryPeriod",
                        arg_renew_deadline.source,
                        (unsigned long long)(arg_renew_deadline.usec / USEC_PER_MSEC),
                        arg_retry_period.source,
                        (unsigned long long)(arg_retry_period.usec / USEC_PER_MSEC));
        return 0;
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        Manager *m = userdata;

        log_info("received %s", strsignal((int)si->ssi_signo));
        manager_stop(m);
        return 0;
}

static int run(int argc, char *argv[])
{
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(kube_config_freep) KubeConfig *config = NULL;
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *config_error = NULL, *credential = NULL;
        BusPeerPolicy policy;
        char status[256];
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        r = load_node_name();
        if (r < 0)
                return r;
        r = load_durations();
        if (r < 0)
                return r;

        if (!arg_kubeconfig) {
                /* kvelectd.service hands the credentials over with
                 * LoadCredential=kubeconfig:... */
                r = credential_path("kubeconfig", &credential);
                if (r < 0)
                        return log_error_errno(r, "out of memory");
                arg_kubeconfig = credential;
        }
        r = kube_config_auto(arg_kubeconfig, NULL, &config, &config_error);
        if (r < 0)
                return log_error_errno(r, "cannot load the API configuration: %s",
                                       config_error ?: "no kubeconfig found");

        /* SIGTERM starts a graceful stop (release every held Lease); its
         * handler is added once the manager exists. */
        r = daemon_event_new_unhandled(&event);
        if (r < 0)
                return log_error_errno(r, "cannot set up the event loop: %m");
        r = kube_client_new(event, config, NULL, &client);
        if (r < 0) {
                _cleanup_free_ char *what = kube_config_describe(config);
                return log_error_errno(r, "cannot set up the API client from %s: %m",
                                       what ? what : "kubeconfig");
        }

        r = manager_new(event, TAKE_PTR(client),
                        &(ManagerOptions){
                                .identity = arg_node_name,
                                .lease_duration_usec = arg_lease_duration.usec,
                                .renew_deadline_usec = arg_renew_deadline.usec,
                                .retry_period_usec = arg_retry_period.usec,
                                .no_watch = arg_no_watch,
                        },
                        &m);
        if (r < 0)
                return log_error_errno(r, "cannot set up: %m");

        r = daemon_event_add_stop_handler(event, on_stop_signal, m);
        if (r < 0)
                return log_error_errno(r, "cannot handle signals: %m");

        policy = (BusPeerPolicy){
                .uids = arg_uids,
                .n_uids = arg_n_uids,
                .gids = arg_gids,
                .n_gids = arg_n_gids,
                /* root may campaign only when no client is named */
                .allow_root = arg_n_uids == 0 && arg_n_gids == 0,
        };
        r = bus_server_new(event, arg_socket, arg_socket_mode, &policy, KVELECTD_MAX_CONNECTIONS,
                           manager_bus_setup, m, &m->bus);
        if (r < 0)
                return log_error_errno(r, "cannot listen on %s: %m", arg_socket);
        bus_server_set_max_queued(m->bus, arg_max_unread);
        {
                static const char *const read_only_methods[] = KVELECTD_READ_ONLY_METHODS;
                struct group *g = getgrnam("kvegress");
                gid_t gid = g ? g->gr_gid : 0;

                r = bus_server_set_read_only(
                        m->bus,
                        &(BusPeerPolicy){.gids = g ? &gid : NULL, .n_gids = g ? 1 : 0, .allow_root = true},
                        read_only_methods);
                if (r < 0)
                        return log_error_errno(r, "cannot set up read-only introspection: %m");
                if (introspect_setup(m) < 0)
                        log_warning("cannot measure the event loop's lag; the metric stays empty");
        }
        bus_server_set_connections_callback(m->bus, manager_connections_changed, m);

        log_info("identity \"%s\" (from %s), lease %llums / renew %llums / retry %llums, API %s%s",
                 arg_node_name, arg_node_name_source,
                 (unsigned long long)(arg_lease_duration.usec / USEC_PER_MSEC),
                 (unsigned long long)(arg_renew_deadline.usec / USEC_PER_MSEC),
                 (unsigned long long)(arg_retry_period.usec / USEC_PER_MSEC), config->server,
                 arg_no_watch ? " (polling)" : "");
        (void)snprintf(status, sizeof(status), "Campaigning as %s", arg_node_name);
        daemon_notify_ready(status);

        r = sd_event_loop(event);
        daemon_notify_stopping();
        return r;
}

int main(int argc, char *argv[])
{
        int r;

        log_setup("kvelectd");
        r = run(argc, argv);
        free(arg_uids);
        free(arg_gids);
        free(arg_node_name);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
