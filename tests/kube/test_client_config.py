#!/usr/bin/env python3
"""The client's kubeconfig handling against the test API server: every auth style, relative
paths, embedded data, tokenFile re-read on 401 and periodically, client certificate rotation
on disk (kubelet.conf style), insecure-skip-tls-verify, tls-server-name, in-cluster, exec."""
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeharness import (Requests, Server, b64file, run_once, skip_unless_ready)  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "k8s-api")


@skip_unless_ready
class ConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server()
        cls.tmp = tempfile.mkdtemp(prefix="kvkube-cfg-")

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def whoami(self, kubeconfig, args=()):
        out, rc, err = run_once(kubeconfig, [{"method": "GET", "path": "/_kvtest/whoami"}], args=args)
        self.assertEqual(rc, 0, err)
        return out[0]

    def test_token_kubeconfig(self):
        r = self.whoami(self.s.kubeconfig)
        self.assertEqual(r["status"], 200, r)
        self.assertEqual(r["body"]["username"], "kvtest-admin")

    def test_client_cert_kubeconfig(self):
        r = self.whoami(self.s.kubeconfig_cert)
        self.assertEqual(r["status"], 200, r)
        self.assertNotEqual(r["body"]["username"], "system:anonymous")

    def test_embedded_data(self):
        d = self.s.dir
        kc = os.path.join(self.tmp, "embedded.conf")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: %s\n"
                    "    certificate-authority-data: %s\ncontexts:\n- name: t\n  context: {cluster: t, user: u}\n"
                    "current-context: t\nusers:\n- name: u\n  user:\n    client-certificate-data: %s\n"
                    "    client-key-data: %s\n" % (self.s.url, b64file(os.path.join(d, "ca.crt")),
                                                   b64file(os.path.join(d, "client.crt")),
                                                   b64file(os.path.join(d, "client.key"))))
        r = self.whoami(kc)
        self.assertEqual(r["status"], 200, r)

    def test_relative_paths(self):
        sub = os.path.join(self.tmp, "rel")
        os.makedirs(os.path.join(sub, "pki"), exist_ok=True)
        for n in ("ca.crt", "client.crt", "client.key"):
            shutil.copy(os.path.join(self.s.dir, n), os.path.join(sub, "pki", n))
        kc = os.path.join(sub, "kubeconfig")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: %s\n"
                    "    certificate-authority: pki/ca.crt\ncontexts:\n- name: t\n  context: {cluster: t, user: u}\n"
                    "current-context: t\nusers:\n- name: u\n  user:\n    client-certificate: pki/client.crt\n"
                    "    client-key: ./pki/client.key\n" % self.s.url)
        # Run from elsewhere: the paths must resolve against the file's folder, not the cwd.
        cwd = os.getcwd()
        os.chdir("/")
        try:
            r = self.whoami(os.path.relpath(kc, "/"))
        finally:
            os.chdir(cwd)
        self.assertEqual(r["status"], 200, r)

    def test_anonymous_is_403(self):
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "anon.conf"))
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/api/v1/namespaces/default/services"}])
        self.assertEqual(out[0]["status"], 403, out)
        self.assertEqual(out[0]["reason"], "Forbidden")

    def test_bad_token_is_401(self):
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "bad.conf"), user_block="    token: nope\n")
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/api/v1/namespaces/default/services"}])
        self.assertEqual(out[0]["status"], 401, out)
        self.assertEqual(out[0]["reason"], "Unauthorized")

    def test_token_file_reread_on_401(self):
        tok = os.path.join(self.tmp, "token-401")
        self.s.admin("tokens", {"add": {"tok-a-401": "user-a"}})
        with open(tok, "w") as f:
            f.write("tok-a-401\n")
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "tokfile.conf"),
                                     user_block="    token: stale-literal\n    tokenFile: %s\n" % tok)
        r = Requests(kc)
        try:
            a = r.get("/_kvtest/whoami")
            self.assertEqual(a["body"]["username"], "user-a", "tokenFile must win over token")
            # Rotate: the new token is written, the old one revoked. The periodic reload is a minute
            # away, so only the 401 can make the client re-read the file.
            self.s.admin("tokens", {"add": {"tok-b-401": "user-b"}, "remove": ["tok-a-401"]})
            with open(tok + ".new", "w") as f:
                f.write("tok-b-401\n")
            os.rename(tok + ".new", tok)
            b = r.get("/_kvtest/whoami")
            self.assertEqual(b["status"], 200, b)
            self.assertEqual(b["body"]["username"], "user-b")
        finally:
            self.assertEqual(r.close(), 0)

    def test_token_file_periodic_reload(self):
        tok = os.path.join(self.tmp, "token-periodic")
        self.s.admin("tokens", {"add": {"tok-p1": "user-p1", "tok-p2": "user-p2"}})
        with open(tok, "w") as f:
            f.write("tok-p1")
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "tokfile2.conf"), user_block="    tokenFile: %s\n" % tok)
        r = Requests(kc, args=["--token-reload-ms", "300"])
        try:
            self.assertEqual(r.get("/_kvtest/whoami")["body"]["username"], "user-p1")
            with open(tok, "w") as f:
                f.write("tok-p2\n")
            # Both tokens stay valid: only the periodic re-read can switch.
            time.sleep(0.5)
            self.assertEqual(r.get("/_kvtest/whoami")["body"]["username"], "user-p2")
        finally:
            self.assertEqual(r.close(), 0)

    def _issue(self, cn):
        d = self.s.admin("issue-cert", {"cn": cn})
        return d["cert"], d["key"]

    def _replace(self, path, text):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def test_client_cert_rotation_separate_files(self):
        crt, key = os.path.join(self.tmp, "rot.crt"), os.path.join(self.tmp, "rot.key")
        c1, k1 = self._issue("rot-one")
        self._replace(crt, c1)
        self._replace(key, k1)
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "rot.conf"),
                                     user_block="    client-certificate: %s\n    client-key: %s\n" % (crt, key))
        r = Requests(kc)
        try:
            self.assertEqual(r.get("/_kvtest/whoami")["body"]["username"], "rot-one")
            c2, k2 = self._issue("rot-two")
            self._replace(crt, c2)
            self._replace(key, k2)
            w = r.get("/_kvtest/whoami")
            self.assertEqual(w["status"], 200, w)
            self.assertEqual(w["body"]["username"], "rot-two")
        finally:
            self.assertEqual(r.close(), 0)

    def test_kubelet_style_rotation_symlink(self):
        """kubelet.conf: cert and key in one PEM, a symlink the kubelet re-points; the old cert is then
        revoked, so a client still on it would get 401."""
        pki = os.path.join(self.tmp, "kubelet-pki")
        os.makedirs(pki, exist_ok=True)
        cur = os.path.join(pki, "kubelet-client-current.pem")
        c1, k1 = self._issue("system:node:one")
        with open(os.path.join(pki, "kubelet-client-1.pem"), "w") as f:
            f.write(c1 + k1)
        os.symlink(os.path.join(pki, "kubelet-client-1.pem"), cur)
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "kubelet.conf"),
                                     user_block="    client-certificate: %s\n    client-key: %s\n" % (cur, cur))
        r = Requests(kc)
        try:
            self.assertEqual(r.get("/_kvtest/whoami")["body"]["username"], "system:node:one")
            c2, k2 = self._issue("system:node:two")
            with open(os.path.join(pki, "kubelet-client-2.pem"), "w") as f:
                f.write(k2 + c2)  # order inside the file does not matter
            os.symlink(os.path.join(pki, "kubelet-client-2.pem"), cur + ".new")
            os.rename(cur + ".new", cur)
            self.s.admin("revoke-cert", {"cert": c1})
            w = r.get("/_kvtest/whoami")
            self.assertEqual(w["status"], 200, w)
            self.assertEqual(w["body"]["username"], "system:node:two")
            l = r.get("/api/v1/namespaces/default/services")
            self.assertIn(l["status"], (200, 403), l)
        finally:
            self.assertEqual(r.close(), 0)

    def test_insecure_skip_tls_verify(self):
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "insecure.conf"), ca=False,
                                     cluster_extra="    insecure-skip-tls-verify: true\n",
                                     user_block="    token: %s\n" % self.s.token)
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/version"}])
        self.assertEqual(out[0]["status"], 200, out)
        self.assertIn("TLS verification is disabled", err)

    def test_unknown_ca_fails(self):
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "noca.conf"), ca=False,
                                     user_block="    token: %s\n" % self.s.token)
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/version"}])
        self.assertEqual(out[0]["errno"], "EPROTO", out)

    def test_tls_server_name(self):
        # Connect to 127.0.0.1 but verify the certificate for "localhost" (in its SANs) ...
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "sni.conf"),
                                     cluster_extra="    tls-server-name: localhost\n",
                                     user_block="    token: %s\n" % self.s.token)
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/version"}])
        self.assertEqual(out[0]["status"], 200, out)
        # ... and a name the certificate does not carry fails verification.
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "sni-bad.conf"),
                                     cluster_extra="    tls-server-name: not-the-server.example\n",
                                     user_block="    token: %s\n" % self.s.token)
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/version"}])
        self.assertEqual(out[0]["errno"], "EPROTO", out)

    def test_in_cluster(self):
        root = os.path.join(self.tmp, "pod")
        sa = os.path.join(root, "var/run/secrets/kubernetes.io/serviceaccount")
        os.makedirs(sa, exist_ok=True)
        shutil.copy(os.path.join(self.s.dir, "ca.crt"), os.path.join(sa, "ca.crt"))
        with open(os.path.join(sa, "token"), "w") as f:
            f.write(self.s.token)
        with open(os.path.join(sa, "namespace"), "w") as f:
            f.write("kube-system")
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.s.port)}
        out, rc, err = run_once(None, [{"method": "GET", "path": "/_kvtest/whoami"}], args=["--in-cluster", root],
                                env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out[0]["body"]["username"], "kvtest-admin")

    def test_exec_plugin_not_supported(self):
        out, rc, err = run_once(os.path.join(FIXTURES, "kubeconfig", "exec-plugin.conf"), [])
        self.assertEqual(rc, 1)
        self.assertIn("exec-plugin.conf", out[0]["message"])
        self.assertIn("exec credential plugins are not supported", out[0]["message"])

    def test_missing_cert_file_fails_at_start(self):
        kc = self.s.write_kubeconfig(os.path.join(self.tmp, "nofile.conf"),
                                     user_block="    client-certificate: /nonexistent.crt\n"
                                                "    client-key: /nonexistent.key\n")
        out, rc, err = run_once(kc, [])
        self.assertEqual(rc, 1)
        self.assertEqual(out[0]["errno"], "ENOENT", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
