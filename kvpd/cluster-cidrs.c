/* SPDX-License-Identifier: Apache-2.0 */
#include "cluster-cidrs.h"

#include <ctype.h>
#include <stdio.h>

#include "array.h"
#include "log.h"

typedef struct PrefixSet {
        IpPrefix *v;
        size_t n, allocated;
} PrefixSet;

static int prefix_set_add(PrefixSet *s, const IpPrefix *p)
{
        if (ARRAY_RESERVE(s->v, s->allocated, s->n + 1) < 0)
                return -ENOMEM;
        s->v[s->n++] = *p;
        return 0;
}

/* API objects and kubeadm's YAML are cluster data, not this node's operator
 * input: an entry we cannot read is logged and skipped, the rest still
 * counts. */
static int prefix_set_add_list(PrefixSet *s, const char *list, const char *what)
{
        _cleanup_strv_free_ char **l = NULL;
        ParseError e = {};
        int r;

        if (isempty(list))
                return 0;
        r = split_comma_list(list, 64, &l, &e);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_debug("%s: ignoring \"%s\": %s", what, list, e.message);
                return 0;
        }
        for (char **i = l; *i; i++) {
                IpPrefix p;
                r = ip_prefix_parse(*i, AF_UNSPEC, false, &p, &e);
                if (r < 0) {
                        log_debug("%s: ignoring \"%s\": %s", what, *i, e.message);
                        continue;
                }
                r = prefix_set_add(s, &p);
                if (r < 0)
                        return r;
        }
        return 0;
}

static IpPrefix prefix_parent(const IpPrefix *p)
{
        IpPrefix q = *p;
        unsigned bit = p->prefixlen - 1; /* the bit that tells the halves apart */

        q.prefixlen = p->prefixlen - 1;
        q.addr.bytes[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        return q;
}

size_t ip_prefix_aggregate(IpPrefix *v, size_t n)
{
        bool changed = true;

        while (changed && n > 0) {
                size_t k = 0, before = n;

                /* Sorted, and what another prefix covers dropped; then
                 * siblings are merged into their parent. */
                prefixes_normalize(v, &n);
                changed = n != before;
                for (size_t i = 0; i < n; i++) {
                        if (i + 1 < n && v[i].family == v[i + 1].family &&
                            v[i].prefixlen == v[i + 1].prefixlen && v[i].prefixlen > 0) {
                                IpPrefix a = prefix_parent(&v[i]), b = prefix_parent(&v[i + 1]);
                                if (ip_prefix_equal(&a, &b)) {
                                        v[k++] = a;
                                        i++;
                                        changed = true;
                                        continue;
                                }
                        }
                        v[k++] = v[i];
                }
                n = k;
        }
        return n;
}

static bool has_family(const IpPrefix *v, size_t n, int family)
{
        for (size_t i = 0; i < n; i++)
                if (v[i].family == family)
                        return true;
        return false;
}

static char *trim_value(char *s)
{
        char *e;

        while (isspace((unsigned char)*s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        if (e - s >= 2 && (*s == '"' || *s == '\'') && e[-1] == *s) {
                e[-1] = '\0';
                s++;
        }
        return s;
}

int kubeadm_networking_parse(const char *yaml, char **ret_pod_subnet, char **ret_service_subnet)
{
        _cleanup_free_ char *copy = NULL, *pod = NULL, *svc = NULL;
        bool in_networking = false;
        char *save = NULL;

        /* A line scan, not a YAML parser: kubeadm writes this document
         * itself (block style, two-space indent), and all we need is two
         * scalars under the top-level "networking:" key. */
        if (!yaml) {
                *ret_pod_subnet = *ret_service_subnet = NULL;
                return 0;
        }
        copy = strdup(yaml);
        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *p = line, *colon;
                char **target = NULL;

                if (line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '\0') {
                        in_networking = strncmp(line, "networking:", 11) == 0;
                        continue;
                }
                if (!in_networking)
                        continue;
                while (*p == ' ' || *p == '\t')
                        p++;
                colon = strchr(p, ':');
                if (!colon)
                        continue;
                if ((size_t)(colon - p) == strlen("podSubnet") && strncmp(p, "podSubnet", 9) == 0)
                        target = &pod;
                else if ((size_t)(colon - p) == strlen("serviceSubnet") &&
                         strncmp(p, "serviceSubnet", 13) == 0)
                        target = &svc;
                else
                        continue;
                free(*target);
                *target = strdup(trim_value(colon + 1));
                if (!*target)
                        return -ENOMEM;
        }
        *ret_pod_subnet = TAKE_PTR(pod);
        *ret_service_subnet = TAKE_PTR(svc);
        return 0;
}

/* "--flag=value" or "--flag value" in a container's command and args. */
static const char *container_flag(const KubeContainer *c, const char *flag)
{
        size_t l = strlen(flag);

        char **lists[] = {c->command, c->args};

        for (size_t k = 0; k < ELEMENTSOF(lists); k++)
                for (char **a = lists[k]; a && *a; a++) {
                        if (strncmp(*a, flag, l) != 0)
                                continue;
                        if ((*a)[l] == '=')
                                return *a + l + 1;
                        if ((*a)[l] == '\0' && a[1])
                                return a[1];
                }
        return NULL;
}

static int select_family(PrefixSet *out, const IpPrefix *env, size_t n_env, const PrefixSet *detected,
                         int family, const char *fallback, unsigned defaulted_bit, unsigned *defaulted)
{
        IpPrefix p;
        bool found = false;
        int r;

        if (has_family(env, n_env, family)) {
                for (size_t i = 0; i < n_env; i++)
                        if (env[i].family == family && (r = prefix_set_add(out, &env[i])) < 0)
                                return r;
                return 0;
        }
        for (size_t i = 0; i < detected->n; i++)
                if (detected->v[i].family == family) {
                        r = prefix_set_add(out, &detected->v[i]);
                        if (r < 0)
                                return r;
                        found = true;
                }
        if (found)
                return 0;
        r = ip_prefix_parse(fallback, family, false, &p, NULL);
        if (r < 0)
                return r;
        *defaulted |= defaulted_bit;
        return prefix_set_add(out, &p);
}

int cluster_cidrs_compute(const ClusterCidrSources *src, ClusterCidrs *ret)
{
        PrefixSet pod = {}, svc = {}, pod_out = {}, svc_out = {};
        _cleanup_free_ char *kubeadm_pod = NULL, *kubeadm_svc = NULL;
        unsigned defaulted = 0;
        int r;

        for (size_t i = 0; i < src->n_service_cidrs; i++)
                for (char **c = src->service_cidrs[i]->cidrs; c && *c; c++)
                        if ((r = prefix_set_add_list(&svc, *c, "ServiceCIDR")) < 0)
                                goto finish;
        for (size_t i = 0; i < src->n_nodes; i++)
                for (char **c = src->nodes[i]->pod_cidrs; c && *c; c++)
                        if ((r = prefix_set_add_list(&pod, *c, "Node podCIDRs")) < 0)
                                goto finish;
        for (size_t i = 0; i < src->n_controller_managers; i++)
                for (size_t j = 0; j < src->controller_managers[i]->n_containers; j++) {
                        const KubeContainer *c = &src->controller_managers[i]->containers[j];
                        r = prefix_set_add_list(&svc, container_flag(c, "--service-cluster-ip-range"),
                                                "kube-controller-manager --service-cluster-ip-range");
                        if (r < 0)
                                goto finish;
                        r = prefix_set_add_list(&pod, container_flag(c, "--cluster-cidr"),
                                                "kube-controller-manager --cluster-cidr");
                        if (r < 0)
                                goto finish;
                }
        if (src->kubeadm_config) {
                const KubeStringMap *d = &src->kubeadm_config->data;
                const char *yaml = NULL;

                for (size_t i = 0; i < d->n; i++)
                        if (streq_ptr(d->keys[i], "ClusterConfiguration"))
                                yaml = d->values[i];
                r = kubeadm_networking_parse(yaml, &kubeadm_pod, &kubeadm_svc);
                if (r < 0)
                        goto finish;
                if ((r = prefix_set_add_list(&pod, kubeadm_pod, "kubeadm-config podSubnet")) < 0 ||
                    (r = prefix_set_add_list(&svc, kubeadm_svc, "kubeadm-config serviceSubnet")) < 0)
                        goto finish;
        }

        if ((r = select_family(&pod_out, src->env_pod, src->n_env_pod, &pod, AF_INET,
                               CLUSTER_DEFAULT_POD_CIDR4, CLUSTER_DEFAULTED_POD4, &defaulted)) < 0 ||
            (r = select_family(&pod_out, src->env_pod, src->n_env_pod, &pod, AF_INET6,
                               CLUSTER_DEFAULT_POD_CIDR6, CLUSTER_DEFAULTED_POD6, &defaulted)) < 0 ||
            (r = select_family(&svc_out, src->env_service, src->n_env_service, &svc, AF_INET,
                               CLUSTER_DEFAULT_SERVICE_CIDR4, CLUSTER_DEFAULTED_SVC4, &defaulted)) < 0 ||
            (r = select_family(&svc_out, src->env_service, src->n_env_service, &svc, AF_INET6,
                               CLUSTER_DEFAULT_SERVICE_CIDR6, CLUSTER_DEFAULTED_SVC6, &defaulted)) < 0)
                goto finish;

        pod_out.n = ip_prefix_aggregate(pod_out.v, pod_out.n);
        svc_out.n = ip_prefix_aggregate(svc_out.v, svc_out.n);
        if (pod_out.n + svc_out.n > CLUSTER_CIDRS_MAX) {
                r = -E2BIG;
                goto finish;
        }
        *ret = (ClusterCidrs){
                .pod = TAKE_PTR(pod_out.v),
                .n_pod = pod_out.n,
                .service = TAKE_PTR(svc_out.v),
                .n_service = svc_out.n,
                .defaulted = defaulted,
        };
        r = 0;
finish:
        free(pod.v);
        free(svc.v);
        free(pod_out.v);
        free(svc_out.v);
        return r;
}

void cluster_cidrs_done(ClusterCidrs *c)
{
        if (!c)
                return;
        free(c->pod);
        free(c->service);
        *c = (ClusterCidrs){};
}

bool cluster_cidrs_equal(const ClusterCidrs *a, const ClusterCidrs *b)
{
        if (a->n_pod != b->n_pod || a->n_service != b->n_service || a->defaulted != b->defaulted)
                return false;
        for (size_t i = 0; i < a->n_pod; i++)
                if (!ip_prefix_equal(&a->pod[i], &b->pod[i]))
                        return false;
        for (size_t i = 0; i < a->n_service; i++)
                if (!ip_prefix_equal(&a->service[i], &b->service[i]))
                        return false;
        return true;
}
