/* SPDX-License-Identifier: Apache-2.0 */
/* kvnetd: the privileged network executor. It binds VIPs and programs egress
 * SNAT on request of kvpd, over a private sd-bus socket, and nothing else. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "bus.h"
#include "caps.h"
#include "daemon.h"
#include "introspect.h"
#include "kvnetd-bus.h"
#include "log.h"
#include "manager.h"
#include "nft.h"

static void help(void)
{
        printf("Usage: kvnetd [OPTIONS]\n\n"
               "The privileged network executor: binds VIPs and programs egress SNAT.\n"
               "Each option can also be set in the environment (in brackets);\n"
               "the command line wins.\n\n"
               "  -h --help                  Show this help\n"
               "     --version               Show the version\n"
               "     --socket=PATH           Listen here unless socket-activated\n"
               "                             [KVNETD_SOCKET] (" KVNETD_SOCKET_PATH_DEFAULT ")\n"
               "     --socket-mode=MODE      Mode of that socket (0666: admission is by the\n"
               "                             peer's uid/gid, checked on every connection)\n"
               "                             [KVNETD_SOCKET_MODE]\n"
               "     --allow-uid=USERS       Peers admitted by uid, names or numbers [KVNETD_ALLOW_UID];\n"
               "                             root and group " KVEGRESS_READ_ONLY_GROUP
               " may only read (kvctl)\n"
               "                             unless none is given, then root may do everything\n"
               "     --allow-gid=GROUPS      Peers admitted by primary gid [KVNETD_ALLOW_GID]\n"
               "     --vip-range=CIDR        VIPs must lie in one of these (repeatable)\n"
               "                             [KVNETD_VIP_RANGES, comma-separated]\n"
               "     --interface=IF          VIPs may be bound only here (repeatable)\n"
               "                             [KVNETD_INTERFACES, comma-separated]\n"
               "     --grace-period=TIME     Keep what a previous run left this long while\n"
               "                             clients replay (30s) [KVNETD_GRACE_PERIOD]\n"
               "     --reconcile-interval=TIME  Re-check addresses and table (30s)\n"
               "                             [KVNETD_RECONCILE_INTERVAL]\n"
               "     --clean-on-stop         Remove every VIP and rule on SIGTERM\n"
               "                             [KVNETD_CLEAN_ON_STOP]\n"
               "     --ipv6-nodad            Bind IPv6 VIPs without DAD [KVNETD_IPV6_NODAD, vip_skipdad]\n"
               "     --state-dir=DIR         Grant records (/run/kvnetd) [KVNETD_STATE_DIR]\n"
               "     --table=NAME            nft table, family inet (" NFT_TABLE_DEFAULT ") [KVNETD_TABLE]\n"
               "     --user=USER             Started as root: switch to USER, keeping\n"
               "                             CAP_NET_ADMIN and CAP_NET_RAW [KVNETD_USER]\n"
               "     --allow-extra-caps      Run even with more capabilities than those two\n"
               "     --flush                 Remove everything a previous run left, and exit\n"
               "     --lower-limits=S,V,P    Lower the limits on services, VIPs and pod\n"
               "                             mappings (tests; never above the built-in ones)\n"
               "     --log-level=LEVEL       debug, info, notice, warning, err\n");
}

static void config_free(Config *c)
{
        free(c->socket_path);
        free(c->allow_uids);
        free(c->allow_gids);
        free(c->vip_ranges);
        strv_free(c->interfaces);
        free(c->state_dir);
        free(c->user);
        free(c->table);
}

static int set_string(char **dst, const char *v)
{
        char *n = strdup(v);

        if (!n)
                return -ENOMEM;
        free(*dst);
        *dst = n;
        return 0;
}

static int add_vip_ranges(Config *c, const char *opt, const char *v)
{
        _cleanup_free_ IpPrefix *p = NULL;
        IpPrefix *n;
        size_t np = 0;
        ParseError e = {};
        int r;

        r = ip_prefix_list_parse(v, AF_UNSPEC, 256, &p, &np, &e);
        if (r < 0)
                return log_error_errno(r, "%s=%s: %s", opt, v, e.message);
        n = reallocarray(c->vip_ranges, c->n_vip_ranges + np, sizeof(IpPrefix));
        if (!n)
                return -ENOMEM;
        memcpy(n + c->n_vip_ranges, p, np * sizeof(IpPrefix));
        c->vip_ranges = n;
        c->n_vip_ranges += np;
        return 0;
}

static int add_interfaces(Config *c, const char *opt, const char *v)
{
        _cleanup_strv_free_ char **l = NULL;
        ParseError e = {};
        size_t n = 0, k = 0;
        char **nl;
        int r;

        r = split_comma_list(v, 256, &l, &e);
        if (r < 0)
                return log_error_errno(r, "%s=%s: %s", opt, v, e.message);
        for (char **i = l; *i; i++)
                if (!ifname_valid(*i))
                        return log_error_errno(EINVAL, "%s=%s: \"%s\" is not a valid interface name", opt, v,
                                               *i);
        while (c->interfaces && c->interfaces[n])
                n++;
        while (l[k])
                k++;
        nl = reallocarray(c->interfaces, n + k + 1, sizeof(char *));
        if (!nl)
                return -ENOMEM;
        memcpy(nl + n, l, (k + 1) * sizeof(char *));
        free(TAKE_PTR(l)); /* the strings now belong to nl */
        c->interfaces = nl;
        return 0;
}

static int parse_env(Config *c)
{
        const char *v;
        bool b;
        int r;

        if (env_get_string("KVNETD_SOCKET", &v) > 0 && (r = set_string(&c->socket_path, v)) < 0)
                return r;
        if (env_get_string("KVNETD_SOCKET_MODE", &v) > 0 &&
            (r = socket_mode_arg_parse("KVNETD_SOCKET_MODE", v, &c->socket_mode)) < 0)
                return r;
        if (env_get_string("KVNETD_ALLOW_UID", &v) > 0 &&
            (r = uid_list_arg_parse("KVNETD_ALLOW_UID", v, &c->allow_uids, &c->n_allow_uids)) < 0)
                return r;
        if (env_get_string("KVNETD_ALLOW_GID", &v) > 0 &&
            (r = gid_list_arg_parse("KVNETD_ALLOW_GID", v, &c->allow_gids, &c->n_allow_gids)) < 0)
                return r;
        if (env_get_string("KVNETD_VIP_RANGES", &v) > 0 &&
            (r = add_vip_ranges(c, "KVNETD_VIP_RANGES", v)) < 0)
                return r;
        if (env_get_string("KVNETD_INTERFACES", &v) > 0 &&
            (r = add_interfaces(c, "KVNETD_INTERFACES", v)) < 0)
                return r;
        if (env_get_string("KVNETD_GRACE_PERIOD", &v) > 0 &&
            (r = duration_arg_parse("KVNETD_GRACE_PERIOD", v, 0, UINT64_MAX, &c->grace_usec)) < 0)
                return r;
        if (env_get_string("KVNETD_RECONCILE_INTERVAL", &v) > 0 &&
            (r = duration_arg_parse("KVNETD_RECONCILE_INTERVAL", v, USEC_PER_SEC, UINT64_MAX,
                                    &c->reconcile_usec)) < 0)
                return r;
        if (env_get_string("KVNETD_STATE_DIR", &v) > 0 && (r = set_string(&c->state_dir, v)) < 0)
                return r;
        if (env_get_string("KVNETD_TABLE", &v) > 0 && (r = set_string(&c->table, v)) < 0)
                return r;
        if (env_get_string("KVNETD_USER", &v) > 0 && (r = set_string(&c->user, v)) < 0)
                return r;
        if ((r = env_get_bool("KVNETD_CLEAN_ON_STOP", &b)) < 0)
                return r;
        if (r > 0)
                c->clean_on_stop = b;
        /* kube-vip's name first, so an operator's environment file keeps
         * working; KVNETD_IPV6_NODAD, read after it, wins. */
        if ((r = env_get_bool("vip_skipdad", &b)) < 0)
                return r;
        if (r > 0)
                c->ipv6_nodad = b;
        if ((r = env_get_bool("KVNETD_IPV6_NODAD", &b)) < 0)
                return r;
        if (r > 0)
                c->ipv6_nodad = b;
        if ((r = env_get_bool("KVNETD_ALLOW_EXTRA_CAPS", &b)) < 0)
                return r;
        if (r > 0)
                c->allow_extra_caps = b;
        return 0;
}

static bool table_name_valid(const char *s)
{
        if (isempty(s) || strlen(s) > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;
        return s[0] >= 'a' && s[0] <= 'z';
}

static int parse_argv(Config *c, int argc, char *argv[])
{
        enum {
                ARG_VERSION = 0x100,
                ARG_SOCKET,
                ARG_SOCKET_MODE,
                ARG_ALLOW_UID,
                ARG_ALLOW_GID,
                ARG_VIP_RANGE,
                ARG_INTERFACE,
                ARG_GRACE,
                ARG_RECONCILE,
                ARG_CLEAN_ON_STOP,
                ARG_NODAD,
                ARG_STATE_DIR,
                ARG_TABLE,
                ARG_USER,
                ARG_EXTRA_CAPS,
                ARG_FLUSH,
                ARG_LOG_LEVEL,
                ARG_LOWER_LIMITS,
        };
        static const struct option options[] = {
                DAEMON_LONG_OPTIONS_HELP_VERSION(ARG_VERSION),
                BUS_SERVER_LONG_OPTIONS(ARG_SOCKET, ARG_SOCKET_MODE, ARG_ALLOW_UID, ARG_ALLOW_GID),
                {"vip-range", required_argument, NULL, ARG_VIP_RANGE},
                {"interface", required_argument, NULL, ARG_INTERFACE},
                {"grace-period", required_argument, NULL, ARG_GRACE},
                {"reconcile-interval", required_argument, NULL, ARG_RECONCILE},
                {"clean-on-stop", no_argument, NULL, ARG_CLEAN_ON_STOP},
                {"ipv6-nodad", no_argument, NULL, ARG_NODAD},
                {"state-dir", required_argument, NULL, ARG_STATE_DIR},
                {"table", required_argument, NULL, ARG_TABLE},
                {"user", required_argument, NULL, ARG_USER},
                {"allow-extra-caps", no_argument, NULL, ARG_EXTRA_CAPS},
                {"flush", no_argument, NULL, ARG_FLUSH},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {"lower-limits", required_argument, NULL, ARG_LOWER_LIMITS},
                {},
        };
        bool cli_ranges = false, cli_interfaces = false;
        int ch, r = 0;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (ch) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        daemon_print_version("kvnetd");
                        return 0;
                case ARG_SOCKET:
                        r = set_string(&c->socket_path, optarg);
                        break;
                case ARG_SOCKET_MODE:
                        r = socket_mode_arg_parse("--socket-mode", optarg, &c->socket_mode);
                        break;
                case ARG_ALLOW_UID:
                        r = uid_list_arg_parse("--allow-uid", optarg, &c->allow_uids, &c->n_allow_uids);
                        break;
                case ARG_ALLOW_GID:
                        r = gid_list_arg_parse("--allow-gid", optarg, &c->allow_gids, &c->n_allow_gids);
                        break;
                case ARG_VIP_RANGE:
                        /* The command line replaces the environment's list. */
                        if (!cli_ranges) {
                                c->vip_ranges = mfree(c->vip_ranges);
                                c->n_vip_ranges = 0;
                                cli_ranges = true;
                        }
                        r = add_vip_ranges(c, "--vip-range", optarg);
                        break;
                case ARG_INTERFACE:
                        if (!cli_interfaces) {
                                strv_free(c->interfaces);
                                c->interfaces = NULL;
                                cli_interfaces = true;
                        }
                        r = add_interfaces(c, "--interface", optarg);
                        break;
                case ARG_GRACE:
                        r = duration_arg_parse("--grace-period", optarg, 0, UINT64_MAX, &c->grace_usec);
                        break;
                case ARG_RECONCILE:
                        r = duration_arg_parse("--reconcile-interval", optarg, USEC_PER_SEC, UINT64_MAX,
                                               &c->reconcile_usec);
                        break;
                case ARG_CLEAN_ON_STOP:
                        c->clean_on_stop = true;
                        break;
                case ARG_NODAD:
                        c->ipv6_nodad = true;
                        break;
                case ARG_STATE_DIR:
                        r = set_string(&c->state_dir, optarg);
                        break;
                case ARG_TABLE:
                        r = set_string(&c->table, optarg);
                        break;
                case ARG_USER:
                        r = set_string(&c->user, optarg);
                        break;
                case ARG_EXTRA_CAPS:
                        c->allow_extra_caps = true;
                        break;
                case ARG_FLUSH:
                        c->flush_and_exit = true;
                        break;
                case ARG_LOWER_LIMITS: {
                        unsigned long sv, vv, pv;
                        char end;
                        if (sscanf(optarg, "%lu,%lu,%lu%c", &sv, &vv, &pv, &end) != 3 || sv == 0 ||
                            vv == 0 || pv == 0 || sv > KVNETD_MAX_SERVICES || vv > KVNETD_MAX_VIPS ||
                            pv > KVNETD_MAX_PODS_TOTAL)
                                return log_error_errno(
                                        EINVAL,
                                        "--lower-limits=%s: want SERVICES,VIPS,PODS, each 1 up to "
                                        "the built-in limit",
                                        optarg);
                        c->max_services = sv;
                        c->max_vips = vv;
                        c->max_pods = pv;
                        break;
                }
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(EINVAL, "--log-level=%s: unknown level", optarg);
                        log_set_max_level(r);
                        r = 0;
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                return log_error_errno(EINVAL, "unexpected argument \"%s\"", argv[optind]);
        if (c->n_vip_ranges == 0)
                return log_error_errno(EINVAL, "--vip-range: at least one range is required");
        for (size_t i = 0; i < c->n_vip_ranges; i++)
                if (c->vip_ranges[i].prefixlen == 0)
                        return log_error_errno(EINVAL, "--vip-range: a /0 range would allow any address");
        if (!c->interfaces || !c->interfaces[0])
                return log_error_errno(EINVAL, "--interface: at least one interface is required");
        if (!table_name_valid(c->table))
                return log_error_errno(EINVAL, "--table=%s: use [a-z][a-z0-9_]*", c->table);
        if (c->n_allow_uids == 0 && c->n_allow_gids == 0)
                log_warning("--allow-uid/--allow-gid: none given, only root may connect");
        return 1;
}

int main(int argc, char *argv[])
{
        Config config = {
                /* Who may talk to us is decided by SO_PEERCRED against
                 * --allow-uid/--allow-gid (as the D-Bus system bus does);
                 * a bound socket cannot be given a group we are not in, so
                 * a tighter mode would lock out the allowed client unless
                 * systemd's socket unit sets SocketGroup=. */
                .socket_mode = 0666,
                .grace_usec = 30 * USEC_PER_SEC,
                .reconcile_usec = 30 * USEC_PER_SEC,
        };
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        log_setup("kvnetd");
        if (set_string(&config.socket_path, KVNETD_SOCKET_PATH_DEFAULT) < 0 ||
            set_string(&config.state_dir, "/run/kvnetd") < 0 ||
            set_string(&config.table, NFT_TABLE_DEFAULT) < 0)
                return EXIT_FAILURE;
        r = parse_env(&config);
        if (r >= 0)
                r = parse_argv(&config, argc, argv);
        if (r <= 0) {
                config_free(&config);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        /* Before anything reads a request: only the two capabilities. */
        r = caps_setup(&config);
        if (r < 0)
                goto finish;

        r = manager_new(&config, &m);
        if (r < 0) {
                log_error_errno(r, "cannot start: %m");
                goto finish;
        }
        r = manager_start(m);
        if (r < 0) {
                log_error_errno(r, "cannot read or set up the kernel state: %m");
                goto finish;
        }
        if (config.flush_and_exit) {
                log_info("--flush: everything a previous run left is removed");
                goto finish;
        }
        r = bus_server_new(
                m->event, config.socket_path, config.socket_mode,
                &(BusPeerPolicy){.uids = config.allow_uids,
                                 .n_uids = config.n_allow_uids,
                                 .gids = config.allow_gids,
                                 .n_gids = config.n_allow_gids,
                                 /* root may change state only when no client is named */
                                 .allow_root = config.n_allow_uids == 0 && config.n_allow_gids == 0},
                KVNETD_MAX_CONNECTIONS, bus_setup_connection, m, &m->bus);
        if (r < 0) {
                log_error_errno(r, "--socket=%s: cannot listen: %m", config.socket_path);
                goto finish;
        }
        r = introspect_setup(m);
        if (r < 0) {
                log_error_errno(r, "cannot set up read-only introspection: %m");
                goto finish;
        }

        manager_update_status(m);
        daemon_notify_ready(NULL);
        log_info("serving on %s", config.socket_path);
        r = sd_event_loop(m->event);
        daemon_notify_stopping();
        manager_stop(m);
finish:
        m = manager_free(m);
        config_free(&config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
