/* SPDX-License-Identifier: Apache-2.0 */
/* The typed object parsers (kube-objects.c) over every fixture, and over
 * every fixture with each value in turn replaced by null and by a value of
 * the wrong type: nulls must be accepted, wrong types must either be
 * ignored (a field we do not read) or fail naming the field. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube-objects.h"

#define FIXTURES KUBE_FIXTURES_DIR

/* Parses j as kind; returns the parser's result. */
static int parse_kind(const char *kind, json_t *j, KubeParseError *err)
{
        int r;

        if (streq(kind, "Service")) {
                KubeService *s = NULL;
                r = kube_service_parse(j, &s, err);
                kube_service_free(s);
        } else if (streq(kind, "EndpointSlice")) {
                KubeEndpointSlice *s = NULL;
                r = kube_endpointslice_parse(j, &s, err);
                kube_endpointslice_free(s);
        } else if (streq(kind, "Node")) {
                KubeNode *n = NULL;
                r = kube_node_parse(j, &n, err);
                kube_node_free(n);
        } else if (streq(kind, "Lease")) {
                KubeLease *l = NULL;
                r = kube_lease_parse(j, &l, err);
                kube_lease_free(l);
        } else if (streq(kind, "ConfigMap")) {
                KubeConfigMap *c = NULL;
                r = kube_configmap_parse(j, &c, err);
                kube_configmap_free(c);
        } else if (streq(kind, "Pod")) {
                KubePod *p = NULL;
                r = kube_pod_parse(j, &p, err);
                kube_pod_free(p);
        } else if (streq(kind, "ServiceCIDR")) {
                KubeServiceCIDR *s = NULL;
                r = kube_servicecidr_parse(j, &s, err);
                kube_servicecidr_free(s);
        } else if (streq(kind, "Status")) {
                KubeStatus *s = NULL;
                r = kube_status_parse(j, &s, err);
                kube_status_free(s);
        } else
                r = -EOPNOTSUPP;
        return r;
}

static json_t *load(const char *rel)
{
        char path[1024];
        json_error_t e;
        json_t *j;

        (void)snprintf(path, sizeof(path), "%s/%s", FIXTURES, rel);
        j = json_load_file(path, 0, &e);
        ck_assert_msg(j, "%s: %s", path, e.text);
        return j;
}

/* Every JSON fixture whose kind we parse, plus the items of lists. */
static const char *const fixtures[] = {
        "core.v1.Service.json",
        "discovery.k8s.io.v1.EndpointSlice.json",
        "core.v1.Node.json",
        "coordination.k8s.io.v1.Lease.json",
        "core.v1.ConfigMap.json",
        "core.v1.Pod.json",
        "networking.k8s.io.v1.ServiceCIDR.json",
        "core.v1.Status.json",
        "realistic/service-loadbalancer-egress.json",
        "realistic/servicelist.json",
        "realistic/endpointslice-ipv4.json",
        "realistic/endpointslice-empty.json",
        "realistic/lease-held.json",
        "realistic/lease-released.json",
        "realistic/lease-create-request.json",
        "realistic/configmap-kubeadm-config.json",
        "realistic/configmap-kube-proxy.json",
        "realistic/node-worker.json",
};

static const char *kind_of(json_t *j)
{
        return json_string_value(json_object_get(j, "kind"));
}

START_TEST(test_fixture_parses)
{
        json_t *j = load(fixtures[_i]);
        KubeParseError err = {};
        const char *kind = kind_of(j);

        ck_assert_ptr_nonnull(kind);
        if (streq(kind, "ServiceList")) {
                json_t *item;
                size_t i;

                json_array_foreach(json_object_get(j, "items"), i, item)
                        ck_assert_msg(parse_kind("Service", item, &err) == 0, "%s items[%zu]: %s",
                                      fixtures[_i], i, err.message);
        } else
                ck_assert_msg(parse_kind(kind, j, &err) == 0, "%s: %s", fixtures[_i], err.message);
        json_decref(j);
}
END_TEST

/* Every .json under the fixture folders is in the table above, or is a kind
 * we have no parser for on purpose. */
START_TEST(test_fixture_list_complete)
{
        static const char *const dirs[] = {"", "realistic/"};
        static const char *const unparsed[] = {"core.v1.Endpoints.json", "core.v1.WatchEvent.json"};

        for (size_t d = 0; d < ELEMENTSOF(dirs); d++) {
                char path[1024];
                struct dirent *de;
                DIR *dir;

                (void)snprintf(path, sizeof(path), "%s/%s", FIXTURES, dirs[d]);
                dir = opendir(path);
                ck_assert_ptr_nonnull(dir);
                while ((de = readdir(dir))) {
                        char rel[512];
                        bool found = false;
                        size_t n = strlen(de->d_name);

                        if (n < 5 || !streq(de->d_name + n - 5, ".json"))
                                continue;
                        (void)snprintf(rel, sizeof(rel), "%s%s", dirs[d], de->d_name);
                        for (size_t i = 0; i < ELEMENTSOF(fixtures); i++)
                                found = found || streq(fixtures[i], rel);
                        for (size_t i = 0; i < ELEMENTSOF(unparsed); i++)
                                found = found || streq(unparsed[i], rel);
                        ck_assert_msg(found, "fixture %s is not tested", rel);
                }
                closedir(dir);
        }
}
END_TEST

START_TEST(test_service_values)
{
        json_t *j = load("realistic/service-loadbalancer-egress.json");
        KubeService *s = NULL;
        KubeParseError err = {};

        ck_assert_int_eq(kube_service_parse(j, &s, &err), 0);
        ck_assert_str_eq(s->meta.name, "egress-demo");
        ck_assert_str_eq(s->meta.namespace, "default");
        ck_assert_str_eq(s->meta.uid, "5f0c3c1e-8d2b-4d8e-9a55-3f1f2b6a7c10");
        ck_assert_str_eq(s->meta.resource_version, "184467");
        ck_assert_str_eq(kube_string_map_get(&s->meta.annotations, "kube-vip.io/egress"), "true");
        ck_assert_str_eq(s->type, "LoadBalancer");
        ck_assert_str_eq(s->external_traffic_policy, "Local");
        ck_assert_str_eq(s->load_balancer_ip, "192.168.10.220");
        ck_assert_str_eq(s->ip_families[0], "IPv4");
        ck_assert_ptr_null(s->ip_families[1]);
        ck_assert_str_eq(s->cluster_ips[0], "10.103.42.7");
        ck_assert_uint_eq(s->n_ports, 1);
        ck_assert_int_eq(s->ports[0].port, 80);
        ck_assert_str_eq(s->ports[0].protocol, "TCP");
        ck_assert_uint_eq(s->n_ingress, 1);
        ck_assert_str_eq(s->ingress[0].ip, "192.168.10.220");
        ck_assert_str_eq(s->ingress[0].ip_mode, "VIP");
        kube_service_free(s);
        json_decref(j);
}
END_TEST

START_TEST(test_endpointslice_values)
{
        json_t *j = load("realistic/endpointslice-ipv4.json");
        KubeEndpointSlice *s = NULL;

        ck_assert_int_eq(kube_endpointslice_parse(j, &s, NULL), 0);
        ck_assert_str_eq(s->address_type, "IPv4");
        ck_assert_str_eq(s->service_name, "egress-demo");
        ck_assert_uint_eq(s->n_endpoints, 2);
        ck_assert_str_eq(s->endpoints[0].addresses[0], "10.244.2.17");
        ck_assert(s->endpoints[0].ready && s->endpoints[0].serving && !s->endpoints[0].terminating);
        ck_assert_str_eq(s->endpoints[0].node_name, "worker-2");
        ck_assert_str_eq(s->endpoints[0].target_kind, "Pod");
        ck_assert(!s->endpoints[1].ready && s->endpoints[1].serving && s->endpoints[1].terminating);
        kube_endpointslice_free(s);
        json_decref(j);

        j = load("realistic/endpointslice-empty.json");
        ck_assert_int_eq(kube_endpointslice_parse(j, &s, NULL), 0);
        ck_assert_uint_eq(s->n_endpoints, 0);
        kube_endpointslice_free(s);
        json_decref(j);

        /* nil conditions take the API defaults. */
        j = json_loads("{\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],"
                       "\"conditions\":{}}]}",
                       0, NULL);
        ck_assert_int_eq(kube_endpointslice_parse(j, &s, NULL), 0);
        ck_assert(s->endpoints[0].ready && s->endpoints[0].serving && !s->endpoints[0].terminating);
        kube_endpointslice_free(s);
        json_decref(j);
}
END_TEST

START_TEST(test_lease_node_values)
{
        json_t *j = load("realistic/lease-held.json");
        KubeLease *l = NULL;
        KubeNode *n = NULL;

        ck_assert_int_eq(kube_lease_parse(j, &l, NULL), 0);
        ck_assert_str_eq(l->holder_identity, "worker-2");
        ck_assert(l->has_holder_identity);
        ck_assert_int_eq(l->lease_duration_seconds, 5);
        ck_assert_int_eq(l->lease_transitions, 3);
        ck_assert_str_eq(l->renew_time, "2025-05-12T09:02:11.004871Z");
        kube_lease_free(l);
        json_decref(j);

        j = load("realistic/lease-released.json");
        ck_assert_int_eq(kube_lease_parse(j, &l, NULL), 0);
        ck_assert(l->has_holder_identity);
        ck_assert_str_eq(l->holder_identity, "");
        ck_assert_int_eq(l->lease_duration_seconds, 1);
        kube_lease_free(l);
        json_decref(j);

        j = json_loads("{\"kind\":\"Lease\",\"spec\":{\"renewTime\":\"2025-05-12T09:02:11.00487Z\"}}", 0,
                       NULL);
        KubeParseError err = {};
        ck_assert_int_lt(kube_lease_parse(j, &l, &err), 0);
        ck_assert_msg(strstr(err.message, "spec.renewTime"), "%s", err.message);
        json_decref(j);

        j = load("realistic/node-worker.json");
        ck_assert_int_eq(kube_node_parse(j, &n, NULL), 0);
        ck_assert_str_eq(n->meta.name, "worker-2");
        ck_assert_ptr_null(n->meta.namespace);
        ck_assert_str_eq(n->pod_cidrs[0], "10.244.2.0/24");
        ck_assert_str_eq(n->pod_cidrs[1], "fd00:10:244:2::/64");
        ck_assert(n->ready);
        ck_assert_uint_ge(n->n_addresses, 1);
        ck_assert_str_eq(n->addresses[0].type, "InternalIP");
        kube_node_free(n);
        json_decref(j);
}
END_TEST

START_TEST(test_status_values)
{
        json_t *j = json_loads(
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
                "\"message\":\"Timeout: Too large resource version: 9, current: 8\",\"reason\":"
                "\"Timeout\",\"details\":{\"causes\":[{\"reason\":\"ResourceVersionTooLarge\"}],"
                "\"retryAfterSeconds\":1},\"code\":504}",
                0, NULL);
        KubeStatus *s = NULL;

        ck_assert_int_eq(kube_status_parse(j, &s, NULL), 0);
        ck_assert_int_eq(s->code, 504);
        ck_assert_uint_eq(s->retry_after_seconds, 1);
        ck_assert_str_eq(s->reason, "Timeout");
        kube_status_free(s);
        json_decref(j);
}
END_TEST

/* Calls fn for each value in the tree, with its path ("spec.ports[0].port"). */
typedef void (*VisitFn)(json_t *root, json_t *parent, const char *key, size_t index, const char *path,
                        void *userdata);

static void visit(json_t *root, json_t *node, const char *path, VisitFn fn, void *userdata)
{
        char sub[1024];
        const char *k;
        json_t *v;
        size_t i;

        if (json_is_object(node))
                json_object_foreach(node, k, v)
                {
                        (void)snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
                        fn(root, node, k, 0, sub, userdata);
                        visit(root, v, sub, fn, userdata);
                }
        else if (json_is_array(node))
                json_array_foreach(node, i, v)
                {
                        (void)snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                        fn(root, node, NULL, i, sub, userdata);
                        visit(root, v, sub, fn, userdata);
                }
}

typedef struct MutateCtx {
        const char *kind;
        const char *file;
        unsigned tried, failed_ok;
} MutateCtx;

static void with_replacement(json_t *root, json_t *parent, const char *key, size_t index, json_t *repl,
                             const char *path, MutateCtx *ctx, bool must_pass)
{
        json_t *orig = key ? json_object_get(parent, key) : json_array_get(parent, index);
        KubeParseError err = {};
        int r;

        json_incref(orig);
        if (key)
                (void)json_object_set(parent, key, repl);
        else
                (void)json_array_set(parent, index, repl);
        r = parse_kind(ctx->kind, root, &err);
        if (key)
                (void)json_object_set(parent, key, orig);
        else
                (void)json_array_set(parent, index, orig);
        json_decref(orig);

        ctx->tried++;
        if (must_pass)
                ck_assert_msg(r == 0, "%s: null at %s rejected: %s", ctx->file, path, err.message);
        else if (r < 0) {
                /* The message names the field: its last path component at least. */
                const char *last = strrchr(path, '.');
                char comp[256];

                (void)snprintf(comp, sizeof(comp), "%s", last ? last + 1 : path);
                if (strchr(comp, '['))
                        *strchr(comp, '[') = '\0';
                ck_assert_int_eq(r, -EBADMSG);
                ck_assert_msg(strstr(err.message, comp) || streq(path, ""),
                              "%s: wrong type at %s: message \"%s\"", ctx->file, path, err.message);
                ctx->failed_ok++;
        }
}

static void mutate_null(json_t *root, json_t *parent, const char *key, size_t index, const char *path,
                        void *userdata)
{
        MutateCtx *ctx = userdata;

        /* "kind" is how the test picks the parser; an array element of null
         * is not something the API sends in a list of objects. */
        if (key && streq(key, "kind") && parent == root)
                return;
        if (!key)
                return;
        with_replacement(root, parent, key, index, json_null(), path, ctx, true);
}

static void mutate_type(json_t *root, json_t *parent, const char *key, size_t index, const char *path,
                        void *userdata)
{
        MutateCtx *ctx = userdata;
        json_t *orig = key ? json_object_get(parent, key) : json_array_get(parent, index);
        json_t *repl;

        if (key && streq(key, "kind") && parent == root)
                return;
        if (json_is_string(orig))
                repl = json_integer(7);
        else if (json_is_object(orig) || json_is_array(orig))
                repl = json_string("wrong");
        else
                repl = json_pack("{s:i}", "x", 1);
        with_replacement(root, parent, key, index, repl, path, ctx, false);
        json_decref(repl);
}

START_TEST(test_fixture_nulls_everywhere)
{
        json_t *j = load(fixtures[_i]);
        MutateCtx ctx = {.file = fixtures[_i]};

        ctx.kind = kind_of(j);
        if (streq(ctx.kind, "ServiceList")) {
                json_t *item = json_array_get(json_object_get(j, "items"), 0);
                ctx.kind = "Service";
                visit(item, item, "", mutate_null, &ctx);
        } else
                visit(j, j, "", mutate_null, &ctx);
        ck_assert_uint_gt(ctx.tried, 0);
        json_decref(j);
}
END_TEST

START_TEST(test_fixture_wrong_types)
{
        json_t *j = load(fixtures[_i]);
        MutateCtx ctx = {.file = fixtures[_i]};

        ctx.kind = kind_of(j);
        if (streq(ctx.kind, "ServiceList")) {
                json_t *item = json_array_get(json_object_get(j, "items"), 0);
                ctx.kind = "Service";
                visit(item, item, "", mutate_type, &ctx);
        } else
                visit(j, j, "", mutate_type, &ctx);
        ck_assert_uint_gt(ctx.tried, 0);
        if (!streq(ctx.kind, "Status") || ctx.tried > 3)
                ck_assert_uint_gt(ctx.failed_ok, 0);
        json_decref(j);
}
END_TEST

START_TEST(test_malformed)
{
        static const char *const bad[] = {
                "[]",
                "\"Service\"",
                "7",
                "null",
                "{\"kind\":\"Node\"}",
                "{\"kind\":7}",
                "{\"metadata\":[]}",
                "{\"metadata\":{\"name\":7}}",
                "{\"metadata\":{\"labels\":{\"a\":7}}}",
                "{\"metadata\":{\"generation\":1.5}}",
                "{\"spec\":{\"ports\":[{\"port\":\"80\"}]}}",
                "{\"spec\":{\"ports\":[{\"port\":4294967296}]}}",
                "{\"spec\":{\"ports\":[7]}}",
                "{\"spec\":{\"ipFamilies\":[\"IPv4\",null]}}",
                "{\"status\":{\"loadBalancer\":{\"ingress\":{}}}}",
                "{\"metadata\":{\"name\":\"a\\u0000b\"}}",
                /* Cut at the NUL, this deny list would lose its second entry. */
                "{\"metadata\":{\"annotations\":{\"kube-vip.io/egress-denied-networks\":"
                "\"10.0.0.0/8\\u0000,172.16.0.0/12\"}}}",
                "{\"spec\":{\"ipFamilies\":[\"IPv4\\u0000\"]}}",
        };
        KubeParseError err;
        KubeService *s = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_t *j = json_loads(bad[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

                ck_assert_msg(j, "%s", bad[i]);
                err = (KubeParseError){};
                ck_assert_msg(kube_service_parse(j, &s, &err) == -EBADMSG, "%s accepted", bad[i]);
                ck_assert_msg(err.message[0], "%s: no message", bad[i]);
                ck_assert_ptr_null(s);
                json_decref(j);
        }
        /* A NULL err is fine too. */
        ck_assert_int_eq(kube_service_parse(NULL, &s, NULL), -EBADMSG);

        /* Messages name the path. */
        json_t *j = json_loads("{\"spec\":{\"ports\":[{\"port\":80},{\"port\":\"x\"}]}}", 0, NULL);
        ck_assert_int_eq(kube_service_parse(j, &s, &err), -EBADMSG);
        ck_assert_str_eq(err.message, "spec.ports[1].port: expected an integer");
        json_decref(j);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("kube-objects");
        TCase *tc = tcase_create("objects");
        SRunner *sr;
        int failed;

        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, test_fixture_parses, 0, (int)ELEMENTSOF(fixtures));
        tcase_add_test(tc, test_fixture_list_complete);
        tcase_add_test(tc, test_service_values);
        tcase_add_test(tc, test_endpointslice_values);
        tcase_add_test(tc, test_lease_node_values);
        tcase_add_test(tc, test_status_values);
        tcase_add_loop_test(tc, test_fixture_nulls_everywhere, 0, (int)ELEMENTSOF(fixtures));
        tcase_add_loop_test(tc, test_fixture_wrong_types, 0, (int)ELEMENTSOF(fixtures));
        tcase_add_test(tc, test_malformed);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
