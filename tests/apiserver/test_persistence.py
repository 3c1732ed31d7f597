"""Process lifecycle: restart keeps state (UIDs, RV counter), --reset, SIGTERM, IPv6 bind, --san."""
import json
import os
import signal
import socket
import subprocess
import time
import unittest

from kvharness import LEASES, SVCS, Server, lease_body, svc_body


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class PersistenceTest(unittest.TestCase):
    def setUp(self):
        self.s = Server(["--san", "192.0.2.10", "--san", "api.kvtest.example"])

    def tearDown(self):
        self.s.close()

    def test_restart_keeps_state_and_reset(self):
        st, svc = self.s.json("POST", SVCS, svc_body("keep", type="LoadBalancer"))
        st, lease = self.s.json("POST", LEASES, lease_body("keep"))
        rv_before = int(lease["metadata"]["resourceVersion"])
        t0 = time.monotonic()
        self.assertEqual(self.s.stop(), 0)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.s.start()
        st, svc2 = self.s.json("GET", SVCS + "/keep")
        self.assertEqual(st, 200)
        self.assertEqual(svc2["metadata"]["uid"], svc["metadata"]["uid"])
        self.assertEqual(svc2["spec"]["clusterIP"], svc["spec"]["clusterIP"])
        st, l2 = self.s.json("GET", LEASES + "/keep")
        self.assertEqual(l2["metadata"]["resourceVersion"], lease["metadata"]["resourceVersion"])
        st, d = self.s.json("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "after"}})
        self.assertEqual(int(d["metadata"]["resourceVersion"]), rv_before + 1)
        # watch from the pre-restart RV still works
        w = self.s.raw(SVCS + "?watch=true&resourceVersion=%d&timeoutSeconds=1" % rv_before)
        self.assertEqual(w.read_headers(), 200)
        evs, _, clean = w.events(timeout=5)
        self.assertTrue(clean)
        w.close()
        # debounced save: a change survives a SIGKILL shortly after
        st, d = self.s.json("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "debounced"}})
        time.sleep(0.3)
        self.s.stop(signal.SIGKILL)
        self.s.start()
        st, _ = self.s.json("GET", "/api/v1/namespaces/default/configmaps/debounced")
        self.assertEqual(st, 200)
        # --reset
        self.s.restart(["--reset"])
        st, d = self.s.json("GET", SVCS)
        self.assertEqual(d["items"], [])
        st, d = self.s.json("GET", "/api/v1/namespaces")
        self.assertEqual(len(d["items"]), 4)
        # the same certs and token are kept
        self.assertTrue(os.path.exists(os.path.join(self.s.dir, "ca.crt")))

    def test_sigterm_with_open_watches(self):
        ws = []
        for _ in range(5):
            w = self.s.raw("/api/v1/namespaces?watch=true")
            w.read_headers()
            ws.append(w)
        t0 = time.monotonic()
        self.assertEqual(self.s.stop(), 0)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertFalse(os.path.exists(os.path.join(self.s.dir, "ready")))
        for w in ws:
            w.close()

    def test_san(self):
        out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                              os.path.join(self.s.dir, "server.crt")], capture_output=True, text=True).stdout
        self.assertIn("IP Address:192.0.2.10", out)
        self.assertIn("DNS:api.kvtest.example", out)
        self.assertIn("IP Address:0:0:0:0:0:0:0:1", out)


@unittest.skipUnless(have_ipv6(), "no IPv6 loopback")
class IPv6Test(unittest.TestCase):
    def test_ipv6_bind(self):
        s = Server(bind="::1")
        try:
            self.assertTrue(s.url.startswith("https://[::1]:"))
            st, d = s.json("GET", "/api/v1/namespaces")
            self.assertEqual(st, 200)
            with open(s.kubeconfig()) as f:
                self.assertIn("server: https://[::1]:", f.read())
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
