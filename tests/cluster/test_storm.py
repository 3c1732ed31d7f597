#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A storm of faults (issue #11 item 3): 3 nodes, 32 egress Services (one in five dual-stack), for
KVEGRESS_STORM_SECONDS (20 s in the suite; 3600 for an hour), rounds of one to three faults at once drawn from
tests/lib/storm.py's injectors (SIGKILL of any daemon on any node restarted after 0.1-3 s, SIGSTOP past
renewDeadline, the API server restarted, its connections cut, its history compacted, a node cut off from it
for longer than the lease, kvnetd's table deleted, the ruleset flushed, a VIP removed) while endpoints are added,
moved and removed and annotations edited. Asserted throughout (storm.Sampler): never a VIP on two nodes; never a
pod SNATed to a VIP its node does not hold; no daemon exits by itself or leaves kvctl unanswered for 30 s. After
each round (faults healed): every node's kernel equals the desired state, deleted Services included, within
KVEGRESS_STORM_BOUND (60 s in the suite; the 10-seed runs used 30 s).

The seed is printed; KVEGRESS_STORM_SEED=N repeats the run's decisions (timing aside). KVEGRESS_STORM_FAULTS=a,b
limits the kinds (storm.FAULT_KINDS). The Lease timings are 8/5/2 s; kvnetd reconciles its table every 5 s.

  PYTHONPATH=tests/lib python3 tests/cluster/test_storm.py --build-dir build-sanitize -v
"""
import os
import random

import kvbuild
import kvc_test
import storm


class StormTest(kvc_test.ClusterTestCase):
    NODES = 3
    LEASE = (8, 5, 2)
    CLUSTER_ARGS = {"vip_ranges": ("192.168.0.128/26", "fd00:192:168::1000/120"), "kvpd_socket": True,
                    "daemon_args": {"kvnetd": ["--reconcile-interval", "5s"]}}

    def test_storm(self):
        seed = int(os.environ.get("KVEGRESS_STORM_SEED") or random.SystemRandom().randrange(1, 1 << 31))
        # The suite runs it beside other cluster tests on a loaded machine: 20 s of storm (the whole test takes
        # about 90 s, most of it the cluster and 32 Services coming up) and a loose bound; the safety invariants
        # are asserted whatever the bound. Outside the suite: KVEGRESS_STORM_SECONDS, KVEGRESS_STORM_BOUND=30.
        seconds = float(os.environ.get("KVEGRESS_STORM_SECONDS") or 20)
        bound = float(os.environ.get("KVEGRESS_STORM_BOUND") or 60)
        kinds = [k for k in (os.environ.get("KVEGRESS_STORM_FAULTS") or "").split(",") if k] or storm.FAULT_KINDS
        unknown = set(kinds) - set(storm.FAULT_KINDS)
        self.assertFalse(unknown, "unknown fault kinds (storm.FAULT_KINDS: %s)" % ",".join(storm.FAULT_KINDS))
        kvctl = kvbuild.binary("kvctl/kvctl")
        s = storm.Storm(self.c, seed, seconds, bound=bound, kinds=kinds, kvctl=kvctl,
                        say=lambda m: print("[storm] " + m, flush=True))
        s.setup()
        try:
            rep = s.run()
        finally:
            s.sampler.stop()
        kvc_test.note_timing("storm: the longest convergence after a round of faults", rep["longest_convergence_s"],
                             seed=seed, faults=rep["faults"], rounds=rep["rounds"],
                             after=rep["longest_convergence_after"])
        self.assertEqual(s.sampler.violations, [], "storm seed %d: invariants violated (KVEGRESS_STORM_SEED=%d "
                         "repeats it)" % (seed, seed))


if __name__ == "__main__":
    kvc_test.main()
