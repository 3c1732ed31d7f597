"""Authentication/authorization checks (spec section 8: 17, 21)."""
import json
import os
import ssl
import subprocess
import tempfile
import unittest

from kvharness import LEASES, ServerTestCase, lease_body
from test_writes import fixture_body

KV_SA = "system:serviceaccount:kube-system:kube-vip"


class AuthTest(ServerTestCase):
    server_args = ("--token", "kvtok=%s,system:serviceaccounts" % KV_SA,
                   "--deny", "%s:update:leases" % KV_SA, "--deny", "%s:watch:services" % KV_SA)

    def cert_ctx(self, crt, key):
        ctx = ssl.create_default_context(cafile=os.path.join(self.s.dir, "ca.crt"))
        ctx.load_cert_chain(crt, key)
        return ctx

    # check 17: no credentials -> 403 as system:anonymous (RBAC text; verb watch for watches)
    def test_anonymous(self):
        st, e = self.s.json("GET", "/api/v1/services", token=None)
        self.assertEqual(st, 403)
        self.assertEqual(e["message"], 'services is forbidden: User "system:anonymous" cannot list resource '
                                       '"services" in API group "" at the cluster scope')
        st, e = self.s.json("GET", "/api/v1/namespaces/default/services?watch=true", token=None)
        self.assertEqual(e["message"], 'services is forbidden: User "system:anonymous" cannot watch resource '
                                       '"services" in API group "" in the namespace "default"')
        st, e = self.s.json("GET", "/apis", token=None)
        self.assertEqual(st, 403)
        self.assertEqual(e["message"], 'forbidden: User "system:anonymous" cannot get path "/apis"')
        st, d = self.s.json("GET", "/version", token=None)
        self.assertEqual(st, 200)

    # check 17: bad token -> 401 JSON
    def test_bad_token(self):
        st, r, body = self.s.request("GET", "/api/v1/services", token="wrong")
        self.assertEqual(st, 401)
        self.assertEqual(body, fixture_body("401-unauthorized.http"))
        self.assertEqual(r.getheader("Content-Type"), "application/json")

    def test_rbac_deny_format(self):
        st, d = self.s.json("POST", LEASES, lease_body("kubevip-egress-demo"))
        st, cur = self.s.json("GET", LEASES + "/kubevip-egress-demo", token="kvtok")
        self.assertEqual(st, 200)
        st, r, body = self.s.request("PUT", LEASES + "/kubevip-egress-demo", cur, token="kvtok")
        self.assertEqual(st, 403)
        self.assertEqual(body, fixture_body("403-forbidden-lease-update.http"))
        st, r, body = self.s.request("GET", "/api/v1/services?watch=true", token="kvtok")
        self.assertEqual(body, fixture_body("403-forbidden-watch.http"))
        # admin API is for system:masters only
        st, e = self.s.json("GET", "/_kvtest/stats", token="kvtok")
        self.assertEqual(st, 403)
        # runtime deny rules
        self.s.admin("deny", {"rules": ["%s:get:leases" % KV_SA]})
        st, _ = self.s.json("GET", LEASES + "/kubevip-egress-demo", token="kvtok")
        self.assertEqual(st, 403)
        self.s.admin("deny", {"rules": ["%s:update:leases" % KV_SA, "%s:watch:services" % KV_SA]})

    def test_client_cert_auth_and_rotation(self):
        ctx = self.cert_ctx(os.path.join(self.s.dir, "client.crt"), os.path.join(self.s.dir, "client.key"))
        st, d = self.s.json("GET", "/_kvtest/stats", token=None, ctx=ctx)
        self.assertEqual(st, 200)   # CN=kvtest-admin, O=system:masters
        st, d = self.s.json("GET", "/_kvtest/whoami", token=None, ctx=ctx)
        self.assertEqual(d, {"username": "kvtest-admin", "groups": ["system:masters", "system:authenticated"]})
        # issue a kubelet-style cert, use it, rotate (revoke old) -> old gets 401 (check 21)
        d = self.s.admin("issue-cert", {"cn": "system:node:worker-1", "groups": ["system:nodes"]})
        with tempfile.TemporaryDirectory() as t:
            pem = os.path.join(t, "kubelet-client-current.pem")
            with open(pem, "w") as f:
                f.write(d["cert"] + d["key"])
            ctx = self.cert_ctx(pem, pem)
            st, _ = self.s.json("GET", "/api/v1/nodes", token=None, ctx=ctx)
            self.assertEqual(st, 200)
            st, d2 = self.s.json("GET", "/_kvtest/whoami", token=None, ctx=ctx)
            self.assertEqual(d2["username"], "system:node:worker-1")
            self.s.admin("revoke-cert", {"cert": d["cert"]})
            ctx = self.cert_ctx(pem, pem)
            st, e = self.s.json("GET", "/api/v1/nodes", token=None, ctx=ctx)
            self.assertEqual(st, 401)
            # untrusted CA -> 401, not a TLS failure
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-keyout", os.path.join(t, "o.key"), "-out", os.path.join(t, "o.crt"),
                            "-days", "1", "-subj", "/CN=intruder/O=system:masters"], check=True, capture_output=True)
            ctx = self.cert_ctx(os.path.join(t, "o.crt"), os.path.join(t, "o.key"))
            st, e = self.s.json("GET", "/api/v1/nodes", token=None, ctx=ctx)
            self.assertEqual(st, 401)
            self.assertEqual(e["message"], "Unauthorized")

    def test_token_rotation(self):
        self.s.admin("tokens", {"add": {"old-token": "rotor", "new-token": "rotor"}})
        st, _ = self.s.json("GET", "/api/v1/nodes", token="old-token")
        self.assertEqual(st, 200)
        self.s.admin("tokens", {"remove": ["old-token"]})
        st, _ = self.s.json("GET", "/api/v1/nodes", token="old-token")
        self.assertEqual(st, 401)
        st, _ = self.s.json("GET", "/api/v1/nodes", token="new-token")
        self.assertEqual(st, 200)

    def test_kubeconfig_files(self):
        for n in ("kubeconfig", "kubeconfig-cert"):
            with open(os.path.join(self.s.dir, n)) as f:
                txt = f.read()
            self.assertIn("server: " + self.s.url, txt)
            self.assertIn("certificate-authority: " + os.path.join(self.s.dir, "ca.crt"), txt)
            self.assertIn("current-context: kvtest", txt)
        out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                              os.path.join(self.s.dir, "server.crt")], capture_output=True, text=True).stdout
        self.assertIn("IP Address:127.0.0.1", out)
        self.assertIn("DNS:localhost", out)


if __name__ == "__main__":
    unittest.main()
