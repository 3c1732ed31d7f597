#!/usr/bin/env python3
"""Scenario 2: the pod is rescheduled to another node; the VIP and the egress follow it. A new pod starts
talking to the external host at once (TCP connections, one long-lived UDP flow, ICMP echo, IPv4 and IPv6)
while the move goes on; once the external host has seen the VIP from it (per protocol), it never sees any
other source again. The time from the new pod being Ready to the first packet with the VIP is measured and
printed (TIMING lines). Here the API server's EndpointSlice controller derives the slices from the Pods.
"""
import time

import kvc_test
from cluster import EXT4, EXT6, VIPS4, VIPS6


class MoveTest(kvc_test.ClusterTestCase):
    NODES = 3
    IPC_PREFLIGHT = True
    ENDPOINTSLICE_CONTROLLER = True  # slices from the Pods, by the API server, as in a real cluster

    def _move(self, svc, old, new_name, to, vip4, vip6):
        c = self.c
        streams = []

        def start_streams(p):
            streams.append(p.stream(EXT4, tcp=80, udp=9000, icmp=True, interval=0.05, duration=60,
                                    tag="%s v4" % new_name))
            streams.append(p.stream(EXT6, tcp=80, udp=9000, icmp=True, interval=0.05, duration=60,
                                    tag="%s v6" % new_name))

        t_delete = time.time()
        new = c.move_pod(old, new_name, to, on_netns_ready=start_streams)
        t_ready = new.ready_at

        def mine():
            return [r for r in c.ext_records(since=t_delete) if r.get("tag", "").startswith(new_name + " ")]

        def first_vip(proto, fam):
            vip = vip6 if fam == 6 else vip4
            for r in mine():
                if r["proto"] == proto and r["family"] == fam and r["src"] == vip:
                    return r["t"]
            return None

        wanted = [(p, f) for p in ("tcp", "udp", "icmp") for f in (4, 6)]
        try:
            self.wait(lambda: all(first_vip(p, f) for p, f in wanted), 30, "the VIP from %s for every protocol"
                      % new_name, 0.1)
        finally:
            pass
        firsts = {(p, f): first_vip(p, f) for p, f in wanted}
        done = max(firsts.values())
        # Keep streaming a while after the move completed, then stop.
        time.sleep(3)
        for s in streams:
            s.stop()
        recs = mine()
        bad = [r for r in recs if r["t"] > firsts[(r["proto"], r["family"])]
               and r["src"] != (vip6 if r["family"] == 6 else vip4)]
        self.assertEqual(bad, [], "after the move completed the external host saw another source")
        before = [r for r in recs if r["t"] < firsts[(r["proto"], r["family"])]]
        kvc_test.note_timing("move %s->%s: Ready to VIP source (all protocols, both families)" % (old, to),
                             done - t_ready, first_per_protocol={"%s/v%d" % k: round(v - t_ready, 3)
                                                                 for k, v in firsts.items()},
                             from_old_pod_deleted=round(done - t_delete, 3),
                             non_vip_packets_before=len(before), packets_after=len(recs) - len(before))
        self.assertEqual(c.vip_holders(vip4), [new.node.name])
        self.assertEqual(c.vip_holders(vip6), [new.node.name])
        self.assertLessEqual(c.addr_watch.max_concurrent(vip4, since=t_delete)[0], 1)
        self.assertLessEqual(c.addr_watch.max_concurrent(vip6, since=t_delete)[0], 1)
        ann = c.kubectl_json("get", "service", svc)["metadata"]["annotations"]
        self.assertEqual(ann.get("kube-vip.io/vipHost"), new.node.name)
        self.assertEqual(ann.get("kube-vip.io/active-endpoint"), new.ip4)
        self.assertEqual(ann.get("kube-vip.io/active-endpoint-ipv6"), new.ip6)
        return new, done - t_ready

    def test_2_pod_moves_and_the_egress_follows(self):
        vip4, vip6 = VIPS4[0], VIPS6[0]
        (pod,) = self.egress("mover", 1, [vip4, vip6], annotations={"kube-vip.io/egress-ipv6": "true"})
        self.assertEqual(self.c.vip_holders(vip4), ["node1"])
        new, t1 = self._move("mover", pod.name, "mover-1", 2, vip4, vip6)
        old_rules = self.c.node(1).nft_ruleset()
        self.assertNotIn(pod.ip4, old_rules)
        self.assertNotIn(vip4, old_rules)
        new2, t2 = self._move("mover", new.name, "mover-2", 3, vip4, vip6)
        self.assertNotIn(new.ip4, self.c.node(2).nft_ruleset())


if __name__ == "__main__":
    kvc_test.main()
