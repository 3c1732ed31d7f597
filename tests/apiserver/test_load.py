"""Load check: ~1,000 leases renewed concurrently with a few dozen open watches. Prints the measured
Lease PUT rate; asserts a floor well above what 1,000 leases renewed every 2 s need (500/s)."""
import json
import os
import threading
import time
import unittest

from kvharness import LEASES, ServerTestCase, lease_body

N_LEASES = int(os.environ.get("KVTEST_LOAD_LEASES", "1000"))
SECONDS = float(os.environ.get("KVTEST_LOAD_SECONDS", "4"))
THREADS = 16


class LoadTest(ServerTestCase):
    def test_lease_renewals_with_watches(self):
        s = self.s
        watches = []
        for i in range(30):
            w = s.raw(("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?watch=true" if i % 2 else
                       "/api/v1/services?watch=true&allowWatchBookmarks=true"))
            w.read_headers()
            watches.append(w)
        # create leases (parallel)
        names = ["lease-%04d" % i for i in range(N_LEASES)]
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        state = {}
        lock = threading.Lock()

        def creator(chunk):
            c = s.conn()
            for n in chunk:
                st, r, body = s.request("POST", path, lease_body(n, ns="kube-node-lease"), conn=c)
                assert st == 201, body
                with lock:
                    state[n] = json.loads(body)
            c.close()
        ts = [threading.Thread(target=creator, args=(names[i::THREADS],)) for i in range(THREADS)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        self.assertEqual(len(state), N_LEASES)
        counts = [0] * THREADS
        errors = []
        stop = time.monotonic() + SECONDS

        def renewer(k):
            c = s.conn()
            mine = names[k::THREADS]
            i = 0
            while time.monotonic() < stop:
                n = mine[i % len(mine)]
                i += 1
                obj = state[n]
                obj["spec"]["renewTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
                obj["spec"]["leaseTransitions"] = obj["spec"].get("leaseTransitions", 0) + 1
                st, r, body = s.request("PUT", path + "/" + n, obj, conn=c)
                if st != 200:
                    errors.append((st, body[:200]))
                    break
                state[n] = json.loads(body)
                counts[k] += 1
            c.close()
        t0 = time.monotonic()
        ts = [threading.Thread(target=renewer, args=(k,)) for k in range(THREADS)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        el = time.monotonic() - t0
        rate = sum(counts) / el
        print("\nkvtest load: %d Lease PUTs in %.1fs = %.0f/s (%d leases, %d watches open)"
              % (sum(counts), el, rate, N_LEASES, len(watches)))
        self.assertEqual(errors, [])
        self.assertGreater(rate, 300)
        # lease watchers saw the churn
        evs, _, _ = watches[1].events(50, timeout=10)
        self.assertGreaterEqual(len(evs), 50)
        st, stats = s.json("GET", "/_kvtest/stats")
        self.assertGreaterEqual(stats["by_verb_resource"]["update leases"], sum(counts))
        self.assertGreaterEqual(stats["open_watches"], 30)
        for w in watches:
            w.close()


if __name__ == "__main__":
    unittest.main()
