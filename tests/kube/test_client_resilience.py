#!/usr/bin/env python3
"""The informer's contract under fire: while objects are created, updated and deleted at random,
the server is restarted (same state, same port), its watch history is compacted and watches are
expired (410), connections are dropped, chunks are split and it goes offline. At the end the
consumer's cache must equal the server's objects, and the event sequence it saw for every object
must be consistent: no ADDED twice, no MODIFIED or DELETED for an absent object, no repeated or
backwards resourceVersion (no duplicates), and the last state of everything (no losses)."""
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeharness import (Informer, Server, cache_view, check_event_sequences, cm, ensure_ns, server_view,  # noqa: E402
                         skip_unless_ready, svc, wait_until)

NAMESPACES = ("res-a", "res-b")
KINDS = {"services": lambda n, ns: svc(n, ns), "configmaps": lambda n, ns: cm(n, ns)}


@skip_unless_ready
class ResilienceTest(unittest.TestCase):
    def setUp(self):
        self.s = Server(("--bookmark-interval", "1", "--too-large-rv-wait", "1"))
        self.rng = random.Random(int(os.environ.get("KUBE_TEST_SEED", "4242")))
        self.ops = 0

    def tearDown(self):
        self.s.close()

    def mutate(self, n):
        """n random writes; failures (server down, conflicts) are fine: the server is the truth."""
        for _ in range(n):
            kind = self.rng.choice(list(KINDS))
            ns = self.rng.choice(NAMESPACES)
            name = "o%02d" % self.rng.randrange(25)
            base = "/api/v1/namespaces/%s/%s" % (ns, kind)
            try:
                st, obj = self.s.json("GET", base + "/" + name)
                if st == 404:
                    self.s.json("POST", base, KINDS[kind](name, ns))
                elif st == 200 and self.rng.random() < 0.3:
                    self.s.json("DELETE", base + "/" + name)
                elif st == 200:
                    obj["metadata"].setdefault("labels", {})["gen"] = str(self.ops)
                    self.s.json("PUT", base + "/" + name, obj)
                self.ops += 1
            except OSError:
                time.sleep(0.05)

    def server_objects(self):
        out = {}
        for kind in KINDS:
            items, _ = self.s.list_all("/api/v1/%s" % kind)
            out.update({(kind, k): v for k, v in server_view(items).items() if k.split("/")[0] in NAMESPACES})
        return out

    def informer_objects(self, inf):
        cache, end = inf.dump()
        out = {}
        for c in cache:
            if c.get("namespace") in NAMESPACES:
                out[(c["resource"], "%s/%s" % (c["namespace"], c["name"]))] = (c["uid"], c["rv"])
        return out, end

    def test_survives_restarts_and_410s(self):
        for ns in NAMESPACES:
            ensure_ns(self.s, ns)
        self.mutate(40)
        inf = Informer(self.s.kubeconfig, list(KINDS), ["--page-limit", "7"],
                       env={"KVEGRESS_BACKOFF_MSEC": "100,1000", "KVEGRESS_WATCH_TIMEOUT_SEC": "3,6"})
        try:
            inf.wait_synced(2)
            disruptions = [
                ("restart", lambda: self.s.restart()),
                ("compact+expire", lambda: (self.s.admin("compact"), self.s.admin("expire-watches"))),
                ("drop", lambda: self.s.admin("drop-connections")),
                ("split-chunks", lambda: self.s.admin("split-chunks", {"on": True})),
                ("restart", lambda: self.s.restart()),
                ("compact", lambda: self.s.admin("compact")),
                ("drop", lambda: self.s.admin("drop-connections")),
                ("offline", lambda: self.s.admin("offline", {"on": True, "seconds": 1.5})),
                ("expire", lambda: self.s.admin("expire-watches")),
                ("restart+compact", lambda: (self.s.restart(), self.s.admin("compact"))),
            ]
            for what, act in disruptions:
                self.mutate(15)
                act()
                self.mutate(15)
                inf.drain(0.5)
            self.s.admin("split-chunks", {"on": False})
            self.mutate(20)

            def converged():
                got, end = self.informer_objects(inf)
                return got == self.server_objects()
            self.assertTrue(wait_until(converged, 30, step=0.5), "the cache never converged")
            got, end = self.informer_objects(inf)
            want = self.server_objects()
            self.assertEqual(got, want)
            present = check_event_sequences(self, [e for e in inf.events if e.get("namespace") in NAMESPACES])
            self.assertEqual({k: (v[0], str(v[1])) for k, v in present.items()}, want)
            self.assertGreaterEqual(end["stats"]["relists"], 2, end)
            sys.stderr.write("\n%d writes, %d events, %d objects at the end, client stats %s\n" %
                             (self.ops, len(inf.events), len(want), end["stats"]))
        finally:
            rc = inf.stop()
        self.assertEqual(rc, 0, inf.stderr_text()[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
