/* SPDX-License-Identifier: Apache-2.0 */
/* Total parsers of the API objects the daemons read. The apiserver is
 * trusted to be well-formed, but a proxy, a newer server or a fake may not
 * be, so every field is type-checked and a bad one is an error that names
 * its path. Absent and null are the same thing everywhere, as in Go. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube-objects.h"

/* Arrays beyond this are refused rather than allocated: the largest real
 * one (EndpointSlice endpoints) is capped at 1000 by the API. */
#define KUBE_ARRAY_MAX 100000

_printf_(2, 3) static int fail(KubeParseError *err, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                va_start(ap, fmt);
                (void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

static json_t *field(json_t *obj, const char *key)
{
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_null(v) ? NULL : v;
}

/* An optional object: absent/null gives *ret = NULL. */
static int get_object(json_t *obj, const char *key, const char *path, json_t **ret, KubeParseError *err)
{
        json_t *v = field(obj, key);

        if (v && !json_is_object(v))
                return fail(err, "%s%s%s: expected an object", path, *path ? "." : "", key);
        *ret = v;
        return 0;
}

static int get_array(json_t *obj, const char *key, const char *path, json_t **ret, KubeParseError *err)
{
        json_t *v = field(obj, key);

        if (v && !json_is_array(v))
                return fail(err, "%s%s%s: expected a list", path, *path ? "." : "", key);
        if (v && json_array_size(v) > KUBE_ARRAY_MAX)
                return fail(err, "%s%s%s: too many entries", path, *path ? "." : "", key);
        *ret = v;
        return 0;
}

/* The client reads with JSON_ALLOW_NUL (a NUL in one annotation must not
 * stall a watch), so a string may hold one: it is refused here, per field. */
static bool has_nul(json_t *v)
{
        return strlen(json_string_value(v)) != json_string_length(v);
}

static int get_string(json_t *obj, const char *key, const char *path, char **ret, KubeParseError *err)
{
        json_t *v = field(obj, key);
        char *s = NULL;

        if (v) {
                if (!json_is_string(v))
                        return fail(err, "%s%s%s: expected a string", path, *path ? "." : "", key);
                /* Embedded NULs would silently truncate names. */
                if (has_nul(v))
                        return fail(err, "%s%s%s: contains a NUL byte", path, *path ? "." : "", key);
                s = strdup(json_string_value(v));
                if (!s)
                        return -ENOMEM;
        }
        free(*ret);
        *ret = s;
        return 0;
}

static int get_int(json_t *obj, const char *key, const char *path, int64_t min, int64_t max, int64_t *ret,
                   KubeParseError *err)
{
        json_t *v = field(obj, key);

        if (!v) {
                *ret = 0;
                return 0;
        }
        if (!json_is_integer(v))
                return fail(err, "%s%s%s: expected an integer", path, *path ? "." : "", key);
        if (json_integer_value(v) < min || json_integer_value(v) > max)
                return fail(err, "%s%s%s: %" JSON_INTEGER_FORMAT " out of range", path, *path ? "." : "",
                            key, json_integer_value(v));
        *ret = json_integer_value(v);
        return 0;
}

static int get_int32(json_t *obj, const char *key, const char *path, int32_t *ret, KubeParseError *err)
{
        int64_t v;
        int r = get_int(obj, key, path, INT32_MIN, INT32_MAX, &v, err);

        if (r < 0)
                return r;
        *ret = (int32_t)v;
        return 0;
}

/* nil means def, as the API's *bool fields. */
static int get_bool(json_t *obj, const char *key, const char *path, bool def, bool *ret, KubeParseError *err)
{
        json_t *v = field(obj, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_boolean(v))
                return fail(err, "%s%s%s: expected a boolean", path, *path ? "." : "", key);
        *ret = json_is_true(v);
        return 0;
}

static int get_strv(json_t *obj, const char *key, const char *path, char ***ret, KubeParseError *err)
{
        _cleanup_strv_free_ char **l = NULL;
        json_t *a = NULL, *v = NULL;
        size_t i;
        int r;

        r = get_array(obj, key, path, &a, err);
        if (r < 0)
                return r;
        l = calloc(json_array_size(a) + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        json_array_foreach(a, i, v)
        {
                if (!json_is_string(v))
                        return fail(err, "%s%s%s[%zu]: expected a string", path, *path ? "." : "", key, i);
                if (has_nul(v))
                        return fail(err, "%s%s%s[%zu]: contains a NUL byte", path, *path ? "." : "", key, i);
                l[i] = strdup(json_string_value(v));
                if (!l[i])
                        return -ENOMEM;
        }
        strv_free(*ret);
        *ret = TAKE_PTR(l);
        return 0;
}

static void string_map_done(KubeStringMap *m)
{
        for (size_t i = 0; i < m->n; i++) {
                free(m->keys[i]);
                free(m->values[i]);
        }
        m->keys = mfree(m->keys);
        m->values = mfree(m->values);
        m->n = 0;
}

static int get_string_map(json_t *obj, const char *key, const char *path, KubeStringMap *ret,
                          KubeParseError *err)
{
        json_t *o = NULL, *v = NULL;
        const char *k;
        int r;

        r = get_object(obj, key, path, &o, err);
        if (r < 0)
                return r;
        string_map_done(ret);
        if (!o)
                return 0;
        ret->keys = calloc(json_object_size(o) + 1, sizeof(char *));
        ret->values = calloc(json_object_size(o) + 1, sizeof(char *));
        if (!ret->keys || !ret->values)
                return -ENOMEM;
        json_object_foreach(o, k, v)
        {
                /* Go decodes a null map value as "". */
                if (!json_is_string(v) && !json_is_null(v))
                        return fail(err, "%s%s%s[\"%s\"]: expected a string", path, *path ? "." : "", key,
                                    k);
                /* A value cut short at a NUL could, say, drop entries from
                 * an egress-denied-networks list: refuse it. */
                if (json_is_string(v) && has_nul(v))
                        return fail(err, "%s%s%s[\"%s\"]: contains a NUL byte", path, *path ? "." : "", key,
                                    k);
                ret->keys[ret->n] = strdup(k);
                ret->values[ret->n] = strdup(json_is_string(v) ? json_string_value(v) : "");
                ret->n++;
                if (!ret->keys[ret->n - 1] || !ret->values[ret->n - 1])
                        return -ENOMEM;
        }
        return 0;
}

const char *kube_string_map_get(const KubeStringMap *m, const char *key)
{
        if (!m || !key)
                return NULL;
        for (size_t i = 0; i < m->n; i++)
                if (streq(m->keys[i], key))
                        return m->values[i];
        return NULL;
}

static void meta_done(KubeObjectMeta *m)
{
        free(m->name);
        free(m->namespace);
        free(m->uid);
        free(m->resource_version);
        string_map_done(&m->labels);
        string_map_done(&m->annotations);
}

/* Checks the top level and kind (absent in list items), parses metadata. */
static int parse_top(json_t *j, const char *kind, KubeObjectMeta *meta, KubeParseError *err)
{
        _cleanup_free_ char *k = NULL, *deletion = NULL;
        json_t *m = NULL;
        int r;

        if (!json_is_object(j))
                return fail(err, "expected a JSON object");
        r = get_string(j, "kind", "", &k, err);
        if (r < 0)
                return r;
        if (k && kind && !streq(k, kind))
                return fail(err, "kind: expected %s, got \"%s\"", kind, k);
        if (!meta)
                return 0;
        r = get_object(j, "metadata", "", &m, err);
        if (r < 0)
                return r;
        if ((r = get_string(m, "name", "metadata", &meta->name, err)) < 0 ||
            (r = get_string(m, "namespace", "metadata", &meta->namespace, err)) < 0 ||
            (r = get_string(m, "uid", "metadata", &meta->uid, err)) < 0 ||
            (r = get_string(m, "resourceVersion", "metadata", &meta->resource_version, err)) < 0 ||
            (r = get_int(m, "generation", "metadata", INT64_MIN, INT64_MAX, &meta->generation, err)) < 0 ||
            (r = get_string(m, "deletionTimestamp", "metadata", &deletion, err)) < 0 ||
            (r = get_string_map(m, "labels", "metadata", &meta->labels, err)) < 0 ||
            (r = get_string_map(m, "annotations", "metadata", &meta->annotations, err)) < 0)
                return r;
        meta->deleting = deletion != NULL;
        return 0;
}

/* Allocates an array of n elements of size sz, NULL for n == 0. */
static int alloc_array(size_t n, size_t sz, void **ret)
{
        if (n == 0) {
                *ret = NULL;
                return 0;
        }
        *ret = calloc(n, sz);
        return *ret ? 0 : -ENOMEM;
}

KubeService *kube_service_free(KubeService *s)
{
        if (!s)
                return NULL;
        meta_done(&s->meta);
        free(s->type);
        free(s->external_traffic_policy);
        free(s->load_balancer_ip);
        free(s->load_balancer_class);
        strv_free(s->ip_families);
        free(s->ip_family_policy);
        strv_free(s->cluster_ips);
        for (size_t i = 0; i < s->n_ports; i++) {
                free(s->ports[i].name);
                free(s->ports[i].protocol);
        }
        free(s->ports);
        for (size_t i = 0; i < s->n_ingress; i++) {
                free(s->ingress[i].ip);
                free(s->ingress[i].hostname);
                free(s->ingress[i].ip_mode);
        }
        free(s->ingress);
        return mfree(s);
}

int kube_service_parse(json_t *j, KubeService **ret, KubeParseError *err)
{
        _cleanup_(kube_service_freep) KubeService *s = NULL;
        json_t *spec = NULL, *status = NULL, *lb = NULL, *a = NULL, *v = NULL;
        char path[64];
        size_t i;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = parse_top(j, "Service", &s->meta, err);
        if (r < 0)
                return r;
        if ((r = get_object(j, "spec", "", &spec, err)) < 0 ||
            (r = get_string(spec, "type", "spec", &s->type, err)) < 0 ||
            (r = get_string(spec, "externalTrafficPolicy", "spec", &s->external_traffic_policy, err)) < 0 ||
            (r = get_string(spec, "loadBalancerIP", "spec", &s->load_balancer_ip, err)) < 0 ||
            (r = get_string(spec, "loadBalancerClass", "spec", &s->load_balancer_class, err)) < 0 ||
            (r = get_strv(spec, "ipFamilies", "spec", &s->ip_families, err)) < 0 ||
            (r = get_string(spec, "ipFamilyPolicy", "spec", &s->ip_family_policy, err)) < 0 ||
            (r = get_strv(spec, "clusterIPs", "spec", &s->cluster_ips, err)) < 0)
                return r;
        if (!s->cluster_ips[0]) {
                /* Older objects carry only the singular field. */
                _cleanup_free_ char *ip = NULL;

                r = get_string(spec, "clusterIP", "spec", &ip, err);
                if (r < 0)
                        return r;
                if (ip) {
                        char **l = realloc(s->cluster_ips, 2 * sizeof(char *));
                        if (!l)
                                return -ENOMEM;
                        l[0] = TAKE_PTR(ip);
                        l[1] = NULL;
                        s->cluster_ips = l;
                }
        }

        r = get_array(spec, "ports", "spec", &a, err);
        if (r < 0)
                return r;
        r = alloc_array(json_array_size(a), sizeof(KubeServicePort), (void **)&s->ports);
        if (r < 0)
                return r;
        json_array_foreach(a, i, v)
        {
                KubeServicePort *p = &s->ports[i];

                s->n_ports = i + 1;
                (void)snprintf(path, sizeof(path), "spec.ports[%zu]", i);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                if ((r = get_string(v, "name", path, &p->name, err)) < 0 ||
                    (r = get_string(v, "protocol", path, &p->protocol, err)) < 0 ||
                    (r = get_int32(v, "port", path, &p->port, err)) < 0)
                        return r;
        }

        if ((r = get_object(j, "status", "", &status, err)) < 0 ||
            (r = get_object(status, "loadBalancer", "status", &lb, err)) < 0 ||
            (r = get_array(lb, "ingress", "status.loadBalancer", &a, err)) < 0)
                return r;
        r = alloc_array(json_array_size(a), sizeof(KubeLoadBalancerIngress), (void **)&s->ingress);
        if (r < 0)
                return r;
        json_array_foreach(a, i, v)
        {
                KubeLoadBalancerIngress *in = &s->ingress[i];

                s->n_ingress = i + 1;
                (void)snprintf(path, sizeof(path), "status.loadBalancer.ingress[%zu]", i);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                if ((r = get_string(v, "ip", path, &in->ip, err)) < 0 ||
                    (r = get_string(v, "hostname", path, &in->hostname, err)) < 0 ||
                    (r = get_string(v, "ipMode", path, &in->ip_mode, err)) < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

static void endpoint_done(KubeEndpoint *e)
{
        strv_free(e->addresses);
        free(e->node_name);
        free(e->hostname);
        free(e->target_kind);
        free(e->target_namespace);
        free(e->target_name);
        free(e->target_uid);
}

KubeEndpointSlice *kube_endpointslice_free(KubeEndpointSlice *s)
{
        if (!s)
                return NULL;
        meta_done(&s->meta);
        free(s->address_type);
        for (size_t i = 0; i < s->n_endpoints; i++)
                endpoint_done(&s->endpoints[i]);
        free(s->endpoints);
        free(s->service_name);
        return mfree(s);
}

void kube_object_meta_trim(KubeObjectMeta *m)
{
        if (!m)
                return;
        string_map_done(&m->labels);
        string_map_done(&m->annotations);
        m->labels = (KubeStringMap){};
        m->annotations = (KubeStringMap){};
        m->uid = mfree(m->uid);
        m->resource_version = mfree(m->resource_version);
}

void kube_endpointslice_keep_node(KubeEndpointSlice *s, const char *node_name)
{
        size_t n = 0;

        if (!s)
                return;
        kube_object_meta_trim(&s->meta);
        for (size_t i = 0; i < s->n_endpoints; i++) {
                KubeEndpoint *e = &s->endpoints[i];

                if (node_name && e->node_name && streq(e->node_name, node_name)) {
                        s->endpoints[n++] = *e;
                        continue;
                }
                if (e->ready && e->serving && !e->terminating && e->addresses && e->addresses[0])
                        s->remote_ready = true;
                endpoint_done(e);
        }
        s->n_endpoints = n;
        if (n == 0)
                s->endpoints = mfree(s->endpoints);
}

int kube_endpointslice_parse(json_t *j, KubeEndpointSlice **ret, KubeParseError *err)
{
        _cleanup_(kube_endpointslice_freep) KubeEndpointSlice *s = NULL;
        const char *svc;
        json_t *a = NULL, *v = NULL;
        char path[64], cpath[80];
        size_t i;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = parse_top(j, "EndpointSlice", &s->meta, err);
        if (r < 0)
                return r;
        if ((r = get_string(j, "addressType", "", &s->address_type, err)) < 0 ||
            (r = get_array(j, "endpoints", "", &a, err)) < 0)
                return r;
        r = alloc_array(json_array_size(a), sizeof(KubeEndpoint), (void **)&s->endpoints);
        if (r < 0)
                return r;
        json_array_foreach(a, i, v)
        {
                KubeEndpoint *e = &s->endpoints[i];
                json_t *cond = NULL, *ref = NULL;

                s->n_endpoints = i + 1;
                (void)snprintf(path, sizeof(path), "endpoints[%zu]", i);
                (void)snprintf(cpath, sizeof(cpath), "%s.conditions", path);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                if ((r = get_strv(v, "addresses", path, &e->addresses, err)) < 0 ||
                    (r = get_object(v, "conditions", path, &cond, err)) < 0 ||
                    (r = get_bool(cond, "ready", cpath, true, &e->ready, err)) < 0 ||
                    (r = get_bool(cond, "serving", cpath, true, &e->serving, err)) < 0 ||
                    (r = get_bool(cond, "terminating", cpath, false, &e->terminating, err)) < 0 ||
                    (r = get_string(v, "nodeName", path, &e->node_name, err)) < 0 ||
                    (r = get_string(v, "hostname", path, &e->hostname, err)) < 0 ||
                    (r = get_object(v, "targetRef", path, &ref, err)) < 0)
                        return r;
                (void)snprintf(cpath, sizeof(cpath), "%s.targetRef", path);
                if ((r = get_string(ref, "kind", cpath, &e->target_kind, err)) < 0 ||
                    (r = get_string(ref, "namespace", cpath, &e->target_namespace, err)) < 0 ||
                    (r = get_string(ref, "name", cpath, &e->target_name, err)) < 0 ||
                    (r = get_string(ref, "uid", cpath, &e->target_uid, err)) < 0)
                        return r;
        }
        svc = kube_string_map_get(&s->meta.labels, KUBE_LABEL_SERVICE_NAME);
        if (svc) {
                s->service_name = strdup(svc);
                if (!s->service_name)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

KubeNode *kube_node_free(KubeNode *n)
{
        if (!n)
                return NULL;
        meta_done(&n->meta);
        strv_free(n->pod_cidrs);
        for (size_t i = 0; i < n->n_addresses; i++) {
                free(n->addresses[i].type);
                free(n->addresses[i].address);
        }
        free(n->addresses);
        return mfree(n);
}

int kube_node_parse(json_t *j, KubeNode **ret, KubeParseError *err)
{
        _cleanup_(kube_node_freep) KubeNode *n = NULL;
        json_t *spec = NULL, *status = NULL, *a = NULL, *v = NULL;
        char path[64];
        size_t i;
        int r;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        r = parse_top(j, "Node", &n->meta, err);
        if (r < 0)
                return r;
        if ((r = get_object(j, "spec", "", &spec, err)) < 0 ||
            (r = get_strv(spec, "podCIDRs", "spec", &n->pod_cidrs, err)) < 0)
                return r;
        if (!n->pod_cidrs[0]) {
                _cleanup_free_ char *cidr = NULL;

                r = get_string(spec, "podCIDR", "spec", &cidr, err);
                if (r < 0)
                        return r;
                if (cidr) {
                        char **l = realloc(n->pod_cidrs, 2 * sizeof(char *));
                        if (!l)
                                return -ENOMEM;
                        l[0] = TAKE_PTR(cidr);
                        l[1] = NULL;
                        n->pod_cidrs = l;
                }
        }
        if ((r = get_object(j, "status", "", &status, err)) < 0 ||
            (r = get_array(status, "addresses", "status", &a, err)) < 0)
                return r;
        r = alloc_array(json_array_size(a), sizeof(KubeNodeAddress), (void **)&n->addresses);
        if (r < 0)
                return r;
        json_array_foreach(a, i, v)
        {
                n->n_addresses = i + 1;
                (void)snprintf(path, sizeof(path), "status.addresses[%zu]", i);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                if ((r = get_string(v, "type", path, &n->addresses[i].type, err)) < 0 ||
                    (r = get_string(v, "address", path, &n->addresses[i].address, err)) < 0)
                        return r;
        }
        r = get_array(status, "conditions", "status", &a, err);
        if (r < 0)
                return r;
        json_array_foreach(a, i, v)
        {
                _cleanup_free_ char *type = NULL, *st = NULL;

                (void)snprintf(path, sizeof(path), "status.conditions[%zu]", i);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                if ((r = get_string(v, "type", path, &type, err)) < 0 ||
                    (r = get_string(v, "status", path, &st, err)) < 0)
                        return r;
                if (streq_ptr(type, "Ready"))
                        n->ready = streq_ptr(st, "True");
        }
        *ret = TAKE_PTR(n);
        return 0;
}

KubeLease *kube_lease_free(KubeLease *l)
{
        if (!l)
                return NULL;
        meta_done(&l->meta);
        free(l->holder_identity);
        free(l->acquire_time);
        free(l->renew_time);
        return mfree(l);
}

int kube_lease_parse(json_t *j, KubeLease **ret, KubeParseError *err)
{
        _cleanup_(kube_lease_freep) KubeLease *l = NULL;
        json_t *spec = NULL;
        uint64_t t;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        r = parse_top(j, "Lease", &l->meta, err);
        if (r < 0)
                return r;
        if ((r = get_object(j, "spec", "", &spec, err)) < 0 ||
            (r = get_string(spec, "holderIdentity", "spec", &l->holder_identity, err)) < 0 ||
            (r = get_int32(spec, "leaseDurationSeconds", "spec", &l->lease_duration_seconds, err)) < 0 ||
            (r = get_string(spec, "acquireTime", "spec", &l->acquire_time, err)) < 0 ||
            (r = get_string(spec, "renewTime", "spec", &l->renew_time, err)) < 0 ||
            (r = get_int32(spec, "leaseTransitions", "spec", &l->lease_transitions, err)) < 0)
                return r;
        l->has_holder_identity = l->holder_identity != NULL;
        /* The server only ever stores valid MicroTimes; anything else did not
         * come from it. */
        if (l->acquire_time && kube_microtime_parse(l->acquire_time, &t) < 0)
                return fail(err, "spec.acquireTime: not a MicroTime: \"%s\"", l->acquire_time);
        if (l->renew_time && kube_microtime_parse(l->renew_time, &t) < 0)
                return fail(err, "spec.renewTime: not a MicroTime: \"%s\"", l->renew_time);
        *ret = TAKE_PTR(l);
        return 0;
}

KubeConfigMap *kube_configmap_free(KubeConfigMap *c)
{
        if (!c)
                return NULL;
        meta_done(&c->meta);
        string_map_done(&c->data);
        return mfree(c);
}

int kube_configmap_parse(json_t *j, KubeConfigMap **ret, KubeParseError *err)
{
        _cleanup_(kube_configmap_freep) KubeConfigMap *c = NULL;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = parse_top(j, "ConfigMap", &c->meta, err);
        if (r < 0)
                return r;
        r = get_string_map(j, "data", "", &c->data, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

KubePod *kube_pod_free(KubePod *p)
{
        if (!p)
                return NULL;
        meta_done(&p->meta);
        free(p->node_name);
        for (size_t i = 0; i < p->n_containers; i++) {
                free(p->containers[i].name);
                strv_free(p->containers[i].command);
                strv_free(p->containers[i].args);
        }
        free(p->containers);
        free(p->phase);
        strv_free(p->pod_ips);
        return mfree(p);
}

int kube_pod_parse(json_t *j, KubePod **ret, KubeParseError *err)
{
        _cleanup_(kube_pod_freep) KubePod *p = NULL;
        json_t *spec = NULL, *status = NULL, *a = NULL, *v = NULL;
        char path[64];
        size_t i, n = 0;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        r = parse_top(j, "Pod", &p->meta, err);
        if (r < 0)
                return r;
        if ((r = get_object(j, "spec", "", &spec, err)) < 0 ||
            (r = get_string(spec, "nodeName", "spec", &p->node_name, err)) < 0 ||
            (r = get_array(spec, "containers", "spec", &a, err)) < 0)
                return r;
        r = alloc_array(json_array_size(a), sizeof(KubeContainer), (void **)&p->containers);
        if (r < 0)
                return r;
        json_array_foreach(a, i, v)
        {
                KubeContainer *c = &p->containers[i];

                p->n_containers = i + 1;
                (void)snprintf(path, sizeof(path), "spec.containers[%zu]", i);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                if ((r = get_string(v, "name", path, &c->name, err)) < 0 ||
                    (r = get_strv(v, "command", path, &c->command, err)) < 0 ||
                    (r = get_strv(v, "args", path, &c->args, err)) < 0)
                        return r;
        }
        if ((r = get_object(j, "status", "", &status, err)) < 0 ||
            (r = get_string(status, "phase", "status", &p->phase, err)) < 0 ||
            (r = get_array(status, "podIPs", "status", &a, err)) < 0)
                return r;
        p->pod_ips = calloc(json_array_size(a) + 2, sizeof(char *));
        if (!p->pod_ips)
                return -ENOMEM;
        json_array_foreach(a, i, v)
        {
                (void)snprintf(path, sizeof(path), "status.podIPs[%zu]", i);
                if (!json_is_object(v))
                        return fail(err, "%s: expected an object", path);
                r = get_string(v, "ip", path, &p->pod_ips[n], err);
                if (r < 0)
                        return r;
                if (p->pod_ips[n])
                        n++;
        }
        if (n == 0) {
                r = get_string(status, "podIP", "status", &p->pod_ips[0], err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

KubeServiceCIDR *kube_servicecidr_free(KubeServiceCIDR *s)
{
        if (!s)
                return NULL;
        meta_done(&s->meta);
        strv_free(s->cidrs);
        return mfree(s);
}

int kube_servicecidr_parse(json_t *j, KubeServiceCIDR **ret, KubeParseError *err)
{
        _cleanup_(kube_servicecidr_freep) KubeServiceCIDR *s = NULL;
        json_t *spec = NULL;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = parse_top(j, "ServiceCIDR", &s->meta, err);
        if (r < 0)
                return r;
        if ((r = get_object(j, "spec", "", &spec, err)) < 0 ||
            (r = get_strv(spec, "cidrs", "spec", &s->cidrs, err)) < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

KubeStatus *kube_status_free(KubeStatus *s)
{
        if (!s)
                return NULL;
        free(s->status);
        free(s->message);
        free(s->reason);
        return mfree(s);
}

int kube_status_parse(json_t *j, KubeStatus **ret, KubeParseError *err)
{
        _cleanup_(kube_status_freep) KubeStatus *s = NULL;
        json_t *details = NULL;
        int64_t retry;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = parse_top(j, "Status", NULL, err);
        if (r < 0)
                return r;
        if ((r = get_string(j, "status", "", &s->status, err)) < 0 ||
            (r = get_string(j, "message", "", &s->message, err)) < 0 ||
            (r = get_string(j, "reason", "", &s->reason, err)) < 0 ||
            (r = get_int32(j, "code", "", &s->code, err)) < 0 ||
            (r = get_object(j, "details", "", &details, err)) < 0 ||
            (r = get_int(details, "retryAfterSeconds", "details", INT32_MIN, INT32_MAX, &retry, err)) < 0)
                return r;
        s->retry_after_seconds = retry > 0 ? (unsigned)retry : 0;
        *ret = TAKE_PTR(s);
        return 0;
}
