"""Fault knobs and error shapes (spec section 8: 18, 19) plus the stats endpoint."""
import json
import socket
import ssl
import time
import unittest

from kvharness import LEASES, SVCS, ServerTestCase, lease_body, svc_body
from test_writes import fixture_body


class FaultTest(ServerTestCase):

    def tearDown(self):
        self.s.admin("clear-faults")

    # check 18
    def test_fail_shapes(self):
        self.s.admin("fail", {"code": 429, "plain": True, "retry_after": 1, "match": "/services"})
        st, r, body = self.s.request("GET", SVCS)
        self.assertEqual(st, 429)
        self.assertEqual(body, fixture_body("429-apf-plaintext.http"))
        self.assertEqual(r.getheader("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.getheader("Retry-After"), "1")
        st, r, body = self.s.request("GET", SVCS)
        self.assertEqual(st, 200)   # count defaults to 1
        self.s.admin("fail", {"code": 429, "retry_after": 1, "count": 2})
        for _ in range(2):
            st, r, body = self.s.request("GET", "/api/v1/services?watch=true")
            self.assertEqual(body, fixture_body("429-status-json.http"))
            self.assertEqual(r.getheader("Retry-After"), "1")
        self.s.admin("fail", {"code": 503, "retry_after": 5})
        st, r, body = self.s.request("GET", SVCS)
        self.assertEqual(body, fixture_body("503-starting.http"))
        self.assertEqual(r.getheader("Retry-After"), "5")
        self.s.admin("fail", {"code": 500, "message": "Internal error occurred: etcdserver: request timed out"})
        st, d = self.s.json("GET", SVCS)
        self.assertEqual((st, d["reason"]), (500, "InternalError"))
        self.s.admin("fail", {"code": 504, "method": "PUT", "match": "leases"})
        st, d = self.s.json("GET", LEASES)
        self.assertEqual(st, 200)   # method filter
        self.s.json("POST", LEASES, lease_body("f1"))
        st, cur = self.s.json("GET", LEASES + "/f1")
        st, d = self.s.json("PUT", LEASES + "/f1", cur)
        self.assertEqual((st, d["reason"]), (504, "Timeout"))

    def test_stall(self):
        self.s.admin("stall", {"ms": 600, "count": 1, "match": "configmaps"})
        t0 = time.monotonic()
        st, _ = self.s.json("GET", "/api/v1/namespaces/default/configmaps")
        self.assertGreaterEqual(time.monotonic() - t0, 0.55)
        t0 = time.monotonic()
        st, _ = self.s.json("GET", "/api/v1/namespaces/default/configmaps")
        self.assertLess(time.monotonic() - t0, 0.5)
        self.s.admin("stall", {"ms": 300, "until_cleared": True, "match": "nodes"})
        for _ in range(2):
            t0 = time.monotonic()
            self.s.json("GET", "/api/v1/nodes")
            self.assertGreaterEqual(time.monotonic() - t0, 0.28)
        self.s.admin("stall", {"clear": True})
        t0 = time.monotonic()
        self.s.json("GET", "/api/v1/nodes")
        self.assertLess(time.monotonic() - t0, 0.25)

    def test_offline_and_drop(self):
        c = self.s.conn()
        st, r, _ = self.s.request("GET", "/version", conn=c)  # keep-alive connection
        self.assertEqual(st, 200)
        self.s.admin("offline", {"on": True, "seconds": 1.5})
        time.sleep(0.2)
        with self.assertRaises((OSError, ssl.SSLError, ConnectionError)):
            self.s.request("GET", "/version", conn=c)
        with self.assertRaises((OSError, ssl.SSLError, ConnectionError)):
            self.s.request("GET", "/version")
        # the admin API is unreachable too while offline: "seconds" (or SIGUSR1) brings it back
        time.sleep(1.5)
        st, r, _ = self.s.request("GET", "/version")
        self.assertEqual(st, 200)
        self.s.admin("offline", {"on": True})
        with self.assertRaises((OSError, ssl.SSLError, ConnectionError)):
            self.s.request("GET", "/version")
        import signal
        self.s.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        st, r, _ = self.s.request("GET", "/version")
        self.assertEqual(st, 200)
        c = self.s.conn()
        self.s.request("GET", "/version", conn=c)
        self.s.admin("drop-connections")
        time.sleep(0.2)
        with self.assertRaises((OSError, ssl.SSLError, ConnectionError, http_client_errors())):
            self.s.request("GET", "/version", conn=c)

    def test_compact_and_reset(self):
        st, a = self.s.json("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c1"}})
        self.s.json("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c2"}})
        d = self.s.admin("compact")
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=%s"
                       % a["metadata"]["resourceVersion"])
        self.assertEqual(w.read_headers(), 200)
        evs, _, clean = w.events(timeout=5)
        self.assertEqual(evs[0]["type"], "ERROR")
        self.assertEqual(evs[0]["object"]["code"], 410)
        self.s.admin("reset")
        st, d = self.s.json("GET", "/api/v1/namespaces/default/configmaps")
        self.assertEqual(d["items"], [])
        st, d = self.s.json("GET", "/api/v1/namespaces")
        self.assertEqual(sorted(i["metadata"]["name"] for i in d["items"]),
                         ["default", "kube-node-lease", "kube-public", "kube-system"])

    def test_stats(self):
        self.s.admin("stats-reset")
        for i in range(5):
            self.s.json("GET", SVCS, headers={"User-Agent": "kvelectd/0.1"})
        self.s.json("POST", LEASES, lease_body("stats-l"))
        w = self.s.raw("/api/v1/namespaces?watch=true")
        w.read_headers()
        st, d = self.s.json("GET", "/_kvtest/stats")
        self.assertEqual(d["by_verb_resource"]["list services"], 5)
        self.assertEqual(d["by_verb_resource"]["create leases"], 1)
        self.assertEqual(d["by_user_agent"]["kvelectd/0.1"], 5)
        self.assertGreaterEqual(d["open_watches"], 1)
        self.assertEqual(d["watches_by_resource"].get("namespaces"), 1)
        self.assertEqual(sum(p["total"] for p in d["per_second"]), d["requests_total"])
        w.close()


def http_client_errors():
    import http.client
    return http.client.HTTPException


if __name__ == "__main__":
    unittest.main()
