/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kvpd's parsers of cluster data and operator text
 * (kvpd/annotations.c, kvpd/cluster-cidrs.c, kvpd/config.c).
 *
 * Input: byte 0 picks the mode, the rest is its text:
 *   'A' (and anything unlisted): Service annotations, one "key=value" a line;
 *       a key without '/' means "kube-vip.io/<key>";
 *   'K': a kubeadm ClusterConfiguration (kubeadm_networking_parse);
 *   'C': a JSON list of Node, ServiceCIDR, Pod (kube-controller-manager)
 *       and ConfigMap (kubeadm-config) objects, for cluster_cidrs_compute;
 *   'E': kvpd's environment, one "NAME=value" a line, for config_load.
 * Invariants: parsed annotations stay inside their limits and name the
 * annotation at fault when refused; the cluster networks are aggregated,
 * cover every network a source named, and include both families. */
#include <errno.h>

#include "annotations.h"
#include "cluster-cidrs.h"
#include "config.h"
#include "fuzz-util.h"
#include "log.h"

#define MAX_LINES 64

static size_t split_lines(char *s, char **lines, size_t max)
{
        size_t n = 0;
        char *save = NULL;

        for (char *l = strtok_r(s, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
                lines[n++] = l;
        return n;
}

static void check_annotations(const KubeStringMap *map, int r, const EgressAnnotations *a,
                              const AnnotationError *err)
{
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -E2BIG || r == -EOPNOTSUPP || r == -ENOMEM);
                if (r != -ENOMEM) {
                        /* The message names the annotation at fault first. */
                        fuzz_assert(err->key && annotation_get(map, err->key));
                        fuzz_assert(strncmp(err->message, err->key, strlen(err->key)) == 0);
                }
                return;
        }
        fuzz_assert(r == 0);
        fuzz_assert(a->egress == streq_ptr(annotation_get(map, KV_ANN_EGRESS), "true"));
        fuzz_assert(a->n_ports <= KV_MAX_PORTS && (a->n_ports == 0 || a->ports));
        for (size_t i = 0; i < a->n_ports; i++)
                fuzz_assert(a->ports[i].port != 0 && l4_proto_to_string(a->ports[i].proto));
        fuzz_assert(a->n_allowed <= KV_MAX_NETWORKS && a->n_denied <= KV_MAX_NETWORKS);
        fuzz_assert(a->n_lb_ips <= KV_MAX_LB_IPS);
        fuzz_assert(a->n_lb_ips == 0 || a->has_lb_ips);
        for (size_t i = 0; i < a->n_lb_ips; i++)
                fuzz_assert(a->lb_ips[i].family == AF_INET || a->lb_ips[i].family == AF_INET6);
        /* A Lease is named in the API: both parts must be valid there. */
        fuzz_assert(!a->lease_name || k8s_dns_subdomain_valid(a->lease_name));
        fuzz_assert(!a->lease_namespace || k8s_dns_label_valid(a->lease_namespace));
        fuzz_assert(!a->service_interface || streq(a->service_interface, "auto") ||
                    ifname_valid(a->service_interface));
        /* A present but blank port or allowed-networks list is refused,
         * never read as "everything". */
        if (annotation_get(map, KV_ANN_EGRESS_DESTINATION_PORTS))
                fuzz_assert(a->n_ports > 0);
        if (annotation_get(map, KV_ANN_EGRESS_ALLOWED_NETWORKS))
                fuzz_assert(a->n_allowed > 0);
}

static void run_annotations(char *text)
{
        char *lines[MAX_LINES], *keys[MAX_LINES], *values[MAX_LINES], *owned[MAX_LINES] = {};
        size_t n = split_lines(text, lines, MAX_LINES);
        KubeStringMap map = {.keys = keys, .values = values};
        EgressAnnotations a = {};
        AnnotationError err = {};
        int r;

        for (size_t i = 0; i < n; i++) {
                char *eq = strchr(lines[i], '=');
                if (!eq)
                        continue;
                *eq = '\0';
                keys[map.n] = lines[i];
                if (!strchr(lines[i], '/') && asprintf(&owned[i], KV_ANNOTATION_PREFIX "%s", lines[i]) >= 0)
                        keys[map.n] = owned[i];
                values[map.n++] = eq + 1;
        }
        r = egress_annotations_parse(&map, "default", &a, &err);
        check_annotations(&map, r, &a, &err);
        if (r == 0)
                egress_annotations_done(&a);
        for (size_t i = 0; i < n; i++)
                free(owned[i]);
}

static void run_kubeadm(const char *text)
{
        _cleanup_free_ char *pod = NULL, *svc = NULL;

        if (kubeadm_networking_parse(text, &pod, &svc) < 0)
                return;
        /* What it returns was in the text. */
        fuzz_assert(!pod || strstr(text, pod));
        fuzz_assert(!svc || strstr(text, svc));
}

static bool covered(const IpPrefix *v, size_t n, const IpPrefix *p)
{
        IpAddr a = {.family = p->family, .addr = p->addr};

        for (size_t i = 0; i < n; i++)
                if (v[i].family == p->family && v[i].prefixlen <= p->prefixlen &&
                    ip_prefix_contains(&v[i], &a))
                        return true;
        return false;
}

static void check_aggregated(const IpPrefix *v, size_t n)
{
        _cleanup_free_ IpPrefix *copy = NULL;

        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                        IpAddr a = {.family = v[j].family, .addr = v[j].addr};
                        if (i != j)
                                fuzz_assert(!(v[i].family == v[j].family &&
                                              v[i].prefixlen <= v[j].prefixlen &&
                                              ip_prefix_contains(&v[i], &a)));
                }
        /* Aggregating again changes nothing. */
        copy = malloc(sizeof(IpPrefix) * (n ? n : 1));
        if (!copy)
                return;
        memcpy(copy, v, sizeof(IpPrefix) * n);
        fuzz_assert(ip_prefix_aggregate(copy, n) == n);
        fuzz_assert(memcmp(copy, v, sizeof(IpPrefix) * n) == 0);
}

/* Every single-network entry a source named must end up covered. */
static void check_covers(char **list, const IpPrefix *v, size_t n)
{
        for (char **c = list; c && *c; c++) {
                IpPrefix p;
                if (ip_prefix_parse(*c, AF_UNSPEC, false, &p, NULL) == 0)
                        fuzz_assert(covered(v, n, &p));
        }
}

static void run_cluster_cidrs(const char *text, size_t size)
{
        const KubeNode *nodes[16];
        const KubeServiceCIDR *cidrs[16];
        const KubePod *pods[16];
        KubeNode *nodes_owned[16] = {};
        KubeServiceCIDR *cidrs_owned[16] = {};
        KubePod *pods_owned[16] = {};
        _cleanup_(kube_configmap_freep) KubeConfigMap *kubeadm = NULL;
        ClusterCidrSources src = {.nodes = nodes, .service_cidrs = cidrs, .controller_managers = pods};
        _cleanup_(cluster_cidrs_done) ClusterCidrs out = {};
        json_error_t jerr;
        json_t *list, *o;
        size_t i;
        int r;

        list = json_loadb(text, size, 0, &jerr);
        if (!json_is_array(list)) {
                json_decref(list);
                return;
        }
        json_array_foreach(list, i, o)
        {
                const char *kind = json_string_value(json_object_get(o, "kind"));
                if (streq_ptr(kind, "Node") && src.n_nodes < 16) {
                        if (kube_node_parse(o, &nodes_owned[src.n_nodes], NULL) == 0)
                                nodes[src.n_nodes] = nodes_owned[src.n_nodes], src.n_nodes++;
                } else if (streq_ptr(kind, "ServiceCIDR") && src.n_service_cidrs < 16) {
                        if (kube_servicecidr_parse(o, &cidrs_owned[src.n_service_cidrs], NULL) == 0)
                                cidrs[src.n_service_cidrs] = cidrs_owned[src.n_service_cidrs],
                                src.n_service_cidrs++;
                } else if (streq_ptr(kind, "Pod") && src.n_controller_managers < 16) {
                        if (kube_pod_parse(o, &pods_owned[src.n_controller_managers], NULL) == 0)
                                pods[src.n_controller_managers] = pods_owned[src.n_controller_managers],
                                src.n_controller_managers++;
                } else if (streq_ptr(kind, "ConfigMap") && !kubeadm)
                        (void)kube_configmap_parse(o, &kubeadm, NULL);
        }
        json_decref(list);
        src.kubeadm_config = kubeadm;

        r = cluster_cidrs_compute(&src, &out);
        if (r == 0) {
                bool pod4 = false, pod6 = false, svc4 = false, svc6 = false;
                fuzz_assert(out.n_pod + out.n_service <= CLUSTER_CIDRS_MAX);
                check_aggregated(out.pod, out.n_pod);
                check_aggregated(out.service, out.n_service);
                /* Both families always have an exclusion (detected or default). */
                for (size_t k = 0; k < out.n_pod; k++)
                        pod4 |= out.pod[k].family == AF_INET, pod6 |= out.pod[k].family == AF_INET6;
                for (size_t k = 0; k < out.n_service; k++)
                        svc4 |= out.service[k].family == AF_INET, svc6 |= out.service[k].family == AF_INET6;
                fuzz_assert(pod4 && pod6 && svc4 && svc6);
                for (size_t k = 0; k < src.n_nodes; k++)
                        check_covers(nodes_owned[k]->pod_cidrs, out.pod, out.n_pod);
                for (size_t k = 0; k < src.n_service_cidrs; k++)
                        check_covers(cidrs_owned[k]->cidrs, out.service, out.n_service);
                /* Same sources, same answer. */
                {
                        _cleanup_(cluster_cidrs_done) ClusterCidrs again = {};
                        fuzz_assert(cluster_cidrs_compute(&src, &again) == 0);
                        fuzz_assert(cluster_cidrs_equal(&out, &again));
                }
        } else
                fuzz_assert(r == -E2BIG || r == -ENOMEM);

        for (size_t k = 0; k < 16; k++) {
                kube_node_free(nodes_owned[k]);
                kube_servicecidr_free(cidrs_owned[k]);
                kube_pod_free(pods_owned[k]);
        }
}

static void run_config(char *text)
{
        extern char **environ;
        char **saved = environ;
        char *env[MAX_LINES + 1] = {};
        size_t n = split_lines(text, env, MAX_LINES);
        Config c = {};
        int r;

        /* Swap the environment rather than setenv(): glibc keeps every value
         * ever set, which a fuzzer would turn into a leak. Keep names that
         * would make config_load() probe the file system out. */
        for (size_t i = 0; i < n; i++)
                if (!strchr(env[i], '=') || strncmp(env[i], "CREDENTIALS_DIRECTORY=", 22) == 0)
                        env[i] = (char *)"IGNORED=";
        environ = env;
        r = config_load(&c);
        environ = saved;
        log_set_max_level(LOG_CRIT);
        if (r < 0) {
                /* E2BIG: a CIDR list longer than config_load() takes. */
                fuzz_assert(r == -EINVAL || r == -ERANGE || r == -E2BIG || r == -ENOMEM);
                return;
        }
        fuzz_assert(c.node_name && k8s_dns_subdomain_valid(c.node_name));
        fuzz_assert(c.service_interface &&
                    (streq(c.service_interface, "auto") || ifname_valid(c.service_interface)));
        fuzz_assert(!c.namespace || k8s_dns_label_valid(c.namespace));
        fuzz_assert(c.kvnetd_socket && c.kvelectd_socket);
        fuzz_assert(c.grant_margin_usec <= 60 * USEC_PER_SEC && c.debounce_usec <= 10 * USEC_PER_SEC);
        fuzz_assert(c.stop_timeout_usec >= 100 * USEC_PER_MSEC && c.stop_timeout_usec <= 120 * USEC_PER_SEC);
        fuzz_assert(c.status_retry_usec >= 10 * USEC_PER_MSEC && c.status_retry_usec <= 600 * USEC_PER_SEC);
        config_done(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = NULL;

        if (size < 1 || size > 64 * 1024)
                return 0;
        log_set_max_level(LOG_CRIT);
        text = fuzz_strdup(data + 1, size - 1);
        if (!text)
                return 0;
        switch (data[0]) {
        case 'K':
                run_kubeadm(text);
                break;
        case 'C':
                run_cluster_cidrs((const char *)data + 1, size - 1);
                break;
        case 'E':
                run_config(text);
                break;
        default:
                run_annotations(text);
        }
        return 0;
}
