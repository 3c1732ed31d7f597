/* SPDX-License-Identifier: Apache-2.0 */
/* kubeconfig and in-cluster configuration (kube-config.c, kube-yaml.c):
 * every fixture under kubeconfig/, relative paths, and errors that name the
 * file and the field. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kube-config.h"
#include "kube-internal.h"

#define KC KUBE_FIXTURES_DIR "/kubeconfig"

static KubeConfig *load_ok(const char *path, const char *context)
{
        KubeConfig *c = NULL;
        char *err = NULL;
        int r = kube_config_load(path, context, &c, &err);

        ck_assert_msg(r == 0, "%s: %d %s", path, r, err ?: "");
        ck_assert_ptr_null(err);
        return c;
}

static char *load_fail(const char *path, const char *context, int want)
{
        KubeConfig *c = NULL;
        char *err = NULL;
        int r = kube_config_load(path, context, &c, &err);

        ck_assert_msg(r < 0, "%s loaded", path);
        if (want != 0)
                ck_assert_int_eq(r, want);
        ck_assert_ptr_null(c);
        ck_assert_ptr_nonnull(err);
        /* The message starts with the file. */
        ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "%s", err);
        return err;
}

START_TEST(test_admin_conf)
{
        KubeConfig *c = load_ok(KC "/admin.conf", NULL);

        ck_assert_str_eq(c->server, "https://192.168.10.40:6443");
        ck_assert_str_eq(c->context_name, "kubernetes-admin@kubernetes");
        ck_assert(strncmp(c->ca_pem, "-----BEGIN CERTIFICATE-----", 27) == 0);
        ck_assert(strncmp(c->client_cert_pem, "-----BEGIN CERTIFICATE-----", 27) == 0);
        ck_assert(strncmp(c->client_key_pem, "-----BEGIN RSA PRIVATE KEY-----", 31) == 0);
        ck_assert_ptr_null(c->ca_file);
        ck_assert_ptr_null(c->token);
        ck_assert(!c->insecure_skip_tls_verify);
        ck_assert_str_eq(c->source, KC "/admin.conf");
        kube_config_free(c);
}
END_TEST

START_TEST(test_kubelet_conf)
{
        KubeConfig *c = load_ok(KC "/kubelet.conf", NULL);

        ck_assert_str_eq(c->client_cert_file, "/var/lib/kubelet/pki/kubelet-client-current.pem");
        ck_assert_str_eq(c->client_key_file, "/var/lib/kubelet/pki/kubelet-client-current.pem");
        ck_assert_ptr_null(c->client_cert_pem);
        ck_assert_str_eq(c->context_name, "system:node:cp-1@kubernetes");
        kube_config_free(c);

        c = load_ok(KC "/kubelet-join.conf", NULL);
        ck_assert_str_eq(c->context_name, "default-context");
        ck_assert_str_eq(c->namespace, "default");
        ck_assert_str_eq(c->client_cert_file, "/var/lib/kubelet/pki/kubelet-client-current.pem");
        kube_config_free(c);
}
END_TEST

START_TEST(test_token_confs)
{
        KubeConfig *c = load_ok(KC "/token.conf", NULL);

        ck_assert(strncmp(c->token, "eyJhbGciOiJSUzI1NiIs", 20) == 0);
        ck_assert_str_eq(c->namespace, "kube-system");
        ck_assert_str_eq(c->server, "https://k8s-api.example.internal:6443");
        ck_assert_ptr_null(c->token_file);
        kube_config_free(c);

        c = load_ok(KC "/tokenfile.conf", NULL);
        ck_assert_str_eq(c->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
        ck_assert_str_eq(c->ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
        ck_assert_ptr_null(c->token);
        kube_config_free(c);
}
END_TEST

START_TEST(test_exec_plugin)
{
        char *err = load_fail(KC "/exec-plugin.conf", NULL, -EOPNOTSUPP);

        ck_assert_msg(strstr(err, "users[\"exec-user\"].user.exec"), "%s", err);
        ck_assert_msg(strstr(err, "not supported"), "%s", err);
        free(err);
}
END_TEST

START_TEST(test_insecure_relative)
{
        KubeConfig *c = load_ok(KC "/insecure.conf", NULL);

        ck_assert(c->insecure_skip_tls_verify);
        ck_assert_str_eq(c->client_cert_file, KC "/pki/lab-admin.crt");
        ck_assert_str_eq(c->client_key_file, KC "/pki/lab-admin.key");
        kube_config_free(c);
}
END_TEST

START_TEST(test_multi_context)
{
        KubeConfig *c = load_ok(KC "/multi-context.conf", NULL);
        char *err;

        ck_assert_str_eq(c->context_name, "prod-node");
        ck_assert_str_eq(c->server, "https://[2001:db8::10]:6443");
        ck_assert_str_eq(c->namespace, "kube-system");
        ck_assert_str_eq(c->proxy_url, "http://proxy.example.internal:3128");
        ck_assert_ptr_nonnull(c->client_cert_pem);
        kube_config_free(c);

        c = load_ok(KC "/multi-context.conf", "staging");
        ck_assert_str_eq(c->server, "https://10.20.0.5:6443");
        ck_assert_str_eq(c->ca_file, KC "/certs/staging-ca.crt");
        ck_assert_str_eq(c->token_file, KC "/tokens/staging.token");
        ck_assert_str_eq(c->namespace, "kube-vip");
        kube_config_free(c);

        err = load_fail(KC "/multi-context.conf", "nope", -ENOENT);
        ck_assert_msg(strstr(err, "contexts: no context named \"nope\""), "%s", err);
        free(err);
}
END_TEST

/* Every file under kubeconfig/ either loads or fails with a message that
 * names it. */
START_TEST(test_every_fixture)
{
        DIR *d = opendir(KC);
        struct dirent *de;
        unsigned n = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d))) {
                char path[1024];
                KubeConfig *c = NULL;
                char *err = NULL;
                size_t len = strlen(de->d_name);

                if (len < 5 || !streq(de->d_name + len - 5, ".conf"))
                        continue;
                (void)snprintf(path, sizeof(path), "%s/%s", KC, de->d_name);
                if (kube_config_load(path, NULL, &c, &err) == 0) {
                        ck_assert_ptr_nonnull(c->server);
                        kube_config_free(c);
                } else {
                        ck_assert_msg(err && strstr(err, de->d_name), "%s: %s", de->d_name,
                                      err ?: "(no message)");
                        free(err);
                }
                n++;
        }
        closedir(d);
        ck_assert_uint_ge(n, 8);
}
END_TEST

static char tmpdir[] = "/tmp/kube-config-test-XXXXXX";

static void write_file(const char *name, const char *text)
{
        char path[512];
        FILE *f;

        (void)snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
}

#define HEAD                                                                                                \
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n    cluster: " \
        "k\n"                                                                                               \
        "    user: u\n"

static const struct {
        const char *yaml;
        const char *want_in_message; /* NULL: must load */
} error_cases[] = {
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: https://h:6443\nusers:\n- name: u\n  user:\n   "
              " token: t\n",
         NULL},
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: https://h:6443\n"
              "    insecure-skip-tls-verify: true\n    certificate-authority: ca.crt\nusers: []\n",
         "clusters[\"k\"].cluster.insecure-skip-tls-verify: specifying a root certificates file with the "
         "insecure"},
        {HEAD "clusters:\n- name: k\n  cluster:\n    insecure-skip-tls-verify: true\n",
         "clusters[\"k\"].cluster.server: missing"},
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: ftp://h\n",
         "clusters[\"k\"].cluster.server: \"ftp://h\""},
        {HEAD
         "clusters:\n- name: k\n  cluster:\n    server: https://h\n    certificate-authority-data: '***'\n",
         "clusters[\"k\"].cluster.certificate-authority-data: not valid base64"},
        {HEAD
         "clusters:\n- name: k\n  cluster:\n    server: https://h\n    insecure-skip-tls-verify: maybe\n",
         "insecure-skip-tls-verify: expected true or false"},
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: https://h\nusers:\n- name: u\n  user:\n"
              "    client-certificate: a.crt\n",
         "users[\"u\"].user.client-key: a client certificate needs a client key"},
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: https://h\nusers:\n- name: u\n  user:\n"
              "    username: a\n    password: b\n",
         "users[\"u\"].user.username: basic authentication is not supported"},
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: https://h\nusers:\n- name: v\n  user: {}\n",
         "users: no user named \"u\""},
        {HEAD "clusters:\n- name: k\n  cluster:\n    server: [1, 2]\n",
         "clusters[\"k\"].cluster.server: expected a string"},
        {HEAD "clusters: 7\n", "clusters: expected a list"},
        {HEAD "clusters:\n- 7\n", "clusters[0]: expected a mapping"},
        {"apiVersion: v1\nclusters: []\n", "current-context: not set"},
        {"- a\n- b\n", "expected a mapping at the top"},
        {"a: [1, 2\n", "not a kubeconfig: line"},
        {"a: &x [1]\nb: *x\n", "aliases are not supported"},
        {"", "empty document"},
        {"{\"apiVersion\":\"v1\",\"current-context\":\"c\",\"contexts\":[{\"name\":\"c\",\"context\":{"
         "\"cluster\":"
         "\"k\"}}],\"clusters\":[{\"name\":\"k\",\"cluster\":{\"server\":\"https://h/\"}}]}",
         NULL},
};

START_TEST(test_errors)
{
        char path[512];
        KubeConfig *c = NULL;
        char *err = NULL;
        int r;

        write_file("case.conf", error_cases[_i].yaml);
        (void)snprintf(path, sizeof(path), "%s/case.conf", tmpdir);
        r = kube_config_load(path, NULL, &c, &err);
        if (!error_cases[_i].want_in_message) {
                ck_assert_msg(r == 0, "%s", err ?: "");
                ck_assert(c->server[strlen(c->server) - 1] != '/');
                kube_config_free(c);
                return;
        }
        ck_assert_msg(r < 0, "case %d loaded", _i);
        ck_assert_msg(err && strncmp(err, path, strlen(path)) == 0, "%s", err ?: "(none)");
        ck_assert_msg(strstr(err, error_cases[_i].want_in_message), "case %d: \"%s\" lacks \"%s\"", _i, err,
                      error_cases[_i].want_in_message);
        free(err);
}
END_TEST

START_TEST(test_relative_kubeconfig_path)
{
        char want[512], cwd[512];
        KubeConfig *c;

        write_file("rel.conf", HEAD
                   "clusters:\n- name: k\n  cluster:\n    server: https://h\n"
                   "    certificate-authority: pki/ca.crt\nusers:\n- name: u\n  user:\n"
                   "    tokenFile: ../tok\n    client-certificate: /abs/c.pem\n    client-key: k.pem\n");
        ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
        ck_assert_int_eq(chdir("/tmp"), 0);
        {
                char rel[256];
                (void)snprintf(rel, sizeof(rel), "%s/rel.conf", tmpdir + strlen("/tmp/"));
                c = load_ok(rel, NULL);
        }
        ck_assert_int_eq(chdir(cwd), 0);
        (void)snprintf(want, sizeof(want), "%s/pki/ca.crt", tmpdir);
        ck_assert_str_eq(c->ca_file, want);
        (void)snprintf(want, sizeof(want), "%s/../tok", tmpdir);
        ck_assert_str_eq(c->token_file, want);
        ck_assert_str_eq(c->client_cert_file, "/abs/c.pem");
        (void)snprintf(want, sizeof(want), "%s/k.pem", tmpdir);
        ck_assert_str_eq(c->client_key_file, want);
        kube_config_free(c);
}
END_TEST

START_TEST(test_missing_file)
{
        char *err = load_fail("/nonexistent/kubeconfig", NULL, -ENOENT);

        ck_assert_msg(strstr(err, "cannot read"), "%s", err);
        free(err);
}
END_TEST

START_TEST(test_in_cluster)
{
        KubeConfig *c = NULL;
        char *err = NULL;

        unsetenv("KUBERNETES_SERVICE_HOST");
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        ck_assert_int_eq(kube_config_in_cluster(KC "/in-cluster", &c, &err), -ENOENT);
        ck_assert_msg(err && strstr(err, "KUBERNETES_SERVICE_HOST"), "%s", err ?: "");
        free(err);

        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        ck_assert_int_eq(kube_config_in_cluster(KC "/in-cluster", &c, &err), 0);
        ck_assert_str_eq(c->server, "https://10.96.0.1:443");
        ck_assert_str_eq(c->token_file, KC "/in-cluster/var/run/secrets/kubernetes.io/serviceaccount/token");
        ck_assert_str_eq(c->ca_file, KC "/in-cluster/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
        ck_assert_str_eq(c->namespace, "kube-system");
        kube_config_free(c);

        setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
        ck_assert_int_eq(kube_config_in_cluster(KC "/in-cluster", &c, &err), 0);
        ck_assert_str_eq(c->server, "https://[fd00:10:96::1]:443");
        kube_config_free(c);

        ck_assert_int_lt(kube_config_in_cluster("/nonexistent", &c, &err), 0);
        ck_assert_msg(err && strstr(err, "token"), "%s", err ?: "");
        free(err);
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
}
END_TEST

START_TEST(test_auto_explicit)
{
        KubeConfig *c = NULL, *d;
        char *err = NULL;

        ck_assert_int_eq(kube_config_auto(KC "/token.conf", NULL, &c, &err), 0);
        ck_assert_str_eq(c->source, KC "/token.conf");
        d = kube_config_dup(c);
        ck_assert_str_eq(d->token, c->token);
        ck_assert_str_eq(d->server, c->server);
        kube_config_free(d);
        kube_config_free(c);
}
END_TEST

START_TEST(test_yaml)
{
        json_t *j = NULL;
        char *err = NULL;
        static const char text[] = "a: yes\nb: 'yes'\nc: ~\nd:\ne: 12\nf: [x, {g: h}]\n\"q\": \"r\"\n";

        ck_assert_int_eq(kube_yaml_parse(text, strlen(text), &j, &err), 0);
        ck_assert(json_is_true(json_object_get(j, "a")));
        ck_assert_str_eq(json_string_value(json_object_get(j, "b")), "yes");
        ck_assert(json_is_null(json_object_get(j, "c")));
        ck_assert(json_is_null(json_object_get(j, "d")));
        ck_assert_str_eq(json_string_value(json_object_get(j, "e")), "12");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "f"), 1), "g")),
                         "h");
        ck_assert_str_eq(json_string_value(json_object_get(j, "q")), "r");
        json_decref(j);

        /* Deep nesting is refused, not recursed into. */
        {
                char deep[400];
                memset(deep, '[', 200);
                deep[200] = '\0';
                ck_assert_int_lt(kube_yaml_parse(deep, 200, &j, &err), 0);
                free(err);
        }
}
END_TEST

static void setup(void)
{
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
        char cmd[600];
        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        (void)system(cmd);
        strcpy(tmpdir, "/tmp/kube-config-test-XXXXXX");
}

int main(void)
{
        Suite *s = suite_create("kube-config");
        TCase *tc = tcase_create("config");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_admin_conf);
        tcase_add_test(tc, test_kubelet_conf);
        tcase_add_test(tc, test_token_confs);
        tcase_add_test(tc, test_exec_plugin);
        tcase_add_test(tc, test_insecure_relative);
        tcase_add_test(tc, test_multi_context);
        tcase_add_test(tc, test_every_fixture);
        tcase_add_loop_test(tc, test_errors, 0, (int)ELEMENTSOF(error_cases));
        tcase_add_test(tc, test_relative_kubeconfig_path);
        tcase_add_test(tc, test_missing_file);
        tcase_add_test(tc, test_in_cluster);
        tcase_add_test(tc, test_auto_explicit);
        tcase_add_test(tc, test_yaml);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
