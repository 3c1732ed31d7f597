#!/usr/bin/env python3
"""One-shot requests of the client against the test API server: create, get, update with
resourceVersion and 409, Lease rules, merge-patch of annotations (helper, null deletes, RV
precondition), the status subresource, delete, Events, error bodies (JSON and plain text),
429/503 Retry-After, timeouts against a stalled server, refused connections, cancellation."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeharness import Requests, Server, run_once, skip_unless_ready, svc  # noqa: E402

SVCS = "/api/v1/namespaces/default/services"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
CMS = "/api/v1/namespaces/default/configmaps"


@skip_unless_ready
class RequestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server()
        cls.r = Requests(cls.s.kubeconfig)

    @classmethod
    def tearDownClass(cls):
        rc = cls.r.close()
        cls.s.close()
        assert rc == 0, rc

    def setUp(self):
        self.s.admin("clear-faults")

    def call(self, method, path, body=None, **kw):
        c = dict(method=method, path=path, **kw)
        if body is not None:
            c["body"] = body
        return self.r.call(c)

    def test_create_get_update_conflict_delete(self):
        a = self.call("POST", SVCS, svc("rq-a"))
        self.assertEqual(a["status"], 201, a)
        rv = a["body"]["metadata"]["resourceVersion"]
        dup = self.call("POST", SVCS, svc("rq-a"))
        self.assertEqual((dup["status"], dup["reason"]), (409, "AlreadyExists"))
        g = self.call("GET", SVCS + "/rq-a")
        self.assertEqual(g["body"]["metadata"]["uid"], a["body"]["metadata"]["uid"])

        upd = g["body"]
        upd["metadata"].setdefault("labels", {})["x"] = "1"
        u = self.call("PUT", SVCS + "/rq-a", upd)
        self.assertEqual(u["status"], 200, u)
        self.assertNotEqual(u["body"]["metadata"]["resourceVersion"], rv)

        # The same body again carries the old RV now: 409 Conflict with the apiserver's message.
        stale = self.call("PUT", SVCS + "/rq-a", upd)
        self.assertEqual((stale["status"], stale["reason"]), (409, "Conflict"))
        self.assertIn("the object has been modified; please apply your changes to the latest version",
                      stale["message"])

        d = self.call("DELETE", SVCS + "/rq-a")
        self.assertEqual(d["status"], 200, d)
        nf = self.call("GET", SVCS + "/rq-a")
        self.assertEqual((nf["status"], nf["reason"]), (404, "NotFound"))
        self.assertEqual(nf["message"], 'services "rq-a" not found')

    def test_lease_update_needs_rv(self):
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "rq-lease", "namespace": "default"},
                "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 5,
                         "acquireTime": "2025-05-12T08:14:05.512334Z", "renewTime": "2025-05-12T08:14:05.512334Z"}}
        c = self.call("POST", LEASES, body)
        self.assertEqual(c["status"], 201, c)
        nrv = self.call("PUT", LEASES + "/rq-lease", body)
        self.assertEqual(nrv["status"], 422, nrv)
        body["metadata"]["resourceVersion"] = c["body"]["metadata"]["resourceVersion"]
        body["spec"]["holderIdentity"] = "n2"
        ok = self.call("PUT", LEASES + "/rq-lease", body)
        self.assertEqual(ok["status"], 200, ok)
        self.assertEqual(ok["body"]["spec"]["holderIdentity"], "n2")
        again = self.call("PUT", LEASES + "/rq-lease", body)
        self.assertEqual((again["status"], again["reason"]), (409, "Conflict"))
        bad = dict(body)
        bad["spec"] = dict(body["spec"], renewTime="2025-05-12T08:14:05.51Z")
        bad["metadata"] = dict(body["metadata"], resourceVersion=ok["body"]["metadata"]["resourceVersion"])
        b = self.call("PUT", LEASES + "/rq-lease", bad)
        self.assertEqual(b["status"], 400, b)

    def test_merge_patch_annotations(self):
        c = self.call("POST", SVCS, svc("rq-patch", annotations={"keep": "1", "gone": "2"}))
        self.assertEqual(c["status"], 201, c)
        p = self.r.call({"op": "patch_annotations", "resource": "services", "namespace": "default",
                         "name": "rq-patch", "annotations": {"kube-vip.io/vipHost": "n1", "gone": None}})
        self.assertEqual(p["status"], 200, p)
        ann = p["body"]["metadata"]["annotations"]
        self.assertEqual(ann, {"keep": "1", "kube-vip.io/vipHost": "n1"})
        # With a stale resourceVersion the patch is refused: the RV is a precondition.
        st = self.r.call({"op": "patch_annotations", "resource": "services", "namespace": "default",
                          "name": "rq-patch", "annotations": {"x": "y"},
                          "rv": c["body"]["metadata"]["resourceVersion"]})
        self.assertEqual((st["status"], st["reason"]), (409, "Conflict"))
        ok = self.r.call({"op": "patch_annotations", "resource": "services", "namespace": "default",
                          "name": "rq-patch", "annotations": {"x": "y"},
                          "rv": p["body"]["metadata"]["resourceVersion"]})
        self.assertEqual(ok["status"], 200, ok)
        # A PATCH without a content type is refused by the library itself.
        bad = self.call("PATCH", SVCS + "/rq-patch", {"metadata": {}})
        self.assertEqual(bad["errno"], "EINVAL")
        u = self.call("PATCH", SVCS + "/rq-patch", {"metadata": {}}, content_type="application/yaml-patch")
        self.assertEqual(u["status"], 415, u)

    def test_status_subresource(self):
        c = self.call("POST", SVCS, dict(svc("rq-lb"), spec={"type": "LoadBalancer",
                                                              "ports": [{"port": 80, "protocol": "TCP"}]}))
        self.assertEqual(c["status"], 201, c)
        p = self.call("PATCH", SVCS + "/rq-lb/status",
                      {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.220"}]}},
                       "spec": {"type": "ClusterIP"}},
                      content_type="application/merge-patch+json")
        self.assertEqual(p["status"], 200, p)
        self.assertEqual(p["body"]["status"]["loadBalancer"]["ingress"][0],
                         {"ip": "192.168.10.220", "ipMode": "VIP"})
        self.assertEqual(p["body"]["spec"]["type"], "LoadBalancer", "status must ignore spec")
        # PUT /status with the current object, as kube-vip does.
        obj = p["body"]
        obj["status"]["loadBalancer"]["ingress"] = [{"ip": "192.168.10.221", "ports": [{"port": 80, "protocol": "TCP"}]}]
        u = self.call("PUT", SVCS + "/rq-lb/status", obj)
        self.assertEqual(u["status"], 200, u)
        self.assertEqual(u["body"]["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.10.221")

    def test_event(self):
        c = self.call("POST", SVCS, svc("rq-ev"))
        q = self.r.call({"op": "event", "namespace": "default", "kind": "Service", "name": "rq-ev",
                         "uid": c["body"]["metadata"]["uid"], "type": "Normal", "reason": "EgressActive",
                         "message": "egress via 192.168.10.220"})
        self.assertEqual(q["queued"], 0)
        deadline = time.time() + 10
        while time.time() < deadline:
            items, _ = self.s.list_all("/api/v1/namespaces/default/events")
            mine = [e for e in items if e["involvedObject"]["name"] == "rq-ev"]
            if mine:
                break
            # The event is fire and forget; a request behind it flushes the loop.
            self.call("GET", "/version")
        self.assertEqual(len(mine), 1)
        e = mine[0]
        self.assertEqual(e["reason"], "EgressActive")
        self.assertEqual(e["involvedObject"]["uid"], c["body"]["metadata"]["uid"])
        self.assertEqual(e["source"]["component"], "kvegress-test")
        self.assertTrue(e["metadata"]["name"].startswith("rq-ev."))

    def test_event_aggregation(self):
        """The same Event 40 times: one object whose count says how many were written, the rest dropped by
        the per-object rate limit (burst 25); another message is another object."""
        c = self.call("POST", SVCS, svc("rq-agg"))
        uid = c["body"]["metadata"]["uid"]

        def emit(message):
            q = self.r.call({"op": "event", "namespace": "default", "kind": "Service", "name": "rq-agg",
                             "uid": uid, "type": "Warning", "reason": "EgressFailed", "message": message})
            self.assertEqual(q["queued"], 0)

        def mine():
            items, _ = self.s.list_all("/api/v1/namespaces/default/events")
            return sorted((e for e in items if e["involvedObject"]["name"] == "rq-agg"), key=lambda e: e["message"])

        for _ in range(20):
            emit("kvnetd refused SetEgress: vip4: not in --vip-range")
        emit("kvelectd refused Campaign: more than 4096 campaigns")
        for _ in range(20):
            emit("kvnetd refused SetEgress: vip4: not in --vip-range")
        deadline = time.time() + 10
        got = []
        while time.time() < deadline:
            self.call("GET", "/version")  # a request behind them flushes the loop
            got = mine()
            if len(got) == 2 and got[1]["count"] == 24:
                break
            time.sleep(0.1)
        self.assertEqual([(e["message"][:16], e["count"]) for e in got],
                         [("kvelectd refused", 1), ("kvnetd refused S", 24)], got)
        self.assertEqual(got[1]["type"], "Warning")
        self.assertGreaterEqual(got[1]["lastTimestamp"], got[1]["firstTimestamp"])

    def test_event_created_again_after_deletion(self):
        """An Event deleted meanwhile: the PATCH of the next repeat finds it gone (404), the one after creates it
        again from the record (kept as text), with the count of every repeat and the first one's
        firstTimestamp."""
        c = self.call("POST", SVCS, svc("rq-evdel"))
        uid = c["body"]["metadata"]["uid"]

        def emit():
            q = self.r.call({"op": "event", "namespace": "default", "kind": "Service", "name": "rq-evdel",
                             "uid": uid, "type": "Normal", "reason": "EgressActive", "message": "egress via x"})
            self.assertEqual(q["queued"], 0)

        def mine(count):
            deadline = time.time() + 10
            got = []
            while time.time() < deadline:
                self.call("GET", "/version")  # a request behind them flushes the loop
                items, _ = self.s.list_all("/api/v1/namespaces/default/events")
                got = [e for e in items if e["involvedObject"]["name"] == "rq-evdel"]
                if count is None or (len(got) == 1 and got[0]["count"] == count):
                    break
                time.sleep(0.1)
            return got

        emit()
        first = mine(1)
        self.assertEqual(len(first), 1, first)
        d = self.call("DELETE", "/api/v1/namespaces/default/events/" + first[0]["metadata"]["name"])
        self.assertEqual(d["status"], 200, d)
        emit()  # its PATCH finds the Event gone
        emit()  # created again (at once, or when that 404 comes if it is still in flight)
        again = mine(3)
        self.assertEqual(len(again), 1, again)
        e = again[0]
        self.assertNotEqual(e["metadata"]["name"], first[0]["metadata"]["name"])
        self.assertEqual((e["count"], e["message"], e["reason"], e["involvedObject"]["uid"]),
                         (3, "egress via x", "EgressActive", uid))
        self.assertEqual(e["firstTimestamp"], first[0]["firstTimestamp"])
        self.assertEqual(e["source"], {"component": "kvegress-test", "host": "test-host"})

    def test_unknown_path_plain_404(self):
        r = self.call("GET", "/nope/really")
        self.assertEqual(r["status"], 404)
        self.assertIsNone(r["body"])
        self.assertEqual(r["message"], "404 page not found")

    def test_429_plain_retry_after(self):
        self.s.admin("fail", {"code": 429, "plain": True, "retry_after": 3, "match": "/configmaps/rq-429"})
        r = self.call("GET", CMS + "/rq-429")
        self.assertEqual((r["status"], r["retry_after"]), (429, 3), r)
        self.assertIn("Too many requests", r["message"])
        self.assertEqual(self.call("GET", CMS + "/rq-429")["status"], 404)

    def test_429_json_and_503_retry_after(self):
        self.s.admin("fail", {"code": 429, "retry_after": 2, "match": "/configmaps/rq-429j"})
        r = self.call("GET", CMS + "/rq-429j")
        self.assertEqual((r["status"], r["reason"], r["retry_after"]), (429, "TooManyRequests", 2), r)
        self.s.admin("fail", {"code": 503, "retry_after": 5, "match": "/configmaps/rq-503"})
        r = self.call("GET", CMS + "/rq-503")
        self.assertEqual((r["status"], r["retry_after"]), (503, 5), r)
        self.s.admin("fail", {"code": 500, "match": "/configmaps/rq-500"})
        r = self.call("GET", CMS + "/rq-500")
        self.assertEqual((r["status"], r["reason"], r["retry_after"]), (500, "InternalError", 0), r)

    def test_timeout_on_stall(self):
        self.s.admin("stall", {"ms": 3000, "match": "/configmaps/rq-stall"})
        r = self.call("GET", CMS + "/rq-stall", timeout_ms=500)
        self.assertEqual(r["errno"], "ETIMEDOUT", r)
        self.assertGreaterEqual(r["elapsed_ms"], 450)
        self.assertLess(r["elapsed_ms"], 2500)
        # The client's default timeout applies when the request has none.
        self.s.admin("stall", {"ms": 3000, "match": "/configmaps/rq-stall2"})
        out, rc, err = run_once(self.s.kubeconfig, [{"method": "GET", "path": CMS + "/rq-stall2"}],
                                args=["--timeout-ms", "700"])
        self.assertEqual(out[0]["errno"], "ETIMEDOUT", out)

    def test_connection_refused(self):
        kc = self.s.write_kubeconfig(os.path.join(self.s.dir, "closed.conf"), server="https://127.0.0.1:1",
                                     user_block="    token: x\n")
        out, rc, err = run_once(kc, [{"method": "GET", "path": "/version"}])
        self.assertEqual(out[0]["errno"], "ECONNREFUSED", out)

    def test_cancel_and_parallel(self):
        self.assertEqual(self.r.call({"op": "cancel", "method": "GET", "path": "/version"}), {"cancelled": "ok"})
        reqs = [{"method": "POST", "path": SVCS, "body": svc("rq-par-%d" % i)} for i in range(20)]
        reqs += [{"method": "GET", "path": "/version"}, {"method": "BREW", "path": "/coffee"}]
        res = self.r.call({"op": "parallel", "requests": reqs})["results"]
        self.assertEqual([x["status"] for x in res[:21]], [201] * 20 + [200])
        self.assertEqual(res[21]["error"], -22)
        # The connection the client still holds survives the server dropping it.
        self.s.admin("drop-connections")
        self.assertEqual(self.call("GET", "/version")["status"], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
