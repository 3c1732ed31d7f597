#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Bad credentials at a live API server (issue 11, item 4): kvpd restarted with
- a token the API server does not know (401),
- a valid token of a ServiceAccount that has no RBAC rights (403),
- a certificate-authority that did not sign the server's certificate (untrusted),
- an expired client certificate,
says what is wrong, naming its kubeconfig and the field to look at, keeps running, and leaves the node as it
was: the Service "good" keeps its VIP, its SNAT and its source address as seen by the external host all along
(kvelectd, whose credentials are fine, keeps the Lease; kvpd keeps forwarding its renewals). Given its right
kubeconfig back, kvpd takes up the Service again without a flap.

  PYTHONPATH=tests/lib python3 tests/kvpd/test_credentials.py --build-dir BUILD [-v]
Standard library only (and the openssl CLI).
"""
import base64
import os
import re
import signal
import subprocess
import tempfile
import time

import kvc_test
from cluster import EXT4, VIPS4
from dbus_p2p import Connection

NET_PATH, NET_IF = "/io/kvegress/Net1", "io.kvegress.Net1"
GOOD_VIP = VIPS4[1]
HOLD = 8.0  # seconds the node is watched with kvpd unable to read the API: longer than renewDeadline (6 s)


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr))


class CredentialsTest(kvc_test.ClusterTestCase):
    NODES = 1
    # Lease 10 s / renewDeadline 6 s / retry 1 s, as tests/cluster/test_restart.py: room for a restart on a
    # loaded CI machine. A grant is at most renewDeadline long, shorter than HOLD: a grant nobody renewed
    # would expire while the node is watched.
    LEASE = (10, 6, 1)

    def kvnetd(self, method):
        with Connection(self.c.node(1)._paths()["kvnetd_sock"], timeout=5) as c:
            return c.call(NET_PATH, NET_IF, method)[0]

    def good_state(self):
        return ([v[:3] for v in self.kvnetd("ListVips") if v[0] == "default/good"],
                [e for e in self.kvnetd("ListEgress") if e[0] == "default/good"])

    def kvpd_log_since(self, offset):
        with open(os.path.join(self.c.node(1).dir, "kvpd.log"), "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def kvpd_log_size(self):
        return os.path.getsize(os.path.join(self.c.node(1).dir, "kvpd.log"))

    def setUp(self):
        super().setUp()
        c = self.c
        if "good-a" not in c.pods:
            c.add_pod("good-a", 1, labels={"app": "good"}, dual=False)
            c.add_service("good", [GOOD_VIP])
        self.wait(lambda: self.good_state()[1], 30, "default/good programmed")
        self.wait_source(c.pods["good-a"], GOOD_VIP)
        self.good_before = self.good_state()
        self.kubeconfig = c.node(1)._paths()["kubeconfig_kvpd"]
        with open(self.kubeconfig) as f:
            self.right_kubeconfig = f.read()
        self.tmp = tempfile.mkdtemp(prefix="kv-creds-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.tmp])
        self.addCleanup(self.restore)

    def restore(self):
        """After a failed case: the right kubeconfig back, so that the next case starts from a working node."""
        with open(self.kubeconfig) as f:
            if f.read() != self.right_kubeconfig:
                self.restart_kvpd(self.right_kubeconfig)

    def restart_kvpd(self, kubeconfig_text):
        """A crash and systemd's restart, with the kubeconfig an operator just put in place."""
        node = self.c.node(1)
        node.procs["kvpd"].stop(signal.SIGKILL)
        with open(self.kubeconfig, "w") as f:
            f.write(kubeconfig_text)
        node.start_daemon("kvpd")

    def hold_and_check(self, what, offset, must_say):
        """For HOLD seconds kvpd cannot read the API: the node must not change; kvpd must say what is wrong."""
        t_end = time.time() + HOLD
        t0 = time.time()
        while time.time() < t_end:
            self.assertTrue(self.c.node(1).procs["kvpd"].alive(), "%s: kvpd exited:\n%s" % (
                what, self.kvpd_log_since(offset)[-3000:]))
            self.assertEqual(self.good_state(), self.good_before, "%s: default/good's state changed" % what)
            self.assertIn(GOOD_VIP, self.c.node(1).vips(), "%s: the VIP left the node" % what)
            time.sleep(0.25)
        self.assertEqual(self.source(self.c.pods["good-a"], "tcp", EXT4, 80), GOOD_VIP, what)
        self.assertEqual([e for e in self.c.addr_watch.events(GOOD_VIP) if e[0] >= t0], [], "%s: the VIP flapped" % what)
        log = self.kvpd_log_since(offset)
        for text in must_say:
            self.assertIn(text, log, "%s: kvpd's log does not say %r:\n%s" % (what, text, log[-3000:]))
        self.assertNotIn("Sanitizer", log)
        said = [l for l in log.splitlines() if "warning" in l and self.kubeconfig in l]
        print("\n%s: kvpd said:\n  %s" % (what, "\n  ".join(said[:3])), flush=True)

    def recover(self, what):
        """The right kubeconfig back: kvpd reads the API again and the node stays as it was."""
        t0 = time.time()
        offset = self.kvpd_log_size()
        self.restart_kvpd(self.right_kubeconfig)
        self.wait(lambda: "synced" in self.kvpd_log_since(offset) or "programmed" in self.kvpd_log_since(offset),
                  30, "%s: kvpd back at work" % what)
        time.sleep(1.0)
        self.assertEqual(self.good_state(), self.good_before, "%s: default/good's state changed" % what)
        self.assertEqual([e for e in self.c.addr_watch.events(GOOD_VIP) if e[0] >= t0], [], "%s: the VIP flapped" % what)
        kvc_test.note_timing("%s: kvpd back at work after the right kubeconfig" % what, time.time() - t0)

    def with_user(self, user_block):
        return re.sub(r"(?ms)^users:\n- name: (\S+)\n  user:\n.*?(?=^contexts:)",
                      lambda m: "users:\n- name: %s\n  user:\n%s" % (m.group(1), user_block), self.right_kubeconfig)

    # ------------------------------------------------------------------ cases
    def test_1_unknown_token(self):
        offset = self.kvpd_log_size()
        self.restart_kvpd(self.with_user("    token: not-a-token-the-api-server-knows\n"))
        self.hold_and_check("unknown token", offset, [self.kubeconfig, "401", "token"])
        self.recover("unknown token")

    def test_2_token_without_rbac_rights(self):
        c = self.c
        status, body = c.api("POST", "/api/v1/namespaces/default/serviceaccounts",
                             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-rights"}})
        self.assertIn(status, (200, 201, 409), body)
        status, obj = c.api("POST", "/api/v1/namespaces/default/serviceaccounts/no-rights/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 600}})
        self.assertIn(status, (200, 201), obj)
        offset = self.kvpd_log_size()
        self.restart_kvpd(self.with_user("    token: %s\n" % obj["status"]["token"]))
        self.hold_and_check("token without RBAC rights", offset, [self.kubeconfig, "403"])
        self.recover("token without RBAC rights")

    def test_3_untrusted_certificate_authority(self):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "30", "-subj", "/CN=not-the-cluster-ca",
                cwd=self.tmp)
        with open(os.path.join(self.tmp, "other-ca.crt"), "rb") as f:
            other = base64.b64encode(f.read()).decode()
        text = re.sub(r"certificate-authority-data: \S+", "certificate-authority-data: " + other,
                      self.right_kubeconfig)
        self.assertNotEqual(text, self.right_kubeconfig)
        offset = self.kvpd_log_size()
        self.restart_kvpd(text)
        self.hold_and_check("untrusted certificate authority", offset,
                            [self.kubeconfig, "certificate-authority"])
        self.recover("untrusted certificate authority")

    def test_4_expired_client_certificate(self):
        api_dir = self.c.api_dir
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "client.key", "-out", "client.csr",
                "-subj", "/O=system:serviceaccounts/CN=system:serviceaccount:kube-system:kvegress", cwd=self.tmp)
        openssl("x509", "-req", "-in", "client.csr", "-CA", os.path.join(api_dir, "ca.crt"),
                "-CAkey", os.path.join(api_dir, "ca.key"), "-days", "-1", "-out", "client.crt", cwd=self.tmp)
        data = {}
        for n in ("client.crt", "client.key"):
            with open(os.path.join(self.tmp, n), "rb") as f:
                data[n] = base64.b64encode(f.read()).decode()
        offset = self.kvpd_log_size()
        self.restart_kvpd(self.with_user("    client-certificate-data: %s\n    client-key-data: %s\n" % (
            data["client.crt"], data["client.key"])))
        self.hold_and_check("expired client certificate", offset, [self.kubeconfig, "expired"])
        self.recover("expired client certificate")


if __name__ == "__main__":
    kvc_test.main()
