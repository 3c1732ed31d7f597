"""Watch fidelity checks (spec section 8: 1, 2, 3, 4, 5, 7, 8, 9, 19, 20)."""
import json
import threading
import time
import unittest

from kvharness import LEASES, SVCS, ServerTestCase, lease_body, svc_body

EPS = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
PODS = "/api/v1/namespaces/default/pods"


class WatchTest(ServerTestCase):
    server_args = ("--bookmark-interval", "1", "--min-request-timeout", "3", "--too-large-rv-wait", "0.5",
                   "--history-size", "20")

    def rv(self):
        st, d = self.s.json("GET", "/api/v1/namespaces")
        return d["metadata"]["resourceVersion"]

    def mk_cm(self, name, ns="default", labels=None):
        st, d = self.s.json("POST", "/api/v1/namespaces/%s/configmaps" % ns,
                            {"metadata": {"name": name, "labels": labels or {}}, "data": {"a": "1"}})
        self.assertEqual(st, 201, d)
        return d

    # check 1: headers before any event; an idle watch is silent (no bookmarks unless asked)
    def test_headers_flushed_before_events_and_idle_silent(self):
        rv = self.rv()
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=%s&timeoutSeconds=3" % rv)
        t0 = time.monotonic()
        self.assertEqual(w.read_headers(), 200)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(w.headers["content-type"], "application/json")
        self.assertEqual(w.headers["transfer-encoding"], "chunked")
        self.assertIn("audit-id", w.headers)
        evs, chunks, clean = w.events(timeout=10)
        self.assertEqual(evs, [])       # silent while idle, even though bookmark-interval is 1s
        self.assertTrue(clean)           # check 4: ends with 0-length chunk, no ERROR
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)
        w.close()

    # check 2: events are JSON + "\n", may be split/packed across chunks (split-chunks knob)
    def test_event_framing_and_split_chunks(self):
        rv = self.rv()
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s" % rv)
        w.read_headers()
        for i in range(3):
            self.mk_cm("frame-%d" % i)
        evs, chunks, _ = w.events(3)
        for c in chunks:
            self.assertTrue(c.endswith(b"\n"))
        self.assertEqual([e["type"] for e in evs], ["ADDED"] * 3)
        w.close()
        self.s.admin("split-chunks", {"on": True})
        try:
            rv = self.rv()
            w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=%s" % rv)
            w.read_headers()
            # one burst: several events queued at once
            for i in range(5):
                self.s.json("PATCH", "/api/v1/namespaces/default/configmaps/frame-%d" % (i % 3),
                            {"data": {"b": str(i)}}, ctype="application/merge-patch+json")
            evs, chunks, _ = w.events(5)
            self.assertEqual(len(evs), 5)
            self.assertTrue(any(not c.endswith(b"\n") for c in chunks) or len(chunks) > 5,
                            "expected at least one event split across chunks")
            w.close()
        finally:
            self.s.admin("split-chunks", {"on": False})

    # check 3: too-old RV -> HTTP 200 + one ERROR(410 Expired) then EOF
    def test_too_old_rv_is_error_event(self):
        st, d = self.s.json("POST", LEASES, lease_body("churn"))
        first = int(d["metadata"]["resourceVersion"])
        cur = d
        for i in range(25):  # history-size is 20 events per kind
            cur["spec"]["leaseTransitions"] = i + 1
            st, cur = self.s.json("PUT", LEASES + "/churn", cur)
            self.assertEqual(st, 200, cur)
        w = self.s.raw(LEASES + "?watch=true&resourceVersion=%d" % first)
        self.assertEqual(w.read_headers(), 200)
        evs, chunks, clean = w.events(timeout=5)
        self.assertTrue(clean)
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0]["type"], "ERROR")
        o = evs[0]["object"]
        self.assertEqual((o["kind"], o["code"], o["reason"], o["status"]), ("Status", 410, "Expired", "Failure"))
        self.assertRegex(o["message"], r"^too old resource version: %d \(\d+\)$" % first)

    # check 5: RV unset/0 replays ADDED; numeric RV only later changes; non-numeric fails before streaming
    def test_rv_semantics(self):
        self.s.json("POST", "/api/v1/namespaces", {"metadata": {"name": "rvsem"}})
        for n in ("b", "a", "c"):
            self.mk_cm(n, "rvsem")
        for q in ("", "&resourceVersion=0"):
            w = self.s.raw("/api/v1/namespaces/rvsem/configmaps?watch=true%s" % q)
            w.read_headers()
            evs, _, _ = w.events(3)
            self.assertEqual([e["type"] for e in evs], ["ADDED"] * 3)
            self.assertEqual({e["object"]["metadata"]["name"] for e in evs}, {"a", "b", "c"})
            rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
            self.assertNotEqual(rvs, sorted(rvs), "synthetic ADDEDs should not be RV-ordered here")
            w.close()
        rv = self.rv()
        w = self.s.raw("/api/v1/namespaces/rvsem/configmaps?watch=true&resourceVersion=%s" % rv)
        w.read_headers()
        self.mk_cm("d", "rvsem")
        evs, _, _ = w.events(1)
        self.assertEqual((evs[0]["type"], evs[0]["object"]["metadata"]["name"]), ("ADDED", "d"))
        w.close()
        st, r, body = self.s.request("GET", "/api/v1/namespaces/rvsem/configmaps?watch=true&resourceVersion=abc")
        self.assertEqual(st, 400)
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertEqual(json.loads(body)["reason"], "BadRequest")

    def test_future_rv_504(self):
        rv = int(self.rv()) + 1000
        t0 = time.monotonic()
        st, r, body = self.s.request("GET", SVCS + "?watch=true&resourceVersion=%d" % rv)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        self.assertEqual(st, 504)
        d = json.loads(body)
        self.assertEqual(d["details"]["causes"][0]["reason"], "ResourceVersionTooLarge")
        self.assertEqual(d["details"]["retryAfterSeconds"], 1)
        self.assertEqual(r.getheader("Retry-After"), "1")
        self.assertRegex(d["message"], r"^Timeout: Too large resource version: %d, current: \d+$" % rv)

    # check 7: DELETED carries a new RV; recreate -> new uid; finalizer -> MODIFIED with deletionTimestamp
    def test_deleted_new_rv_recreate_uid_finalizer(self):
        rv = self.rv()
        w = self.s.raw(SVCS + "?watch=true&resourceVersion=%s" % rv)
        w.read_headers()
        st, a = self.s.json("POST", SVCS, svc_body("del-me"))
        st, d = self.s.json("DELETE", SVCS + "/del-me")
        self.assertEqual(st, 200)
        st, b = self.s.json("POST", SVCS, svc_body("del-me"))
        evs, _, _ = w.events(3)
        self.assertEqual([e["type"] for e in evs], ["ADDED", "DELETED", "ADDED"])
        self.assertGreater(int(evs[1]["object"]["metadata"]["resourceVersion"]),
                           int(evs[0]["object"]["metadata"]["resourceVersion"]))
        self.assertNotEqual(a["metadata"]["uid"], b["metadata"]["uid"])
        self.assertEqual(evs[1]["object"]["metadata"]["uid"], a["metadata"]["uid"])
        # finalizer
        st, cm = self.s.json("POST", "/api/v1/namespaces/default/configmaps",
                             {"metadata": {"name": "fin", "finalizers": ["example.com/x"]}})
        w2 = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=%s"
                        % cm["metadata"]["resourceVersion"])
        w2.read_headers()
        st, d = self.s.json("DELETE", "/api/v1/namespaces/default/configmaps/fin")
        self.assertEqual(st, 200)
        self.assertIn("deletionTimestamp", d["metadata"])
        evs, _, _ = w2.events(1)
        self.assertEqual(evs[0]["type"], "MODIFIED")
        self.assertIn("deletionTimestamp", evs[0]["object"]["metadata"])
        st, cur = self.s.json("GET", "/api/v1/namespaces/default/configmaps/fin")
        cur["metadata"]["finalizers"] = []
        st, d = self.s.json("PUT", "/api/v1/namespaces/default/configmaps/fin", cur)
        self.assertEqual(st, 200, d)
        evs, _, _ = w2.events(2)
        self.assertEqual([e["type"] for e in evs], ["MODIFIED", "DELETED"])
        st, _ = self.s.json("GET", "/api/v1/namespaces/default/configmaps/fin")
        self.assertEqual(st, 404)
        w.close()
        w2.close()

    # check 8: selector enter/leave -> ADDED/DELETED (old content, new RV)
    def test_selector_transitions(self):
        st, pod = self.s.json("POST", PODS, {"metadata": {"name": "p1"},
                                             "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
        rv = pod["metadata"]["resourceVersion"]
        w = self.s.raw("/api/v1/pods?watch=true&fieldSelector=spec.nodeName%%3Dworker-1&resourceVersion=%s" % rv)
        w.read_headers()
        pod["spec"]["nodeName"] = "worker-1"
        st, p2 = self.s.json("PUT", PODS + "/p1", pod)
        self.assertEqual(st, 200, p2)
        evs, _, _ = w.events(1)
        self.assertEqual(evs[0]["type"], "ADDED")
        w.close()
        st, cm = self.s.json("POST", "/api/v1/namespaces/default/configmaps",
                             {"metadata": {"name": "sel", "labels": {"kubernetes.io/service-name": "x"}}})
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=kubernetes.io%%2Fservice-name"
                       "%%3Dx&resourceVersion=%s" % cm["metadata"]["resourceVersion"])
        w.read_headers()
        st, cm2 = self.s.json("PATCH", "/api/v1/namespaces/default/configmaps/sel",
                              {"metadata": {"labels": {"kubernetes.io/service-name": "y"}}},
                              ctype="application/merge-patch+json")
        st, cm3 = self.s.json("PATCH", "/api/v1/namespaces/default/configmaps/sel",
                              {"metadata": {"labels": {"kubernetes.io/service-name": "x"}}},
                              ctype="application/merge-patch+json")
        evs, _, _ = w.events(2)
        self.assertEqual([e["type"] for e in evs], ["DELETED", "ADDED"])
        self.assertEqual(evs[0]["object"]["metadata"]["labels"]["kubernetes.io/service-name"], "x")  # old content
        self.assertEqual(evs[0]["object"]["metadata"]["resourceVersion"], cm2["metadata"]["resourceVersion"])
        w.close()

    # check 9: bookmarks only if allowed; near-empty object; periodic and before deadline
    def test_bookmarks(self):
        rv = self.rv()
        w = self.s.raw(EPS + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=4&resourceVersion=%s" % rv)
        w.read_headers()
        evs, _, clean = w.events(timeout=10)
        self.assertTrue(clean)
        self.assertGreaterEqual(len(evs), 2)
        for e in evs:
            self.assertEqual(e["type"], "BOOKMARK")
            o = e["object"]
            self.assertEqual(o["kind"], "EndpointSlice")
            self.assertEqual(o["apiVersion"], "discovery.k8s.io/v1")
            self.assertEqual(list(o["metadata"].keys()), ["resourceVersion"])
            self.assertEqual((o["addressType"], o["endpoints"], o["ports"]), ("", None, None))
        w = self.s.raw(SVCS + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion=%s" % rv)
        w.read_headers()
        evs, _, clean = w.events(timeout=10)
        self.assertEqual(evs[0]["object"]["status"], {"loadBalancer": {}})
        self.assertEqual(evs[0]["object"]["spec"], {})

    # check 4 (default timeout scaled down) and 20 (boolean parsing)
    def test_default_timeout_and_bool_values(self):
        for v in ("1", "true", "", "TRUE", "yes"):
            w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=%s&resourceVersion=%s&timeoutSeconds=1"
                           % (v, self.rv()))
            w.read_headers()
            self.assertEqual(w.headers.get("transfer-encoding"), "chunked", v)
            evs, _, clean = w.events(timeout=5)
            self.assertTrue(clean)
            w.close()
        for v in ("0", "false", "False"):
            st, d = self.s.json("GET", "/api/v1/namespaces/default/configmaps?watch=%s" % v)
            self.assertEqual(st, 200)
            self.assertEqual(d["kind"], "ConfigMapList")
        t0 = time.monotonic()
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch&resourceVersion=%s" % self.rv())
        w.read_headers()
        evs, _, clean = w.events(timeout=15)
        el = time.monotonic() - t0
        self.assertTrue(clean)
        self.assertTrue(2.5 <= el <= 7.5, el)  # random in [3, 6]

    def test_watch_prefix_path_and_single_name(self):
        st, cm = self.s.json("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "only"}})
        w = self.s.raw("/api/v1/watch/namespaces/default/configmaps/only?resourceVersion=0")
        w.read_headers()
        evs, _, _ = w.events(1)
        self.assertEqual(evs[0]["object"]["metadata"]["name"], "only")
        w.close()

    def test_sync_initial_events_then_changes_and_table_watch(self):
        st, pod = self.s.json("GET", "/api/v1/namespaces/default/configmaps")
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
                       "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
        w.read_headers()
        n = len(pod["items"])
        evs, _, _ = w.events(n + 1)
        self.assertEqual(evs[-1]["type"], "BOOKMARK")
        self.assertEqual(evs[-1]["object"]["metadata"]["annotations"], {"k8s.io/initial-events-end": "true"})
        w.close()


class WatchFaultTest(ServerTestCase):
    server_args = ("--min-request-timeout", "30")

    # check 19: mid-stream reset, truncated chunk, close right after headers
    def test_close_after_headers(self):
        self.s.admin("watch-fault", {"mode": "close-after-headers", "match": "configmaps"})
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true")
        self.assertEqual(w.read_headers(), 200)
        with self.assertRaises((EOFError, OSError)):
            w.events(1, timeout=3)
        # next watch is fine again
        w = self.s.raw("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
        w.read_headers()
        evs, _, clean = w.events(timeout=5)
        self.assertTrue(clean)

    def test_truncated_chunk(self):
        self.s.admin("watch-fault", {"mode": "truncate-chunk", "match": "namespaces"})
        w = self.s.raw("/api/v1/namespaces?watch=true")
        w.read_headers()
        with self.assertRaises((EOFError, OSError)):
            w.events(None, timeout=3)

    def test_reset_after_events_and_drop_connections(self):
        self.s.admin("watch-fault", {"mode": "reset-after-events", "events": 1, "match": "namespaces"})
        w = self.s.raw("/api/v1/namespaces?watch=true")
        w.read_headers()
        with self.assertRaises((EOFError, OSError)):
            w.events(None, timeout=3)
        w = self.s.raw("/api/v1/namespaces?watch=true")
        w.read_headers()
        w.events(4)
        self.s.admin("drop-connections")
        with self.assertRaises((EOFError, OSError)):
            w.events(None, timeout=3)

    def test_expire_watches(self):
        w = self.s.raw("/api/v1/namespaces?watch=true")
        w.read_headers()
        w.events(4)
        d = self.s.admin("expire-watches")
        self.assertGreaterEqual(d["expired"], 1)
        evs, _, clean = w.events(timeout=3)
        self.assertTrue(clean)
        self.assertEqual(evs[-1]["type"], "ERROR")
        self.assertEqual(evs[-1]["object"]["code"], 410)

    def test_client_vanishing_does_not_leak_watchers(self):
        ws = []
        for i in range(20):
            w = self.s.raw("/api/v1/namespaces?watch=true")
            w.read_headers()
            ws.append(w)
        st, stats = self.s.json("GET", "/_kvtest/stats")
        self.assertGreaterEqual(stats["open_watches"], 20)
        for w in ws:
            w.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            st, stats = self.s.json("GET", "/_kvtest/stats")
            if stats["open_watches"] == 0:
                break
            time.sleep(0.2)
        self.assertEqual(stats["open_watches"], 0)


if __name__ == "__main__":
    unittest.main()
