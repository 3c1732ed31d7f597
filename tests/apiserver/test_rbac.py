"""RBAC, ServiceAccount tokens (TokenRequest), impersonation, access reviews, the audit log; with real
kubectl where an operator would use it (`create token`, `auth can-i`, `auth whoami`, `create role ...`)."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from kvharness import Server, ServerTestCase
from kvtest.rbac import Attrs, Policy

KUBECTL = shutil.which("kubectl")
RBAC = "rbac.authorization.k8s.io"
SA = "system:serviceaccount:team:robot"


def claims(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def rule(verbs, groups=("",), resources=(), names=(), urls=()):
    r = {"verbs": list(verbs)}
    if urls:
        r["nonResourceURLs"] = list(urls)
    else:
        r["apiGroups"], r["resources"] = list(groups), list(resources)
    if names:
        r["resourceNames"] = list(names)
    return r


class RuleMatchingTest(unittest.TestCase):
    """The evaluator alone, against what kube-apiserver's RuleAllows decides."""

    def allows(self, r, a):
        p = Policy(cluster_roles=[{"metadata": {"name": "r"}, "rules": [r]}],
                   cluster_role_bindings=[{"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
                                           "subjects": [{"kind": "User", "name": "u"}]}], bootstrap=False)
        return p.allows("u", [], a)[0]

    def test_table(self):
        A = Attrs
        cases = [
            (rule(["get"], resources=["services"]), A("get", resource="services", namespace="n", name="x"), True),
            (rule(["get"], resources=["services"]), A("list", resource="services"), False),
            (rule(["*"], resources=["services"]), A("delete", resource="services", name="x"), True),
            # a resource does not cover its subresources, nor the other way round
            (rule(["patch"], resources=["services"]), A("patch", resource="services", subresource="status"), False),
            (rule(["patch"], resources=["services/status"]), A("patch", resource="services"), False),
            (rule(["patch"], resources=["services/status"]), A("patch", resource="services", subresource="status"),
             True),
            (rule(["patch"], resources=["*/status"]), A("patch", resource="nodes", subresource="status"), True),
            (rule(["patch"], resources=["*"]), A("patch", resource="nodes", subresource="status"), True),
            (rule(["get"], groups=["apps"], resources=["services"]), A("get", resource="services"), False),
            (rule(["get"], groups=["*"], resources=["leases"]), A("get", "coordination.k8s.io", resource="leases"),
             True),
            # resourceNames: only requests that name the object
            (rule(["get"], resources=["configmaps"], names=["a"]), A("get", resource="configmaps", name="a"), True),
            (rule(["get"], resources=["configmaps"], names=["a"]), A("get", resource="configmaps", name="b"), False),
            (rule(["list"], resources=["configmaps"], names=["a"]), A("list", resource="configmaps"), False),
            (rule(["create"], resources=["configmaps"], names=["a"]), A("create", resource="configmaps"), False),
            # nonResourceURLs: exact, or a prefix ending in *
            (rule(["get"], urls=["/healthz"]), A("get", False, path="/healthz"), True),
            (rule(["get"], urls=["/healthz"]), A("get", False, path="/healthz/etcd"), False),
            (rule(["get"], urls=["/healthz/*"]), A("get", False, path="/healthz/etcd"), True),
            (rule(["get"], urls=["/healthz"]), A("post", False, path="/healthz"), False),
            (rule(["get"], resources=["*"]), A("get", False, path="/api"), False),
        ]
        for r, a, want in cases:
            with self.subTest(rule=r, request=a.describe()):
                self.assertEqual(self.allows(r, a), want)

    def test_bindings(self):
        objs = [
            {"kind": "Role", "metadata": {"name": "r", "namespace": "a"}, "rules": [rule(["get"], resources=["pods"])]},
            {"kind": "ClusterRole", "metadata": {"name": "c"}, "rules": [rule(["list"], resources=["pods"])]},
            {"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "a"},
             "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]},
            # a RoleBinding to a ClusterRole grants it in the binding's namespace only
            {"kind": "RoleBinding", "metadata": {"name": "rc", "namespace": "b"},
             "roleRef": {"kind": "ClusterRole", "name": "c"}, "subjects": [{"kind": "Group", "name": "g"}]},
        ]
        p = Policy.from_objects(objs, bootstrap=False)
        sa = "system:serviceaccount:a:sa"
        self.assertEqual(p.allows(sa, [], Attrs("get", resource="pods", namespace="a", name="x")),
                         (True, 'RBAC: allowed by RoleBinding "rb/a" of Role "r" to ServiceAccount "sa/a"'))
        self.assertFalse(p.allows(sa, [], Attrs("get", resource="pods", namespace="b", name="x"))[0])
        self.assertFalse(p.allows("system:serviceaccount:b:sa", [], Attrs("get", resource="pods", namespace="a"))[0])
        self.assertTrue(p.allows("x", ["g"], Attrs("list", resource="pods", namespace="b"))[0])
        self.assertFalse(p.allows("x", ["g"], Attrs("list", resource="pods", namespace="a"))[0])
        self.assertFalse(p.allows("x", ["g"], Attrs("list", resource="pods"))[0])  # all namespaces


class RbacServerTest(ServerTestCase):
    """RBAC enforced for ServiceAccount tokens by the running server."""

    @classmethod
    def setUpClass(cls):
        d = tempfile.mkdtemp(prefix="kvtest-rbac-")
        cls.s = Server(("--audit-log", os.path.join(d, "audit.log")), state_dir=d)
        cls.s.owns_dir = True

    def setUp(self):
        self.s.admin("reset")

    def make_sa(self, ns="team", name="robot"):
        if ns not in ("default", "kube-system"):
            self.s.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        st, _ = self.s.json("POST", "/api/v1/namespaces/%s/serviceaccounts" % ns, {"metadata": {"name": name}})
        self.assertEqual(st, 201)
        return self.token(ns, name)

    def token(self, ns="team", name="robot", **spec):
        st, d = self.s.json("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (ns, name),
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        self.assertEqual(st, 201, d)
        return d["status"]["token"]

    def create(self, path, obj):
        st, d = self.s.json("POST", path, obj)
        self.assertEqual(st, 201, d)
        return d

    def grant(self, rules, kind="ClusterRole", ns=None, name="g", subject=None):
        subject = subject or {"kind": "ServiceAccount", "name": "robot", "namespace": "team"}
        base = "/apis/%s/v1" % RBAC
        if kind == "Role":
            self.create(base + "/namespaces/%s/roles" % ns, {"metadata": {"name": name}, "rules": rules})
        else:
            self.create(base + "/clusterroles", {"metadata": {"name": name}, "rules": rules})
        ref = {"apiGroup": RBAC, "kind": kind, "name": name}
        if ns:
            self.create(base + "/namespaces/%s/rolebindings" % ns, {"metadata": {"name": name}, "roleRef": ref,
                                                                    "subjects": [subject]})
        else:
            self.create(base + "/clusterrolebindings", {"metadata": {"name": name}, "roleRef": ref,
                                                        "subjects": [subject]})

    def test_forbidden_until_granted(self):
        tok = self.make_sa()
        self.create("/api/v1/namespaces/team/services", {"metadata": {"name": "x"},
                                                         "spec": {"ports": [{"port": 80}]}})
        patch = json.dumps({"metadata": {"annotations": {"a": "b"}}})
        st, e = self.s.json("PATCH", "/api/v1/namespaces/team/services/x", patch, token=tok,
                            ctype="application/merge-patch+json")
        self.assertEqual(st, 403)
        self.assertEqual(e, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": 'services "x" is forbidden: User "%s" cannot patch resource "services" in '
                                        'API group "" in the namespace "team"' % SA,
                             "reason": "Forbidden", "details": {"name": "x", "kind": "services"}, "code": 403})
        self.grant([rule(["patch"], resources=["services/status"])], "Role", "team")
        st, e = self.s.json("PATCH", "/api/v1/namespaces/team/services/x", patch, token=tok,
                            ctype="application/merge-patch+json")
        self.assertEqual(st, 403, "services/status must not grant services")
        st, _ = self.s.json("PATCH", "/api/v1/namespaces/team/services/x/status", patch, token=tok,
                            ctype="application/merge-patch+json")
        self.assertEqual(st, 200)
        st, e = self.s.json("GET", "/api/v1/namespaces/team/services", token=tok)
        self.assertEqual(e["message"], 'services is forbidden: User "%s" cannot list resource "services" in API '
                                       'group "" in the namespace "team"' % SA)
        # cluster scope: a ClusterRoleBinding
        st, e = self.s.json("GET", "/apis/coordination.k8s.io/v1/leases", token=tok)
        self.assertEqual(e["message"], 'leases.coordination.k8s.io is forbidden: User "%s" cannot list resource '
                                       '"leases" in API group "coordination.k8s.io" at the cluster scope' % SA)
        self.grant([rule(["list", "watch"], ["coordination.k8s.io"], ["leases"])], name="leases")
        self.assertEqual(self.s.json("GET", "/apis/coordination.k8s.io/v1/leases", token=tok)[0], 200)
        # removing the binding takes the access away at once
        st, _ = self.s.json("DELETE", "/apis/%s/v1/clusterrolebindings/leases" % RBAC)
        self.assertEqual(self.s.json("GET", "/apis/coordination.k8s.io/v1/leases", token=tok)[0], 403)

    def test_resource_names_and_field_selector(self):
        tok = self.make_sa()
        self.grant([rule(["get", "list", "watch"], resources=["configmaps"], names=["kubeadm-config"])],
                   "Role", "kube-system")
        for n in ("kubeadm-config", "other"):
            self.create("/api/v1/namespaces/kube-system/configmaps", {"metadata": {"name": n}})
        cms = "/api/v1/namespaces/kube-system/configmaps"
        self.assertEqual(self.s.json("GET", cms + "/kubeadm-config", token=tok)[0], 200)
        st, e = self.s.json("GET", cms + "/other", token=tok)
        self.assertEqual((st, e["message"]), (403, 'configmaps "other" is forbidden: User "%s" cannot get resource '
                                                   '"configmaps" in API group "" in the namespace "kube-system"' % SA))
        self.assertEqual(self.s.json("GET", cms, token=tok)[0], 403)
        # a list or watch of one name by field selector is authorized for that name
        st, d = self.s.json("GET", cms + "?fieldSelector=metadata.name%3Dkubeadm-config", token=tok)
        self.assertEqual((st, [i["metadata"]["name"] for i in d["items"]]), (200, ["kubeadm-config"]))
        st, e = self.s.json("GET", cms + "?fieldSelector=metadata.name%3Dother&watch=1", token=tok)
        self.assertEqual((st, e["message"]), (403, 'configmaps "other" is forbidden: User "%s" cannot watch '
                                                   'resource "configmaps" in API group "" in the namespace '
                                                   '"kube-system"' % SA))

    def test_non_resource_urls_and_bootstrap(self):
        tok = self.make_sa()
        for p in ("/version", "/api", "/apis/", "/api/v1/", "/healthz"):
            self.assertEqual(self.s.json("GET", p, token=tok)[0], 200, p)  # system:discovery, public-info-viewer
        st, e = self.s.json("GET", "/metrics", token=tok)
        self.assertEqual((st, e["message"]), (403, 'forbidden: User "%s" cannot get path "/metrics"' % SA))
        self.grant([rule(["get"], urls=["/metrics"])], name="metrics")
        self.assertEqual(self.s.json("GET", "/metrics", token=tok)[0], 404)  # allowed; the server has none

    def test_token_lifecycle(self):
        tok = self.make_sa()
        c = claims(tok)
        self.assertEqual(c["sub"], SA)
        self.assertEqual(c["aud"], ["https://kubernetes.default.svc.cluster.local"])
        self.assertEqual(c["exp"] - c["iat"], 3600)
        self.assertEqual(c["kubernetes.io"]["namespace"], "team")
        st, who = self.s.json("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                              {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, token=tok)
        self.assertEqual(st, 201)
        self.assertEqual(who["status"]["userInfo"]["username"], SA)
        self.assertEqual(who["status"]["userInfo"]["groups"], ["system:serviceaccounts",
                                                               "system:serviceaccounts:team", "system:authenticated"])
        # duration limits, audience, missing ServiceAccount
        st, e = self.s.json("POST", "/api/v1/namespaces/team/serviceaccounts/robot/token",
                            {"spec": {"expirationSeconds": 60}})
        self.assertEqual((st, e["message"]), (422, 'TokenRequest.authentication.k8s.io "robot" is invalid: '
                                                  'spec.expirationSeconds: Invalid value: 60: may not specify a '
                                                  'duration less than 10 minutes'))
        st, e = self.s.json("POST", "/api/v1/namespaces/team/serviceaccounts/nobody/token", {"spec": {}})
        self.assertEqual((st, e["message"]), (404, 'serviceaccounts "nobody" not found'))
        other = self.token(audiences=["vault"])
        self.assertEqual(claims(other)["aud"], ["vault"])
        self.assertEqual(self.s.json("GET", "/version", token=other)[0], 401, "a token for another audience")
        # revocation through the admin API: that token only
        t2 = self.token(expirationSeconds=7200)
        self.assertEqual(claims(t2)["exp"] - claims(t2)["iat"], 7200)
        self.s.admin("revoke-token", {"token": tok})
        self.assertEqual(self.s.json("GET", "/version", token=tok)[0], 401)
        self.assertEqual(self.s.json("GET", "/version", token=t2)[0], 200)
        # revocations and the signing key survive a restart
        self.s.restart()
        self.assertEqual(self.s.json("GET", "/version", token=tok)[0], 401)
        self.assertEqual(self.s.json("GET", "/version", token=t2)[0], 200)
        # deleting the ServiceAccount invalidates its tokens; recreating it (new uid) does not revive them
        self.s.json("DELETE", "/api/v1/namespaces/team/serviceaccounts/robot")
        self.assertEqual(self.s.json("GET", "/version", token=t2)[0], 401)
        self.create("/api/v1/namespaces/team/serviceaccounts", {"metadata": {"name": "robot"}})
        self.assertEqual(self.s.json("GET", "/version", token=t2)[0], 401)

    def test_access_reviews_and_impersonation(self):
        tok = self.make_sa()
        self.grant([rule(["get"], resources=["pods"])], "Role", "team")

        def ssar(attrs, **kw):
            st, d = self.s.json("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                 "spec": {"resourceAttributes": attrs}}, **kw)
            self.assertEqual(st, 201, d)
            return d["status"]

        self.assertEqual(ssar({"verb": "get", "resource": "pods", "namespace": "team"}, token=tok),
                         {"allowed": True, "reason": 'RBAC: allowed by RoleBinding "g/team" of Role "g" to '
                                                     'ServiceAccount "robot/team"'})
        self.assertEqual(ssar({"verb": "get", "resource": "pods", "namespace": "other"}, token=tok), {"allowed": False})
        # the admin asks as the ServiceAccount (kubectl auth can-i --as)
        imp = {"Impersonate-User": SA}
        self.assertTrue(ssar({"verb": "get", "resource": "pods", "namespace": "team"}, headers=imp)["allowed"])
        self.assertFalse(ssar({"verb": "list", "resource": "pods", "namespace": "team"}, headers=imp)["allowed"])
        # ... and acts as it
        st, e = self.s.json("GET", "/api/v1/namespaces/team/pods", headers=imp)
        self.assertEqual((st, e["message"]), (403, 'pods is forbidden: User "%s" cannot list resource "pods" in API '
                                                   'group "" in the namespace "team"' % SA))
        # the ServiceAccount may not impersonate anyone
        st, e = self.s.json("GET", "/api/v1/namespaces/team/pods", token=tok, headers={"Impersonate-User": "bob"})
        self.assertEqual((st, e["message"]), (403, 'users "bob" is forbidden: User "%s" cannot impersonate resource '
                                                   '"users" in API group "" at the cluster scope' % SA))
        # SubjectAccessReview: exactly the groups given
        st, d = self.s.json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                            {"spec": {"user": SA, "resourceAttributes": {"verb": "get", "resource": "pods",
                                                                         "namespace": "team"}}})
        self.assertEqual((st, d["status"]["allowed"]), (201, True))
        st, d = self.s.json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                            {"spec": {"user": "x", "groups": ["system:masters"],
                                      "nonResourceAttributes": {"verb": "get", "path": "/anything"}}})
        self.assertEqual(d["status"], {"allowed": True, "reason": 'RBAC: allowed by ClusterRoleBinding '
                                                                  '"cluster-admin" of ClusterRole "cluster-admin" to '
                                                                  'Group "system:masters"'})
        st, e = self.s.json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": {"user": SA}},
                            token=tok)
        self.assertEqual(st, 403)

    def test_validation(self):
        base = "/apis/%s/v1" % RBAC
        st, e = self.s.json("POST", base + "/namespaces/default/roles",
                            {"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]})
        self.assertEqual((st, e["message"]), (422, 'Role.rbac.authorization.k8s.io "r" is invalid: '
                                                   'rules[0].nonResourceURLs: Invalid value: []string{"/x"}: '
                                                   'namespaced rules cannot apply to non-resource URLs'))
        self.create(base + "/clusterrolebindings", {"metadata": {"name": "b"}, "roleRef": {
            "apiGroup": RBAC, "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "u"}]})
        st, d = self.s.json("GET", base + "/clusterrolebindings/b")
        self.assertEqual(d["subjects"], [{"kind": "User", "apiGroup": RBAC, "name": "u"}])
        d["roleRef"]["name"] = "edit"
        st, e = self.s.json("PUT", base + "/clusterrolebindings/b", d)
        self.assertEqual((st, e["message"]), (422, 'ClusterRoleBinding.rbac.authorization.k8s.io "b" is invalid: '
                                                   'roleRef: Invalid value: rbac.RoleRef{APIGroup:"%s", '
                                                   'Kind:"ClusterRole", Name:"edit"}: cannot change roleRef' % RBAC))

    def test_discovery_trailing_slash(self):
        paths = ["/api", "/api/v1", "/apis"]
        st, groups = self.s.json("GET", "/apis")
        for g in groups["groups"]:
            paths += ["/apis/" + g["name"], "/apis/" + g["preferredVersion"]["groupVersion"]]
        for p in paths:
            a, b = self.s.json("GET", p), self.s.json("GET", p + "/")
            self.assertEqual(a[0], 200, p)
            if p == "/api":  # serverAddressByClientCIDRs is the same either way
                self.assertEqual(a, b)
            self.assertEqual(a, b, p + "/")
        st, d = self.s.json("GET", "/api/v1/")
        names = {r["name"]: r for r in d["resources"]}
        self.assertEqual(names["serviceaccounts/token"], {"name": "serviceaccounts/token", "singularName": "",
                                                          "namespaced": True, "group": "authentication.k8s.io",
                                                          "version": "v1", "kind": "TokenRequest",
                                                          "verbs": ["create"]})

    def test_audit_log(self):
        path = os.path.join(self.s.dir, "audit.log")
        tok = self.make_sa()
        start = os.path.getsize(path)  # the log is the class's; a line is written once the response is sent
        self.s.json("GET", "/api/v1/namespaces/team/services/x/status", token=tok)
        self.s.json("GET", "/api/v1/namespaces/team/configmaps?fieldSelector=metadata.name%3Dk", token=tok)
        deadline = time.time() + 5
        while time.time() < deadline:
            with open(path) as f:
                f.seek(start)
                evs = [json.loads(ln) for ln in f if SA in ln]
            if len(evs) >= 2:
                break
            time.sleep(0.05)
        evs.sort(key=lambda e: e["verb"])  # two threads: the lines may come in either order
        self.assertEqual([(e["verb"], e["objectRef"], e["responseStatus"]["code"]) for e in evs], [
            ("get", {"resource": "services", "namespace": "team", "name": "x", "apiVersion": "v1",
                     "subresource": "status"}, 403),
            ("list", {"resource": "configmaps", "namespace": "team", "name": "k", "apiVersion": "v1"}, 403)])
        self.assertEqual(evs[-1]["kind"], "Event")
        self.assertEqual(evs[-1]["user"]["username"], SA)


@unittest.skipUnless(KUBECTL, "kubectl not on PATH")
class RbacKubectlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server()
        cls.tmp = tempfile.mkdtemp(prefix="kvtest-rbac-")

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def k(self, *args, check=True, token=None):
        env = dict(os.environ, HOME=self.tmp, KUBECACHEDIR=os.path.join(self.tmp, "cache"))
        cmd = [KUBECTL, "--kubeconfig", self.s.kubeconfig()] + (["--token", token] if token else []) + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
        if check and p.returncode != 0:
            self.fail("kubectl %s failed (%d): %s %s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p if not check else p.stdout

    def test_operator_flow(self):
        # kubectl's typed generators send protobuf
        self.k("create", "namespace", "team")
        self.k("create", "serviceaccount", "robot", "-n", "team")
        tok = self.k("create", "token", "robot", "-n", "team", "--duration", "20m").strip()
        self.assertEqual(claims(tok)["exp"] - claims(tok)["iat"], 1200)
        aud = self.k("create", "token", "robot", "-n", "team", "--audience", "vault").strip()
        self.assertEqual(claims(aud)["aud"], ["vault"])
        out = self.k("auth", "whoami", token=tok)
        self.assertIn("system:serviceaccount:team:robot", out)
        self.assertIn("system:serviceaccounts:team", out)
        self.assertIn("Username    kvtest-admin", self.k("auth", "whoami"))

        def can(*args, token=None):
            p = self.k("auth", "can-i", *args, check=False, token=token)
            return p.stdout.strip()

        self.assertEqual(can("patch", "services", "-n", "team", token=tok), "no")
        self.k("create", "role", "svc", "-n", "team", "--verb=get,list,watch", "--resource=services")
        self.k("create", "rolebinding", "svc", "-n", "team", "--role=svc", "--serviceaccount=team:robot")
        self.k("create", "clusterrole", "st", "--verb=patch", "--resource=services/status", "--resource-name=x")
        self.k("create", "clusterrolebinding", "st", "--clusterrole=st", "--serviceaccount=team:robot")
        self.assertEqual(can("list", "services", "-n", "team", token=tok), "yes")
        self.assertEqual(can("list", "services", "-n", "default", token=tok), "no")
        self.assertEqual(can("list", "services", "-n", "team", "--as", SA), "yes")
        self.assertEqual(can("patch", "services", "-n", "team", "--as", SA), "no")
        self.assertEqual(can("patch", "services/x", "--subresource=status", "-n", "team", "--as", SA), "yes")
        self.assertEqual(can("patch", "services/y", "--subresource=status", "-n", "team", "--as", SA), "no")
        self.assertEqual(can("create", "pods", "--as", "kvtest-admin", "--as-group", "system:masters"), "yes")
        self.assertEqual(can("create", "pods", "--as", "kvtest-admin"), "no")
        self.assertEqual(can("get", "/healthz", token=tok), "yes")  # the bootstrap policy
        self.assertEqual(can("get", "/metrics", "--as", SA), "no")
        lst = self.k("auth", "can-i", "--list", "-n", "team", "--as", SA)
        self.assertRegex(lst, r"services/status\s+\[\]\s+\[x\]\s+\[patch\]")
        self.assertRegex(lst, r"services\s+\[\]\s+\[\]\s+\[get list watch\]")
        self.k("get", "svc", "-n", "team", token=tok)
        p = self.k("get", "pods", "-n", "team", check=False, token=tok)
        self.assertIn('User "system:serviceaccount:team:robot" cannot list resource "pods"', p.stderr)
        out = self.k("get", "rolebinding", "svc", "-n", "team", "-o", "wide")
        self.assertRegex(out, r"\nsvc\s+Role/svc\s+\S+\s+team/robot")

    def test_apply_manifest(self):
        """The shipped manifest applies, and applies again as unchanged (the stored objects equal what kubectl
        computes, defaults included)."""
        manifest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "kubernetes",
                                "rbac.yaml")
        first = self.k("apply", "-f", manifest).splitlines()
        self.assertEqual(len(first), 5, first)
        again = self.k("apply", "-f", manifest).splitlines()
        self.assertEqual([ln for ln in again if not ln.endswith(" unchanged")], [])
        sa = "--as=system:serviceaccount:kube-system:kvegress"
        self.assertEqual(self.k("auth", "can-i", "patch", "services", "--subresource=status", "-A", sa).strip(),
                         "yes")
        self.assertEqual(self.k("auth", "can-i", "delete", "services", "-A", sa, check=False).stdout.strip(), "no")

    def test_wide_columns(self):
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "w1"}, {"type": "InternalIP", "address": "10.0.0.5"},
                          {"type": "InternalIP", "address": "fd00::5"},
                          {"type": "ExternalIP", "address": "203.0.113.5"}],
            "nodeInfo": {"osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-28-amd64",
                         "containerRuntimeVersion": "containerd://1.7.24", "kubeletVersion": "v1.32.4"}}}
        self.assertEqual(self.s.json("POST", "/api/v1/nodes", {"metadata": {"name": "w1"}})[0], 201)
        st, cur = self.s.json("GET", "/api/v1/nodes/w1")
        cur["status"] = node["status"]
        self.assertEqual(self.s.json("PUT", "/api/v1/nodes/w1/status", cur)[0], 200)
        self.s.json("POST", "/api/v1/nodes", {"metadata": {"name": "w2"}})
        out = self.k("get", "nodes", "-o", "wide").splitlines()
        self.assertEqual(out[0].split(), ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                                          "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"])
        self.assertRegex(out[1], r"^w1 .* v1\.32\.4\s+10\.0\.0\.5\s+203\.0\.113\.5\s+Debian GNU/Linux 12 \(bookworm\)"
                                 r"\s+6\.1\.0-28-amd64\s+containerd://1\.7\.24$")
        self.assertRegex(out[2], r"^w2 .*<none>\s+<none>\s+<unknown>\s+<unknown>\s+<unknown>$")
        self.assertNotIn("INTERNAL-IP", self.k("get", "nodes"))
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}],
                                                   "readinessGates": [{"conditionType": "example.com/ready"}]}}
        self.assertEqual(self.s.json("POST", "/api/v1/namespaces/default/pods", pod)[0], 201)
        st, cur = self.s.json("GET", "/api/v1/namespaces/default/pods/p")
        cur["status"].update({"nominatedNodeName": "w2", "conditions": [{"type": "example.com/ready",
                                                                          "status": "True"}]})
        self.assertEqual(self.s.json("PUT", "/api/v1/namespaces/default/pods/p/status", cur)[0], 200)
        self.s.json("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "q"}, "spec": {
            "containers": [{"name": "c", "image": "i"}]}})
        out = self.k("get", "pods", "-o", "wide").splitlines()
        self.assertEqual(out[0].split(), ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED",
                                          "NODE", "READINESS", "GATES"])
        self.assertRegex(out[1], r"^p .*<none>\s+<none>\s+w2\s+1/1$")
        self.assertRegex(out[2], r"^q .*<none>\s+<none>\s+<none>\s+<none>$")


if __name__ == "__main__":
    unittest.main()
