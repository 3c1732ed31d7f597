/* SPDX-License-Identifier: Apache-2.0 */
/* kvelectd stand-in, built only while shared/kube is not yet a library
 * (see meson.build): it serves nothing. Removed once libkvkube links. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus-server.h"
#include "daemon.h"
#include "log.h"

static void help(void)
{
        printf("Usage: kvelectd [OPTIONS]\n\n"
               "per-service leader election on Kubernetes Leases.\n\n"
               "  -h --help       Show this help\n"
               "     --version    Show the version\n");
}

static int parse_argv(int argc, char *argv[])
{
        enum { ARG_VERSION = 0x100 };
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        daemon_print_version("kvelectd");
                        return 0;
                default:
                        return -EINVAL;
                }
        return 1;
}

int main(int argc, char *argv[])
{
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int r;

        log_setup("kvelectd");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = daemon_event_new(&event);
        if (r < 0)
                return log_error_errno(r, "cannot set up the event loop: %m"), EXIT_FAILURE;

        daemon_notify_ready(NULL);
        r = sd_event_loop(event);
        daemon_notify_stopping();
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
