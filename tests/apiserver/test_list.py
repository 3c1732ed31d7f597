"""List fidelity checks (spec section 8: 3, 6, 10, 16, 20, 22) and pagination."""
import gzip
import json
import time
import unittest
import urllib.parse

from kvharness import LEASES, SVCS, ServerTestCase, lease_body, svc_body

CMS = "/api/v1/namespaces/default/configmaps"


class ListTest(ServerTestCase):
    server_args = ("--continue-ttl", "3", "--endpoints-warning", "--too-large-rv-wait", "0.3")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for i in range(12):
            cls.s.json("POST", CMS, {"metadata": {"name": "cm-%02d" % i, "labels": {"i": str(i), "tier": "a" if
                                                                                      i % 2 else "b"}}})

    # check 6: one global RV counter; list RV is the current value
    def test_global_rv(self):
        st, a = self.s.json("POST", SVCS, svc_body("rv-a"))
        st, b = self.s.json("POST", LEASES, lease_body("rv-b"))
        st, c = self.s.json("POST", SVCS, svc_body("rv-c"))
        ra, rb, rc = (int(x["metadata"]["resourceVersion"]) for x in (a, b, c))
        self.assertTrue(ra < rb < rc)
        st, lst = self.s.json("GET", SVCS)
        self.assertEqual(int(lst["metadata"]["resourceVersion"]), rc)
        st, lst = self.s.json("GET", LEASES)
        self.assertEqual(int(lst["metadata"]["resourceVersion"]), rc)  # exceeds every lease's RV
        self.assertEqual(lst["kind"], "LeaseList")
        self.assertEqual(lst["apiVersion"], "coordination.k8s.io/v1")

    # check 10: list items lack kind/apiVersion; single objects have them
    def test_items_without_kind(self):
        st, lst = self.s.json("GET", CMS)
        self.assertEqual(lst["kind"], "ConfigMapList")
        for it in lst["items"]:
            self.assertNotIn("kind", it)
            self.assertNotIn("apiVersion", it)
        st, one = self.s.json("GET", CMS + "/cm-01")
        self.assertEqual((one["kind"], one["apiVersion"]), ("ConfigMap", "v1"))
        self.assertEqual(list(one.keys())[:3], ["kind", "apiVersion", "metadata"])

    def test_pagination_consistent_snapshot(self):
        st, p1 = self.s.json("GET", CMS + "?limit=5")
        self.assertEqual(len(p1["items"]), 5)
        tok = p1["metadata"]["continue"]
        self.assertEqual(p1["metadata"]["remainingItemCount"], 7)
        # a change after the first page must not show up in later pages
        self.s.json("POST", CMS, {"metadata": {"name": "cm-99"}})
        names = [i["metadata"]["name"] for i in p1["items"]]
        while tok:
            st, p = self.s.json("GET", CMS + "?limit=5&continue=" + urllib.parse.quote(tok))
            self.assertEqual(st, 200, p)
            self.assertEqual(p["metadata"]["resourceVersion"], p1["metadata"]["resourceVersion"])
            names += [i["metadata"]["name"] for i in p["items"]]
            tok = p["metadata"].get("continue")
        self.assertEqual(names, ["cm-%02d" % i for i in range(12)])
        self.s.json("DELETE", CMS + "/cm-99")
        # RV=0 ignores limit
        st, p = self.s.json("GET", CMS + "?limit=2&resourceVersion=0")
        self.assertGreater(len(p["items"]), 2)

    # check 3: expired continue -> HTTP 410 with a new metadata.continue
    def test_continue_expired(self):
        st, p1 = self.s.json("GET", CMS + "?limit=3")
        tok = p1["metadata"]["continue"]
        # move the RV past the token's RV, then compact
        self.s.json("POST", "/api/v1/namespaces/kube-public/configmaps", {"metadata": {"name": "after-compact"}})
        self.s.admin("compact")
        st, r, body = self.s.request("GET", CMS + "?limit=3&continue=" + urllib.parse.quote(tok))
        self.assertEqual(st, 410)
        d = json.loads(body)
        self.assertEqual((d["reason"], d["code"]), ("Expired", 410))
        self.assertTrue(d["message"].startswith("The provided continue parameter is too old"))
        new = d["metadata"]["continue"]
        st, p = self.s.json("GET", CMS + "?limit=3&continue=" + urllib.parse.quote(new))
        self.assertEqual(st, 200)
        self.assertEqual(p["items"][0]["metadata"]["name"], "cm-03")
        # age-based expiry (--continue-ttl 3)
        st, p1 = self.s.json("GET", CMS + "?limit=3")
        time.sleep(3.2)
        st, _ = self.s.json("GET", CMS + "?limit=3&continue=" + urllib.parse.quote(p1["metadata"]["continue"]))
        self.assertEqual(st, 410)

    # check 16: unsupported field selector; set-based label selectors; URL decoding
    def test_selectors(self):
        st, r, body = self.s.request("GET", CMS + "?fieldSelector=spec.foo%3Dbar")
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["message"], "field label not supported: spec.foo")
        def names(q):
            st, d = self.s.json("GET", CMS + "?labelSelector=" + urllib.parse.quote(q))
            self.assertEqual(st, 200, d)
            return sorted(i["metadata"]["name"] for i in d["items"])
        self.assertEqual(names("i in (1,2),tier=a"), ["cm-01"])
        self.assertEqual(names("i notin (0,1,2,3,4,5,6,7,8,9),tier"), ["cm-10", "cm-11"])
        self.assertEqual(names("tier!=a,i==4"), ["cm-04"])
        self.assertEqual(names("!tier"), [])
        self.assertEqual(len(names("i>9")), 2)
        st, d = self.s.json("GET", CMS + "?labelSelector=i+in+%282%29")  # '+' decodes to space
        self.assertEqual([i["metadata"]["name"] for i in d["items"]], ["cm-02"])
        st, d = self.s.json("GET", CMS + "?fieldSelector=metadata.name%3Dcm-03")
        self.assertEqual([i["metadata"]["name"] for i in d["items"]], ["cm-03"])
        st, d = self.s.json("GET", CMS + "?fieldSelector=metadata.name!%3Dcm-03")
        self.assertNotIn("cm-03", [i["metadata"]["name"] for i in d["items"]])
        st, d = self.s.json("GET", "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse")
        self.assertEqual(st, 200)
        st, d = self.s.json("GET", "/api/v1/pods?fieldSelector=status.phase%3DRunning,spec.nodeName%3Dn1")
        self.assertEqual(st, 200)
        st, d = self.s.json("GET", "/api/v1/services?fieldSelector=spec.type%3DLoadBalancer")
        self.assertEqual(st, 200)
        st, d = self.s.json("GET", "/api/v1/events?fieldSelector=involvedObject.kind%3DService,type%3DNormal")
        self.assertEqual(st, 200)
        st, d = self.s.json("GET", CMS + "?labelSelector=" + urllib.parse.quote("a in (b"))
        self.assertEqual(st, 400)

    # check 20: timeout=10s accepted on non-watch requests
    def test_timeout_param(self):
        st, d = self.s.json("GET", CMS + "?timeout=10s")
        self.assertEqual(st, 200)
        st, d = self.s.json("GET", CMS + "/cm-01?timeout=10s")
        self.assertEqual(st, 200)

    # check 22: gzip for large lists, Warning header on v1 Endpoints
    def test_gzip_and_warning(self):
        big = "x" * 50000
        for i in range(4):
            self.s.json("POST", "/api/v1/namespaces/kube-system/configmaps",
                        {"metadata": {"name": "big-%d" % i}, "data": {"v": big}})
        st, r, body = self.s.request("GET", "/api/v1/namespaces/kube-system/configmaps",
                                     headers={"Accept-Encoding": "gzip"})
        self.assertEqual(r.getheader("Content-Encoding"), "gzip")
        d = json.loads(gzip.decompress(body))
        self.assertEqual(len(d["items"]), 4)
        st, r, body = self.s.request("GET", "/api/v1/namespaces/kube-system/configmaps")
        self.assertIsNone(r.getheader("Content-Encoding"))
        st, r, body = self.s.request("GET", CMS, headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(r.getheader("Content-Encoding"))  # small
        st, r, body = self.s.request("GET", "/api/v1/namespaces/default/endpoints")
        self.assertEqual(st, 200)
        self.assertIn("v1 Endpoints is deprecated", r.getheader("Warning"))
        self.assertTrue(r.getheader("Warning").startswith('299 - "'))

    def test_rv_match_and_future_rv(self):
        st, d = self.s.json("GET", CMS + "?resourceVersionMatch=NotOlderThan")
        self.assertEqual(st, 422)
        st, d = self.s.json("GET", CMS + "?resourceVersion=0&resourceVersionMatch=NotOlderThan")
        self.assertEqual(st, 200)
        st, cur = self.s.json("GET", CMS)
        rv = int(cur["metadata"]["resourceVersion"])
        self.s.json("POST", CMS, {"metadata": {"name": "exact-later"}})
        st, d = self.s.json("GET", CMS + "?resourceVersion=%d&resourceVersionMatch=Exact" % rv)
        self.assertEqual(st, 200, d)
        self.assertEqual(d["metadata"]["resourceVersion"], str(rv))
        self.assertNotIn("exact-later", [i["metadata"]["name"] for i in d["items"]])
        self.s.json("DELETE", CMS + "/exact-later")
        st, d = self.s.json("GET", CMS + "?resourceVersion=%d" % (rv + 10000))
        self.assertEqual(st, 504)
        self.assertEqual(d["details"]["causes"][0]["reason"], "ResourceVersionTooLarge")
        st, d = self.s.json("GET", CMS + "?resourceVersion=x1")
        self.assertEqual(st, 400)

    # check 18 (partly): unknown paths are text/plain 404; unknown objects are JSON NotFound
    def test_not_found_shapes(self):
        for p in ("/apis/discovery.k8s.io/v1beta9/endpointslices", "/api/v1/widgets", "/nope",
                  "/api/v1/namespaces/default/services/x/scale"):
            st, r, body = self.s.request("GET", p)
            self.assertEqual(st, 404, p)
            self.assertEqual(body, b"404 page not found\n")
            self.assertEqual(r.getheader("Content-Type"), "text/plain; charset=utf-8")
        st, r, body = self.s.request("GET", SVCS + "/nope")
        self.assertEqual(body, b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
                               b'"services \\"nope\\" not found","reason":"NotFound","details":{"name":"nope",'
                               b'"kind":"services"},"code":404}\n')
        st, r, body = self.s.request("GET", LEASES + "/kubevip-egress-demo")
        with open(self._fixture("404-lease-notfound.http"), "rb") as f:
            self.assertEqual(body.rstrip(b"\n"), f.read().split(b"\n\n", 1)[1].rstrip(b"\n"))

    def _fixture(self, name):
        from kvharness import FIXTURES
        import os
        return os.path.join(FIXTURES, "realistic", "http", name)

    def test_all_namespaces_and_discovery(self):
        st, d = self.s.json("GET", "/api/v1/configmaps")
        self.assertEqual(st, 200)
        self.assertGreaterEqual(len(d["items"]), 12)
        st, d = self.s.json("GET", "/version")
        self.assertEqual(d["major"], "1")
        st, d = self.s.json("GET", "/api/v1")
        names = {r["name"]: r for r in d["resources"]}
        self.assertEqual(names["services"]["shortNames"], ["svc"])
        self.assertIn("services/status", names)
        st, d = self.s.json("GET", "/apis")
        self.assertIn("coordination.k8s.io", [g["name"] for g in d["groups"]])
        st, d = self.s.json("GET", "/apis/discovery.k8s.io/v1")
        self.assertEqual(d["resources"][0]["kind"], "EndpointSlice")


if __name__ == "__main__":
    unittest.main()
