/* SPDX-License-Identifier: Apache-2.0 */
/* The resources the daemons use and how their URL paths are built. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube-client.h"
#include "kube-internal.h"

const KubeResource kube_resource_services = {"", "v1", "services", "Service", true};
const KubeResource kube_resource_endpointslices = {"discovery.k8s.io", "v1", "endpointslices",
                                                   "EndpointSlice", true};
const KubeResource kube_resource_nodes = {"", "v1", "nodes", "Node", false};
const KubeResource kube_resource_pods = {"", "v1", "pods", "Pod", true};
const KubeResource kube_resource_configmaps = {"", "v1", "configmaps", "ConfigMap", true};
const KubeResource kube_resource_leases = {"coordination.k8s.io", "v1", "leases", "Lease", true};
const KubeResource kube_resource_servicecidrs = {"networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR",
                                                 false};
const KubeResource kube_resource_events = {"", "v1", "events", "Event", true};

const KubeResource *kube_resource_from_plural(const char *plural)
{
        static const KubeResource *const all[] = {
                &kube_resource_services,     &kube_resource_endpointslices, &kube_resource_nodes,
                &kube_resource_pods,         &kube_resource_configmaps,     &kube_resource_leases,
                &kube_resource_servicecidrs, &kube_resource_events,
        };

        if (!plural)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                if (streq(all[i]->plural, plural))
                        return all[i];
        return NULL;
}

/* RFC 3986 unreserved characters pass; everything else is %XX. Used for
 * path segments and query values alike, so '/', '=' and ',' in a selector
 * or a name can never change the request's meaning. */
int kube_url_escape(const char *s, char **ret)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out, *p;

        out = p = malloc(n * 3 + 1);
        if (!out)
                return -ENOMEM;
        for (const unsigned char *i = (const unsigned char *)s; *i; i++) {
                if ((*i >= 'a' && *i <= 'z') || (*i >= 'A' && *i <= 'Z') || (*i >= '0' && *i <= '9') ||
                    *i == '-' || *i == '.' || *i == '_' || *i == '~')
                        *p++ = (char)*i;
                else {
                        *p++ = '%';
                        *p++ = hex[*i >> 4];
                        *p++ = hex[*i & 15];
                }
        }
        *p = '\0';
        *ret = out;
        return 0;
}

/* Appends "/seg" (escaped) to the buffer. */
static int append_segment(KubeBuf *b, const char *seg)
{
        _cleanup_free_ char *e = NULL;
        int r;

        if (isempty(seg) || streq(seg, ".") || streq(seg, ".."))
                return -EINVAL;
        r = kube_url_escape(seg, &e);
        if (r < 0)
                return r;
        r = kube_buf_append(b, "/", 1);
        if (r < 0)
                return r;
        return kube_buf_append(b, e, strlen(e));
}

int kube_resource_path(const KubeResource *res, const char *namespace, const char *name,
                       const char *subresource, char **ret)
{
        _cleanup_(kube_buf_done) KubeBuf b = {};
        int r;

        if (!res || !ret)
                return -EINVAL;
        if (!res->namespaced && namespace)
                return -EINVAL;
        if (subresource && !name)
                return -EINVAL;

        if (isempty(res->group))
                r = kube_buf_printf(&b, "/api/%s", res->version);
        else
                r = kube_buf_printf(&b, "/apis/%s/%s", res->group, res->version);
        if (r < 0)
                return r;
        if (namespace) {
                r = kube_buf_printf(&b, "/namespaces");
                if (r < 0)
                        return r;
                r = append_segment(&b, namespace);
                if (r < 0)
                        return r;
        }
        r = append_segment(&b, res->plural);
        if (r < 0)
                return r;
        if (name) {
                r = append_segment(&b, name);
                if (r < 0)
                        return r;
        }
        if (subresource) {
                r = append_segment(&b, subresource);
                if (r < 0)
                        return r;
        }
        return kube_buf_steal(&b, ret);
}

int kube_query_append(KubeBuf *b, const char *key, const char *value)
{
        _cleanup_free_ char *e = NULL;
        int r;

        r = kube_url_escape(value ?: "", &e);
        if (r < 0)
                return r;
        return kube_buf_printf(b, "%c%s=%s", memchr(b->data ?: "", '?', b->len) ? '&' : '?', key, e);
}
