#!/usr/bin/env python3
"""Egress for a pod's whole life (issue #11, item 1), asserted on what the external host sees:
 1. a pod that starts talking before it is ready (its endpoint in the slice, not ready) leaves with the VIP
    as soon as the SNAT is in place, and never with another source after that; the time from its address
    appearing at the API to its first packet with the VIP is printed (TIMING);
 2. a terminating pod keeps its SNAT while it drains: one TCP connection held open across the pod's
    shutdown (a replacement ready on the same node) answers every line with the VIP until the pod closes
    it, and the node keeps the pod's mapping;
 3. leadership prefers a node with a ready pod: a holder left with only a terminating pod hands the VIP to the
    node with a ready one, and the VIP is never on two nodes at once.
"""
import json
import time

import kvc_test
from cluster import EXT4, VIPS4

STARTING = {"ready": False, "serving": False, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("{"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


class LifecycleTest(kvc_test.ClusterTestCase):
    NODES = 3

    def test_1_a_starting_pod_leaves_with_the_vip(self):
        c, vip = self.c, VIPS4[0]
        self.addCleanup(self._drop, "starter", "default", [vip])
        c.add_service("starter", [vip], families=["IPv4"])
        streams = []

        def start_streams(p):
            streams.append(p.stream(EXT4, tcp=80, udp=9000, interval=0.05, duration=60, tag="starter v4"))

        t0 = time.time()
        pod = c.add_pod("starter-0", 2, labels={"app": "starter"}, dual=False, conditions=STARTING,
                        on_netns_ready=start_streams)
        t_slice = c.last_slice_write

        def mine():
            return [r for r in c.ext_records(since=t0) if r.get("tag", "").startswith("starter v4")]

        def first_vip(proto):
            return next((r["t"] for r in mine() if r["proto"] == proto and r["src"] == vip), None)

        self.wait(lambda: first_vip("tcp") and first_vip("udp"), 30,
                  "the VIP from the starting pod (endpoint not ready)", 0.1)
        firsts = {p: first_vip(p) for p in ("tcp", "udp")}
        # Still starting: nothing has marked it ready, and the node holds the VIP for it.
        self.assertFalse(pod.conditions["ready"])
        self.assertEqual(c.vip_holders(vip), ["node2"])
        kvc_test.note_timing("starting pod: address at the API to first packet with the VIP",
                             max(firsts.values()) - t_slice,
                             first_per_protocol={p: round(t - t_slice, 3) for p, t in firsts.items()})
        time.sleep(1)
        c.set_endpoint_conditions("starter-0", ready=True, serving=True, terminating=False)
        time.sleep(2)
        for s in streams:
            s.stop()
        recs = mine()
        bad = [r for r in recs if r["t"] > firsts[r["proto"]] and r["src"] != vip]
        self.assertEqual(bad, [], "after the SNAT was in place the external host saw another source")
        self.assertTrue([r for r in recs if r["t"] > time.time() - 1.5], "the stream went on once ready")
        self.assertEqual(c.vip_holders(vip), ["node2"])

    def test_2_a_terminating_pod_drains_with_its_snat(self):
        c, vip = self.c, VIPS4[1]
        (old,) = self.egress("drain", 1, [vip], dual=False)
        hold = old.hold(EXT4, 80, interval=0.1, tag="drain")
        self.addCleanup(hold.close)

        def answers():
            return read_jsonl(hold.path)

        self.wait(lambda: len(answers()) >= 5 or not hold.alive(), 15, "the held connection answering")
        self.assertTrue(all(a.get("ok") for a in answers()), answers())
        # A rolling update on the same node: the replacement is ready, the old pod terminates.
        c.add_pod("drain-1", 1, labels={"app": "drain"}, dual=False)
        t_term = time.time()
        c.set_endpoint_conditions(old.name, **TERMINATING)
        time.sleep(4)
        self.assertIn(old.ip4, c.node(1).nft_ruleset(), "the terminating pod lost its mapping")
        # The replacement goes; the terminating pod, the last one, still drains.
        c.delete_pod("drain-1")
        time.sleep(2)
        self.assertEqual(c.vip_holders(vip), ["node1"])
        hold.send(15)  # SIGTERM: the pod closes its connection
        self.wait(lambda: any(a.get("closed") or a.get("ok") is False for a in answers()) or not hold.alive(),
                  10, "the held connection closing")
        got = answers()
        self.assertEqual([a for a in got if a.get("ok") is False], [], "the held connection broke")
        self.assertTrue(got[-1].get("closed"), got[-3:])
        during = [a for a in got if a.get("ok") and a["t"] > t_term]
        self.assertGreater(len(during), 30, "answers while the pod was terminating")
        self.assertEqual({a["seen"] for a in got if a.get("ok")}, {vip})
        held = [r for r in c.ext_records(since=t_term) if r["proto"] == "tcp-held" and
                r.get("tag", "").startswith("drain")]
        self.assertGreater(len(held), 30)
        self.assertEqual({r["src"] for r in held}, {vip})
        kvc_test.note_timing("terminating pod: held connection kept its SNAT while draining",
                             got[-1]["t"] - t_term, answers_while_terminating=len(during))

    def test_3_a_holder_with_only_terminating_pods_yields(self):
        c, vip = self.c, VIPS4[2]
        (old,) = self.egress("yield", 1, [vip], dual=False)
        self.assertEqual(c.vip_holders(vip), ["node1"])
        new = c.add_pod("yield-1", 3, labels={"app": "yield"}, dual=False)
        time.sleep(1)
        self.assertEqual(c.vip_holders(vip), ["node1"], "a ready holder keeps the VIP")
        t0 = time.time()
        c.set_endpoint_conditions(old.name, **TERMINATING)
        self.wait(lambda: c.vip_holders(vip) == ["node3"], 20, "the VIP handed to the node with a ready pod")
        kvc_test.note_timing("holder with only a terminating pod: VIP on the node with a ready one",
                             time.time() - t0)
        self.wait_source(new, vip)
        self.assertLessEqual(c.addr_watch.max_concurrent(vip, since=t0)[0], 1, "the VIP was on two nodes")


if __name__ == "__main__":
    kvc_test.main()
