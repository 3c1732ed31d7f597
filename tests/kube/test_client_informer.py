#!/usr/bin/env python3
"""Informers against the test API server: list then watch, pagination and an expired continue,
selectors (entering and leaving the match set), bookmarks, watch streams split across chunks,
re-watch after a clean end of stream, relist after ERROR 410 with events synthesised from the
diff, backoff with jitter, Retry-After, and the idle timeout of a silent watch."""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeharness import (Informer, Server, cache_view, check_event_sequences, cm, ensure_ns, server_view,  # noqa: E402
                         skip_unless_ready, svc, wait_until, wait_watching)


def svcs(ns):
    return "/api/v1/namespaces/%s/services" % ns


def cms(ns):
    return "/api/v1/namespaces/%s/configmaps" % ns


class Base(unittest.TestCase):
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.s = Server(cls.server_args)

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def setUp(self):
        self.s.admin("clear-faults")
        self.s.admin("split-chunks", {"on": False})
        self.informers = []

    def tearDown(self):
        self.s.admin("clear-faults")
        for i in self.informers:
            rc = i.stop()
            self.assertEqual(rc, 0, "informer exit code %s: %s" % (rc, i.stderr_text()[-2000:]))

    def informer(self, resources, args=(), env=None, debug=False):
        i = Informer(self.s.kubeconfig, resources, args=args, env=env, debug=debug)
        self.informers.append(i)
        return i

    def create(self, path, body):
        st, d = self.s.json("POST", path, body)
        self.assertEqual(st, 201, d)
        return d

    def assert_cache_matches(self, inf, path, timeout=15):
        """Waits until the informer's cache equals the server's objects, then checks event sequences."""
        def same():
            items, _ = self.s.list_all(path)
            want = server_view(items)
            cache, end = inf.dump()
            got = cache_view(cache)
            return (got == want, got, want, end)
        ok = wait_until(lambda: same()[0] or None, timeout, step=0.3)
        ok, got, want, end = same()
        self.assertEqual(got, want)
        present = check_event_sequences(self, inf.events)
        self.assertEqual({k[1] for k in present}, set(want))
        return end


@skip_unless_ready
class InformerTest(Base):
    server_args = ("--bookmark-interval", "1", "--continue-ttl", "1", "--too-large-rv-wait", "1")

    def test_list_then_watch(self):
        ns = "inf-basic"
        ensure_ns(self.s, ns)
        for i in range(5):
            self.create(svcs(ns), svc("s%d" % i, ns))
        inf = self.informer(["services"], ["--namespace", ns])
        synced = inf.wait_synced()
        self.assertEqual(synced[0]["size"], 5)
        self.assertEqual(len(inf.events), 5)
        self.assertTrue(all(e["type"] == "ADDED" for e in inf.events))

        self.create(svcs(ns), svc("s9", ns))
        st, obj = self.s.json("GET", svcs(ns) + "/s1")
        obj["metadata"]["labels"] = {"changed": "yes"}
        self.assertEqual(self.s.json("PUT", svcs(ns) + "/s1", obj)[0], 200)
        self.assertEqual(self.s.json("DELETE", svcs(ns) + "/s2")[0], 200)
        inf.wait_for(lambda v: v.get("type") == "DELETED", 10)
        self.assertEqual([(e["type"], e["name"]) for e in inf.events[5:]],
                         [("ADDED", "s9"), ("MODIFIED", "s1"), ("DELETED", "s2")])
        # DELETED carries the deletion's new resourceVersion.
        self.assertGreater(int(inf.events[-1]["rv"]), int(inf.events[-2]["rv"]))
        end = self.assert_cache_matches(inf, svcs(ns))
        self.assertEqual(end["stats"]["relists"], 0)

    def test_pagination(self):
        ns = "inf-page"
        ensure_ns(self.s, ns)
        for i in range(57):
            self.create(cms(ns), cm("c%02d" % i, ns))
        inf = self.informer(["configmaps"], ["--namespace", ns, "--page-limit", "10", "--quiet"])
        synced = inf.wait_synced()
        self.assertEqual(synced[0]["size"], 57)
        cache, end = inf.dump()
        self.assertEqual(end["stats"]["lists"], 6)
        self.assertEqual(len(cache), 57)

    def test_expired_continue_relists(self):
        ns = "inf-cont"
        ensure_ns(self.s, ns)
        for i in range(30):
            self.create(cms(ns), cm("c%02d" % i, ns))
        # The second page waits past the continue token's 1 s lifetime: 410, list again from scratch.
        self.s.admin("stall", {"ms": 1600, "match": "configmaps.*continue=", "count": 1})
        inf = self.informer(["configmaps"], ["--namespace", ns, "--page-limit", "5", "--quiet"])
        synced = inf.wait_synced(timeout=30)
        self.assertEqual(synced[0]["size"], 30)
        cache, end = inf.dump()
        self.assertGreaterEqual(end["stats"]["relists"], 1)
        self.assertGreaterEqual(end["stats"]["lists"], 6 + 1)
        self.assertEqual(len(cache), 30)

    def test_selectors(self):
        ns = "inf-sel"
        ensure_ns(self.s, ns)
        self.create(svcs(ns), svc("a", ns, labels={"app": "sel", "kubernetes.io/service-name": "x"}))
        self.create(svcs(ns), svc("b", ns, labels={"app": "other"}))
        lab = self.informer(["services"], ["--namespace", ns, "--label-selector", "app in (sel, more)"])
        fld = self.informer(["services"], ["--namespace", ns, "--field-selector", "metadata.name=b"])
        lab.wait_synced()
        fld.wait_synced()
        self.assertEqual([e["name"] for e in lab.events], ["a"])
        self.assertEqual([e["name"] for e in fld.events], ["b"])
        # b enters the label selector's set, a leaves it.
        st, b = self.s.json("GET", svcs(ns) + "/b")
        b["metadata"]["labels"] = {"app": "more"}
        self.assertEqual(self.s.json("PUT", svcs(ns) + "/b", b)[0], 200)
        st, a = self.s.json("GET", svcs(ns) + "/a")
        a["metadata"]["labels"] = {"app": "gone"}
        self.assertEqual(self.s.json("PUT", svcs(ns) + "/a", a)[0], 200)
        lab.wait_for(lambda v: v.get("type") == "DELETED", 10)
        self.assertEqual([(e["type"], e["name"]) for e in lab.events], [("ADDED", "a"), ("ADDED", "b"),
                                                                          ("DELETED", "a")])
        fld.wait_for(lambda v: v.get("type") == "MODIFIED", 10)
        cache, _ = lab.dump()
        self.assertEqual([c["name"] for c in cache], ["b"])

    def test_bookmarks_advance_rv(self):
        ns = "inf-bm"
        ensure_ns(self.s, ns)
        inf = self.informer(["services"], ["--namespace", ns])
        inf.wait_synced()
        start_rv = int(inf.synced[0]["rv"])
        last = None
        for i in range(3):
            last = self.create(cms(ns), cm("bm%d" % i, ns))
        target = int(last["metadata"]["resourceVersion"])
        # No service changed, so only bookmarks can move the informer's resourceVersion.
        def advanced():
            _, end = inf.dump()
            return int(end["rv"]["services"]) >= target
        self.assertTrue(wait_until(advanced, 10, step=0.5), "no bookmark moved the RV past %d (start %d)" %
                        (target, start_rv))
        self.assertEqual(inf.events, [])

    def test_split_chunks(self):
        ns = "inf-split"
        ensure_ns(self.s, ns)
        self.s.admin("split-chunks", {"on": True})
        inf = self.informer(["configmaps"], ["--namespace", ns])
        inf.wait_synced()
        big = {"k%d" % i: "v" * 200 + "\u00e9\u20ac{\"}" for i in range(30)}
        for i in range(10):
            self.create(cms(ns), cm("big%d" % i, ns, data=big))
        for i in range(0, 10, 2):
            self.assertEqual(self.s.json("DELETE", cms(ns) + "/big%d" % i)[0], 200)
        inf.wait_for(lambda v: v.get("type") == "DELETED" and v.get("name") == "big8", 15)
        end = self.assert_cache_matches(inf, cms(ns))
        self.assertEqual(end["stats"]["relists"], 0)
        self.assertEqual(end["stats"]["errors"], 0)

    def test_clean_eof_rewatches_from_last_rv(self):
        ns = "inf-eof"
        ensure_ns(self.s, ns)
        inf = self.informer(["configmaps"], ["--namespace", ns], env={"KVEGRESS_WATCH_TIMEOUT_SEC": "2"})
        inf.wait_synced()
        for i in range(8):
            self.create(cms(ns), cm("e%d" % i, ns))
            time.sleep(0.8)
        end = self.assert_cache_matches(inf, cms(ns))
        self.assertGreaterEqual(end["stats"]["watches"], 3, end)
        self.assertEqual(end["stats"]["relists"], 0)
        self.assertEqual(end["stats"]["lists"], 1)
        self.assertEqual(len(inf.events), 8)
        stats = self.s.stats()
        self.assertTrue(any("watch" in k and "configmaps" in k for k in stats["by_verb_resource"]), stats)

    def test_watch_error_410_relists_with_diff(self):
        ns = "inf-410"
        ensure_ns(self.s, ns)
        for i in range(4):
            self.create(cms(ns), cm("g%d" % i, ns))
        inf = self.informer(["configmaps"], ["--namespace", ns])
        inf.wait_synced()
        # Cut the watch and keep it away while things change, then compact the history: the
        # re-watch from the old RV gets ERROR 410 and the informer must relist and diff.
        self.s.admin("fail", {"code": 503, "retry_after": 1, "match": "configmaps.*watch=", "until_cleared": True})
        self.s.admin("drop-connections")
        time.sleep(0.5)
        self.create(cms(ns), cm("g-new", ns))
        st, o = self.s.json("GET", cms(ns) + "/g1")
        o["data"] = {"k": "changed"}
        self.assertEqual(self.s.json("PUT", cms(ns) + "/g1", o)[0], 200)
        self.assertEqual(self.s.json("DELETE", cms(ns) + "/g2")[0], 200)
        # Delete and recreate under the same name: a new uid.
        self.assertEqual(self.s.json("DELETE", cms(ns) + "/g3")[0], 200)
        self.create(cms(ns), cm("g3", ns))
        self.s.admin("compact")
        self.s.admin("clear-faults")
        inf.wait_synced(2, timeout=20)
        end = self.assert_cache_matches(inf, cms(ns))
        self.assertGreaterEqual(end["stats"]["relists"], 1)
        after = [(e["type"], e["name"]) for e in inf.events[4:]]
        self.assertEqual(sorted(after), sorted([("DELETED", "g2"), ("DELETED", "g3"), ("ADDED", "g3"),
                                                ("MODIFIED", "g1"), ("ADDED", "g-new")]))

    def test_expire_watches_without_changes_gives_no_events(self):
        ns = "inf-exp"
        ensure_ns(self.s, ns)
        for i in range(3):
            self.create(cms(ns), cm("x%d" % i, ns))
        inf = self.informer(["configmaps"], ["--namespace", ns])
        inf.wait_synced()
        wait_watching(self.s, "configmaps")
        self.s.admin("expire-watches")
        inf.wait_synced(2, timeout=20)
        self.assertEqual(len(inf.events), 3)
        end = self.assert_cache_matches(inf, cms(ns))
        self.assertGreaterEqual(end["stats"]["relists"], 1)

    def test_too_large_rv_after_reset_restart(self):
        """A server restarted with empty state has a lower RV: the watch's RV is in its future, 504
        ResourceVersionTooLarge, relist; everything the consumer had is DELETED."""
        s2 = Server(("--too-large-rv-wait", "1"))
        try:
            ensure_ns(s2, "rs")
            for i in range(30):
                st, _ = s2.json("POST", cms("rs"), cm("old%d" % (i % 3), "rs") if i < 3 else
                                cm("filler%d" % i, "rs"))
            inf = Informer(s2.kubeconfig, ["configmaps"], ["--namespace", "rs"],
                           env={"KVEGRESS_BACKOFF_MSEC": "100,1000"})
            try:
                inf.wait_synced()
                n0 = len(inf.events)
                s2.restart(["--reset"])
                ensure_ns(s2, "rs")
                self.assertEqual(s2.json("POST", cms("rs"), cm("fresh", "rs"))[0], 201)
                inf.wait_synced(2, timeout=30)
                after = [(e["type"], e["name"]) for e in inf.events[n0:]]
                self.assertIn(("ADDED", "fresh"), after)
                self.assertEqual(len([a for a in after if a[0] == "DELETED"]), n0)
                self.s, saved = s2, self.s
                try:
                    self.assert_cache_matches(inf, cms("rs"))
                finally:
                    self.s = saved
                self.assertIn("504", "".join(str(k) for k in s2.stats()["by_code"]))
            finally:
                self.assertEqual(inf.stop(), 0)
        finally:
            s2.close()


def delays(text, what):
    return [int(x) for x in re.findall(r"%s again in (\d+) ms" % what, text)]


@skip_unless_ready
class RetryTest(Base):
    server_args = ("--bookmark-interval", "30")

    def test_backoff_with_jitter(self):
        ns = "rt-backoff"
        ensure_ns(self.s, ns)
        inf = self.informer(["configmaps"], ["--namespace", ns], env={"KVEGRESS_BACKOFF_MSEC": "100,1600"},
                            debug=True)
        inf.wait_synced()
        self.s.admin("fail", {"code": 500, "match": "configmaps.*watch=", "until_cleared": True})
        self.s.admin("drop-connections")
        time.sleep(5)
        self.s.admin("clear-faults")
        self.create(cms(ns), cm("after", ns))
        inf.wait_for(lambda v: v.get("name") == "after", 10)
        d = delays(inf.stderr_text(), "watch")
        self.assertGreaterEqual(len(d), 5, d)
        # The first failure is the dropped connection, then doubling from 100 ms up to the cap, each
        # within [base, 2*base) and never over the cap.
        for i, v in enumerate(d[:5]):
            base = min(100 * 2 ** i, 1600)
            self.assertTrue(base <= v <= max(2 * base, 1600), (i, v, d))
        self.assertTrue(all(v <= 1600 for v in d), d)
        self.assertGreater(len(set(d)), 2, "no jitter: %s" % d)

    def test_retry_after_on_watch_and_list(self):
        ns = "rt-ra"
        ensure_ns(self.s, ns)
        self.s.admin("fail", {"code": 503, "retry_after": 2, "match": "configmaps.*limit=", "count": 1})
        t0 = time.monotonic()
        inf = self.informer(["configmaps"], ["--namespace", ns], env={"KVEGRESS_BACKOFF_MSEC": "100,200"},
                            debug=True)
        inf.wait_synced(timeout=20)
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)
        self.s.admin("fail", {"code": 429, "retry_after": 3, "match": "configmaps.*watch=", "count": 1})
        self.s.admin("drop-connections")
        time.sleep(0.5)
        t1 = time.monotonic()
        self.create(cms(ns), cm("late", ns))
        inf.wait_for(lambda v: v.get("name") == "late", 15)
        self.assertGreaterEqual(time.monotonic() - t1, 1.5)
        d = delays(inf.stderr_text(), "watch")
        self.assertIn(3000, d, d)
        self.assertIn(2000, delays(inf.stderr_text(), "list"))

    def test_idle_watch_is_dropped_and_resumed(self):
        ns = "rt-idle"
        ensure_ns(self.s, ns)
        inf = self.informer(["configmaps"], ["--namespace", ns],
                            env={"KVEGRESS_WATCH_IDLE_SEC": "1", "KVEGRESS_BACKOFF_MSEC": "100,200"}, debug=True)
        inf.wait_synced()
        time.sleep(3.5)
        self.create(cms(ns), cm("still-here", ns))
        inf.wait_for(lambda v: v.get("name") == "still-here", 10)
        _, end = inf.dump()
        self.assertGreaterEqual(end["stats"]["watches"], 3, end)
        self.assertEqual(end["stats"]["relists"], 0)
        self.assertIn("no data for 1000 ms", inf.stderr_text())

    def test_stalled_watch_request_times_out(self):
        ns = "rt-stall"
        ensure_ns(self.s, ns)
        inf = self.informer(["configmaps"], ["--namespace", ns],
                            env={"KVEGRESS_WATCH_IDLE_SEC": "1", "KVEGRESS_BACKOFF_MSEC": "100,200"}, debug=True)
        inf.wait_synced()
        self.s.admin("stall", {"ms": 4000, "match": "configmaps.*watch=", "count": 1})
        self.s.admin("drop-connections")
        time.sleep(0.3)
        self.create(cms(ns), cm("post-stall", ns))
        t0 = time.monotonic()
        inf.wait_for(lambda v: v.get("name") == "post-stall", 10)
        self.assertLess(time.monotonic() - t0, 3.5, "the stalled watch was waited out instead of timed out")
        self.assertEqual(len(inf.events), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
