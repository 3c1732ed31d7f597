/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <unistd.h>

#include "daemon.h"
#include "kvelectd-bus.h"
#include "kvnetd-bus.h"
#include "log.h"

typedef enum VarKind {
        VAR_USED,     /* read by kvpd */
        VAR_ACCEPTED, /* kube-vip's, valid here, no effect in kvpd (said why) */
} VarKind;

static const struct {
        const char *name;
        VarKind kind;
        const char *help;
} vars[] = {
        {"vip_nodename", VAR_USED,
         "this node's name: local-endpoint match and lease identity (default: hostname)"},
        {"vip_servicesinterface", VAR_USED,
         "interface VIPs are bound to, or \"auto\" (default: vip_interface)"},
        {"vip_interface", VAR_USED, "fallback for vip_servicesinterface (default: \"auto\")"},
        {"svc_namespace", VAR_USED, "watch Services of this namespace only (default: all)"},
        {"lb_class_name", VAR_USED, "spec.loadBalancerClass handled (default: " LB_CLASS_NAME_DEFAULT ")"},
        {"lb_class_only", VAR_USED,
         "legacy mode: ignore Services without a loadBalancerClass (default: false)"},
        {"lb_class_legacy_handling", VAR_USED,
         "true: a Service without a class is handled too, unless lb_class_only (default: true)"},
        {"egress_podcidr", VAR_USED, "pod CIDRs never SNATed, comma list (default: detected)"},
        {"egress_servicecidr", VAR_USED, "service CIDRs never SNATed, comma list (default: detected)"},
        {"KUBERNETES_SERVICE_HOST", VAR_USED, "API server address denied by egress-detect-api-server"},
        {"egress_clean", VAR_ACCEPTED, "kvpd always removes stale kvnetd state after its first sync"},
        {"EGRESS_CLEAN", VAR_ACCEPTED, "as egress_clean"},
        {"egress_withnftables", VAR_ACCEPTED, "one datapath (kvnetd's nftables table)"},
        {"egress_enableinternalsnat", VAR_ACCEPTED, "cluster networks are always excluded"},
        {"svc_election", VAR_ACCEPTED, "election is always per service"},
        {"vip_leaseduration", VAR_ACCEPTED, "lease timings belong to kvelectd (validated here)"},
        {"vip_renewdeadline", VAR_ACCEPTED, "as vip_leaseduration"},
        {"vip_retryperiod", VAR_ACCEPTED, "as vip_leaseduration"},
        {"vip_arpRate", VAR_ACCEPTED, "announcements belong to kvnetd"},
        {"KVEGRESS_KUBECONFIG", VAR_USED,
         "kubeconfig path (default: $CREDENTIALS_DIRECTORY/kubeconfig, then admin.conf, ~/.kube/config, "
         "in-cluster)"},
        {"KVEGRESS_KUBE_CONTEXT", VAR_USED, "kubeconfig context (default: current-context)"},
        {"KVEGRESS_KVNETD_SOCKET", VAR_USED, "kvnetd's socket (default " KVNETD_SOCKET_PATH_DEFAULT ")"},
        {"KVEGRESS_KVELECTD_SOCKET", VAR_USED,
         "kvelectd's socket (default " KVELECTD_SOCKET_PATH_DEFAULT ")"},
        {"KVEGRESS_KVPD_SOCKET", VAR_USED,
         "kvpd's own read-only socket for kvctl, unless socket-activated (default: none)"},
        {"KVEGRESS_GRANT_MARGIN", VAR_USED,
         "VIP grants end this long before leadership may (default 500ms)"},
        {"KVEGRESS_DEBOUNCE", VAR_USED, "changes to one service gathered this long (default 5ms)"},
        {"KVEGRESS_STOP_TIMEOUT", VAR_USED, "bound on the clean-up at SIGTERM (default 5s)"},
        {"KVEGRESS_STATUS_RETRY", VAR_USED, "retry period of failed status writes (default 1s)"},
        {"KVEGRESS_LOG_LEVEL", VAR_USED, "debug, info, notice, warning, err"},
        {"KVEGRESS_LOG_TIME", VAR_USED, "1: log lines on stderr start with the UTC time (default: not)"},
};

void config_help(FILE *f)
{
        fprintf(f, "Environment (kube-vip's names where it has one):\n");
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                fprintf(f, "  %-26s %s%s\n", vars[i].name,
                        vars[i].kind == VAR_ACCEPTED ? "accepted, no effect: " : "", vars[i].help);
}

void config_done(Config *c)
{
        if (!c)
                return;
        free(c->node_name);
        free(c->service_interface);
        free(c->namespace);
        free(c->pod_cidrs);
        free(c->service_cidrs);
        free(c->api_servers);
        free(c->kubeconfig);
        free(c->kube_context);
        free(c->kvnetd_socket);
        free(c->kvelectd_socket);
        free(c->kvpd_socket);
        free(c->lb_class_name);
        *c = (Config){};
}

static int dup_env(const char *name, const char *def, char **ret)
{
        const char *v = getenv(name);
        char *s;

        if (isempty(v))
                v = def;
        if (!v) {
                *ret = NULL;
                return 0;
        }
        s = strdup(v);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int cidr_env(const char *name, IpPrefix **ret, size_t *ret_n)
{
        const char *v = getenv(name);
        ParseError e = {};
        int r;

        if (isempty(v))
                return 0;
        r = ip_prefix_list_parse(v, AF_UNSPEC, 64, ret, ret_n, &e);
        if (r < 0)
                return log_error_errno(r, "%s=%s: %s", name, v, e.message);
        return 0;
}

static int interface_load(Config *c)
{
        const char *names[] = {"vip_servicesinterface", "vip_interface", NULL};
        const char *which = NULL, *v = env_first(names, &which);

        if (isempty(v))
                v = "auto";
        else if (!streq(v, "auto") && !ifname_valid(v))
                return log_error_errno(EINVAL, "%s=%s: not an interface name (or \"auto\")", which, v);
        c->service_interface = strdup(v);
        return c->service_interface ? 0 : -ENOMEM;
}

static int api_servers_load(Config *c)
{
        const char *v = getenv("KUBERNETES_SERVICE_HOST");
        IpAddr a;

        /* A name is not an error here: it is only used as a deny entry, and
         * a pod's own lookup of it is out of our reach. */
        if (isempty(v) || ip_addr_parse(v, AF_UNSPEC, &a, NULL) < 0)
                return 0;
        c->api_servers = calloc(1, sizeof(IpAddr));
        if (!c->api_servers)
                return -ENOMEM;
        c->api_servers[0] = a;
        c->n_api_servers = 1;
        return 0;
}

int config_load(Config *ret)
{
        _cleanup_(config_done) Config c = {
                .grant_margin_usec = CONFIG_GRANT_MARGIN_DEFAULT_USEC,
                .debounce_usec = CONFIG_DEBOUNCE_DEFAULT_USEC,
                .stop_timeout_usec = CONFIG_STOP_TIMEOUT_DEFAULT_USEC,
                .status_retry_usec = CONFIG_STATUS_RETRY_DEFAULT_USEC,
        };
        const char *kubeconfig_names[] = {"KVEGRESS_KUBECONFIG", NULL};
        const char *v;
        uint64_t u;
        bool b;
        int r;

        r = node_name_load(NULL, NULL, &c.node_name, NULL);
        if (r < 0)
                return r;
        r = interface_load(&c);
        if (r < 0)
                return r;

        v = getenv("svc_namespace");
        if (!isempty(v)) {
                if (!k8s_dns_label_valid(v))
                        return log_error_errno(EINVAL, "svc_namespace=%s: not a valid namespace", v);
                c.namespace = strdup(v);
                if (!c.namespace)
                        return -ENOMEM;
        }

        /* kube-vip reads lb_class_name with LookupEnv: set but empty is a
         * valid name (then only class-less Services match, in strict mode). */
        c.lb_class_name = strdup(getenv("lb_class_name") ?: LB_CLASS_NAME_DEFAULT);
        if (!c.lb_class_name)
                return -ENOMEM;
        c.lb_class = (LbClassFilter){.name = c.lb_class_name, .legacy = true};
        if (env_get_bool("lb_class_only", &b) < 0)
                return -EINVAL;
        else if (getenv("lb_class_only"))
                c.lb_class.only = b;
        if (env_get_bool("lb_class_legacy_handling", &b) < 0)
                return -EINVAL;
        else if (getenv("lb_class_legacy_handling"))
                c.lb_class.legacy = b;

        r = cidr_env("egress_podcidr", &c.pod_cidrs, &c.n_pod_cidrs);
        if (r < 0)
                return r;
        r = cidr_env("egress_servicecidr", &c.service_cidrs, &c.n_service_cidrs);
        if (r < 0)
                return r;
        r = api_servers_load(&c);
        if (r < 0)
                return r;

        v = env_first(kubeconfig_names, NULL);
        if (isempty(v)) {
                r = credential_path("kubeconfig", &c.kubeconfig);
                if (r < 0)
                        return r;
        } else if (!(c.kubeconfig = strdup(v)))
                return -ENOMEM;
        r = dup_env("KVEGRESS_KUBE_CONTEXT", NULL, &c.kube_context);
        if (r < 0)
                return r;
        r = dup_env("KVEGRESS_KVNETD_SOCKET", KVNETD_SOCKET_PATH_DEFAULT, &c.kvnetd_socket);
        if (r < 0)
                return r;
        r = dup_env("KVEGRESS_KVELECTD_SOCKET", KVELECTD_SOCKET_PATH_DEFAULT, &c.kvelectd_socket);
        if (r < 0)
                return r;
        r = dup_env("KVEGRESS_KVPD_SOCKET", NULL, &c.kvpd_socket);
        if (r < 0)
                return r;

        r = env_get_duration_usec("KVEGRESS_GRANT_MARGIN", 0, 60 * USEC_PER_SEC, &c.grant_margin_usec);
        if (r < 0)
                return r;
        r = env_get_duration_usec("KVEGRESS_DEBOUNCE", 0, 10 * USEC_PER_SEC, &c.debounce_usec);
        if (r < 0)
                return r;
        r = env_get_duration_usec("KVEGRESS_STOP_TIMEOUT", 100 * USEC_PER_MSEC, 120 * USEC_PER_SEC,
                                  &c.stop_timeout_usec);
        if (r < 0)
                return r;
        r = env_get_duration_usec("KVEGRESS_STATUS_RETRY", 10 * USEC_PER_MSEC, 600 * USEC_PER_SEC,
                                  &c.status_retry_usec);
        if (r < 0)
                return r;

        /* Accepted for compatibility; still validated, so a typo in a shared
         * environment file is found by whichever daemon reads it first. */
        r = env_get_bool("egress_clean", &c.egress_clean);
        if (r < 0)
                return r;
        r = env_get_bool("EGRESS_CLEAN", &c.egress_clean);
        if (r < 0)
                return r;
        for (const char *const *n = (const char *const[]){"egress_withnftables", "egress_enableinternalsnat",
                                                          "svc_election", NULL};
             *n; n++) {
                r = env_get_bool(*n, &b);
                if (r < 0)
                        return r;
        }
        for (const char *const *n = (const char *const[]){"vip_leaseduration", "vip_renewdeadline",
                                                          "vip_retryperiod", NULL};
             *n; n++) {
                r = env_get_duration_usec(*n, USEC_PER_MSEC, 3600 * USEC_PER_SEC, &u);
                if (r < 0)
                        return r;
        }
        r = env_get_uint64("vip_arpRate", 0, UINT32_MAX, &u);
        if (r < 0)
                return r;
        if (r > 0)
                log_debug("vip_arpRate is ignored: kvnetd announces VIPs itself");

        *ret = c;
        c = (Config){};
        return 0;
}
