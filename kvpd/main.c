/* SPDX-License-Identifier: Apache-2.0 */
/* kvpd: the egress controller. Kubernetes API in; kvelectd and kvnetd
 * calls and the Service's status out. Unprivileged: it holds the API
 * credentials and no capability. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "log.h"
#include "controller.h"
#include "manager.h"

static void help(void)
{
        printf("Usage: kvpd [OPTIONS]\n\n"
               "The egress controller: kube-vip's egress annotations on LoadBalancer Services become VIPs\n"
               "and SNAT on the node that holds each Service's lease.\n\n"
               "  -h --help       Show this help\n"
               "     --version    Show the version\n\n");
        config_help(stdout);
}

static int parse_argv(int argc, char *argv[])
{
        enum { ARG_VERSION = 0x100 };
        static const struct option options[] = {
                DAEMON_LONG_OPTIONS_HELP_VERSION(ARG_VERSION),
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        daemon_print_version("kvpd");
                        return 0;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("unexpected argument: %s", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        Manager *m = userdata;
        (void)s;
        (void)si;

        daemon_notify_stopping();
        return controller_stop(m);
}

/* SIGTERM starts a clean-up that needs the loop to keep running, rather
 * than leaving it at once. */
static int event_new(Manager *m)
{
        int r;

        r = daemon_event_new_unhandled(&m->event);
        if (r < 0)
                return r;
        return daemon_event_add_stop_handler(m->event, on_signal, m);
}

int main(int argc, char *argv[])
{
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        log_setup("kvpd");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = manager_new(&m);
        if (r < 0)
                return EXIT_FAILURE; /* config_load() said what is wrong */
        r = event_new(m);
        if (r < 0)
                return log_error_errno(r, "cannot set up the event loop: %m"), EXIT_FAILURE;
        r = manager_start(m);
        if (r < 0)
                return EXIT_FAILURE;

        daemon_notify_ready("watching Services");
        r = sd_event_loop(m->event);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
