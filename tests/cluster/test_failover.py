#!/usr/bin/env python3
"""Scenarios 6 and 7: the node holding the VIP goes away; another node with a local endpoint takes over.

The Service has a pod on node1 (the leader, with the VIP) and one on node2. The pod on node2 streams to the
external host (TCP, UDP, ICMP over IPv4, and IPv6) throughout. Every address change on every node is followed
over rtnetlink, so "the VIP is never on two nodes at once" is checked over the whole run, not sampled; tcpdump
on the external host shows the gratuitous ARP / unsolicited NA, and its neighbour entry must move to node2's MAC.
 6a. crash: node1's three daemons are SIGKILLed and its interfaces vanish (power off); node2 takes over only
     once the lease has expired.
 6b. cable cut: node1 loses the nodes' network (the API) but stays on the service network with its daemons
     running: it must drop the VIP (renew deadline, kvnetd's own fence) before node2 takes it.
 7.  graceful stop of node1's daemons (as systemd stops them): node2 takes over within a second.
Lease timings are 3 s / 2 s / 0.5 s. The times are printed (TIMING lines).
"""
import re
import signal
import time

import kvc_test
from cluster import EXT4, EXT6, VIPS4, VIPS6


class FailoverTest(kvc_test.ClusterTestCase):
    NODES = 3
    IPC_PREFLIGHT = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c.start_ext_capture("arp or icmp6")

    def _leader_on_node1(self, name, vip4, vip6):
        c = self.c
        (p1,) = self.egress(name, 1, [vip4, vip6], annotations={"kube-vip.io/egress-ipv6": "true"})
        self.assertEqual(c.vip_holders(vip4), ["node1"])
        self.wait(lambda: (c.ext_neigh(vip4) or [None])[0] == c.node(1).mac(), 5,
                  "the external host's neighbour entry for the VIP at node1")
        p2 = c.add_pod("%s-1" % name, 2, labels={"app": name})
        time.sleep(1.0)  # node2 campaigns; it must not take the VIP from a live leader
        self.assertEqual(c.vip_holders(vip4), ["node1"])
        self.t_start = time.time()
        self.streams = [p2.stream(EXT4, tcp=80, udp=9000, icmp=True, interval=0.05, duration=90, tag="%s v4" % name),
                        p2.stream(EXT6, tcp=80, udp=9000, icmp=True, interval=0.1, duration=90, tag="%s v6" % name)]
        self.addCleanup(lambda: [s.stop() for s in self.streams])
        self.wait(lambda: self._recs(name), 5, "the stream from node2's pod")
        return p1, p2

    def _recs(self, name):
        return [r for r in self.c.ext_records(since=self.t_start) if r.get("tag", "").startswith(name + " ")]

    def _takeover(self, name, t0, vip4, vip6, what):
        """Waits for node2 to hold both VIPs and for the external host to see vip4 from node2's pod; checks the
        neighbour entry, the announcements and that the VIP was never on two nodes; returns the times."""
        c = self.c
        n2 = c.node(2)
        self.wait(lambda: c.addr_watch.holders(vip4) == [n2.netns] and c.addr_watch.holders(vip6) == [n2.netns],
                  20, "both VIPs on node2 alone")
        t_bound = [t for t, ns, op, a in c.addr_watch.events(vip4) if ns == n2.netns and op == "add"][-1]
        t_bound6 = [t for t, ns, op, a in c.addr_watch.events(vip6) if ns == n2.netns and op == "add"][-1]

        def first_vip(proto, fam):
            vip = vip6 if fam == 6 else vip4
            return next((r["t"] for r in self._recs(name) if r["proto"] == proto and r["family"] == fam
                         and r["src"] == vip and r["t"] > t0), None)

        wanted = [(p, f) for p in ("tcp", "udp", "icmp") for f in (4, 6)]
        self.wait(lambda: all(first_vip(p, f) for p, f in wanted), 20, "the VIP from node2's pod", 0.1)
        firsts = {(p, f): first_vip(p, f) for p, f in wanted}
        t_egress = max(firsts.values())
        mac2 = n2.mac()
        self.wait(lambda: (c.ext_neigh(vip4) or [None])[0] == mac2, 3, "the neighbour entry at node2's MAC")
        t_neigh = time.time()
        # The announcements, as the external host received them (tcpdump -e -tt).
        garp = [ln for ln in c.capture_lines() if ln.split(" ", 2)[1:2] == [mac2] and
                (re.search(r"who-has %s tell %s," % (re.escape(vip4), re.escape(vip4)), ln) or
                 re.search(r"Reply %s is-at" % re.escape(vip4), ln)) and float(ln.split()[0]) >= t0]
        na = [ln for ln in c.capture_lines() if ln.split(" ", 2)[1:2] == [mac2] and
              "neighbor advertisement" in ln and "tgt is %s," % vip6 in ln and float(ln.split()[0]) >= t0]
        self.assertTrue(garp, "no gratuitous ARP for %s from %s seen by the external host" % (vip4, mac2))
        self.assertTrue(na, "no unsolicited NA for %s from %s seen by the external host" % (vip6, mac2))
        t_garp = float(garp[0].split()[0])
        for vip in (vip4, vip6):
            worst, when = c.addr_watch.max_concurrent(vip)
            self.assertEqual(worst, 1, "%s was on %d nodes at once: %s" % (vip, worst, when))
        # After the takeover the stream never shows another source.
        time.sleep(2)
        bad = [r for r in self._recs(name) if r["t"] > firsts[(r["proto"], r["family"])]
               and r["src"] != (vip6 if r["family"] == 6 else vip4)]
        self.assertEqual(bad, [], "after the takeover the external host saw another source")
        times = {"vip4_bound": t_bound - t0, "vip6_bound": t_bound6 - t0, "egress_seen": t_egress - t0,
                 "garp_seen": t_garp - t0, "neighbour_moved_by": t_neigh - t0}
        kvc_test.note_timing("%s: VIP bound on node2" % what, t_bound - t0,
                             **{k: round(v, 3) for k, v in times.items()},
                             first_vip_per_protocol={"%s/v%d" % k: round(v - t0, 3) for k, v in firsts.items()})
        return times

    def test_6a_leader_node_crashes(self):
        vip4, vip6 = VIPS4[0], VIPS6[0]
        self._leader_on_node1("crash", vip4, vip6)
        n1 = self.c.node(1)
        self.expect_down |= {(n1.name, d) for d in ("kvnetd", "kvelectd", "kvpd")}
        self.addCleanup(self.c.power_on, n1)
        t0 = time.time()
        self.c.power_off(n1)
        times = self._takeover("crash", t0, vip4, vip6, "crash (SIGKILL + power off)")
        ld, rd, rp = self.LEASE
        self.assertGreaterEqual(times["vip4_bound"], ld - 2 * rp - 0.2, "taken over before the lease expired")
        self.assertLessEqual(times["vip4_bound"], ld + 2 * rp + 2.0)

    def test_6b_leader_node_cable_cut(self):
        vip4, vip6 = VIPS4[1], VIPS6[1]
        self._leader_on_node1("cut", vip4, vip6)
        n1 = self.c.node(1)
        t0 = time.time()
        self.c.ip_sw("link", "set", "n1n", "down")  # the nodes' network: node1 can no longer reach the API
        self.addCleanup(self.c.ip_sw, "link", "set", "n1n", "up")
        self.wait(lambda: not self.c.addr_watch.holders(vip4), 10, "node1 dropping the VIP it can no longer renew")
        t_fenced = [t for t, ns, op, a in self.c.addr_watch.events(vip4) if ns == n1.netns and op == "del"][-1]
        times = self._takeover("cut", t0, vip4, vip6, "cable cut (nodes' network)")
        kvc_test.note_timing("cable cut: VIP removed from the cut-off node1", t_fenced - t0)
        self.assertLess(t_fenced, t0 + times["vip4_bound"])
        # The cable comes back: node1 does not take the VIP back from a live leader.
        self.c.ip_sw("link", "set", "n1n", "up")
        t_back = time.time()
        while time.time() < t_back + 3:
            self.assertEqual(self.c.addr_watch.holders(vip4), [self.c.node(2).netns])
            time.sleep(0.2)
        self.assertEqual(self.c.addr_watch.max_concurrent(vip4)[0], 1)

    def test_6c_daemons_killed_and_restarted_by_systemd(self):
        """SIGKILL to node1's three daemons while the node lives; systemd restarts them after RestartSec=1s.
        Whichever node ends up holding the VIP (node1 re-acquires its own unexpired lease, or node2 takes
        over), the VIP is never on two nodes and the holder's pod leaves from the VIP."""
        vip4, vip6 = VIPS4[3], VIPS6[3]
        p1, p2 = self._leader_on_node1("phoenix", vip4, vip6)
        n1 = self.c.node(1)
        t0 = time.time()
        n1.kill_daemons()
        time.sleep(1.0)
        n1.start_daemons()
        t_restarted = time.time()

        def settled():
            h = self.c.addr_watch.holders(vip4)
            return len(h) == 1 and h == self.c.addr_watch.holders(vip6) and h
        self.wait(settled, 15, "one holder of both VIPs")
        time.sleep(self.LEASE[0] + 1)  # past a lease duration: a stale VIP would have been taken over by now
        holders = self.c.addr_watch.holders(vip4)
        self.assertEqual(len(holders), 1, holders)
        holder = next(n for n in self.c.nodes if n.netns == holders[0])
        pod = p1 if holder.n == 1 else p2
        self.wait_source(pod, vip4)
        self.wait_source(pod, vip6, dst=EXT6)
        for vip in (vip4, vip6):
            worst, when = self.c.addr_watch.max_concurrent(vip)
            self.assertEqual(worst, 1, "%s was on %d nodes at once: %s" % (vip, worst, when))
        self.assertEqual(self.c.kubectl_json("get", "lease", "kubevip-phoenix")["spec"]["holderIdentity"],
                         holder.name)
        ev = [(round(t - t0, 3), ns.rsplit("-", 1)[1], op) for t, ns, op, a in self.c.addr_watch.events(vip4)
              if t >= t0]
        print("\nafter SIGKILL + restart %.2fs later: holder %s, VIP events since the kill: %s"
              % (t_restarted - t0, holder.name, ev or "none (the VIP and rules stayed in the kernel)"))

    def test_7_graceful_stop_takeover_within_a_second(self):
        vip4, vip6 = VIPS4[2], VIPS6[2]
        self._leader_on_node1("calm", vip4, vip6)
        n1 = self.c.node(1)
        self.expect_down |= {(n1.name, d) for d in ("kvnetd", "kvelectd", "kvpd")}
        self.addCleanup(n1.start_daemons)
        t0 = time.time()
        codes = n1.stop_daemons(signal.SIGTERM, 10)
        self.assertEqual(codes, {"kvpd": 0, "kvelectd": 0, "kvnetd": 0}, "exit codes at SIGTERM")
        times = self._takeover("calm", t0, vip4, vip6, "graceful stop")
        self.assertLess(times["vip4_bound"], 1.0, "takeover after a graceful stop took %.3fs" % times["vip4_bound"])
        self.assertEqual(n1.vips(), [])
        rules = n1.nft_ruleset()
        for a in (vip4, vip6) + tuple(self.c.pods["calm-0"].ips):
            self.assertNotIn(a, rules, "left on the stopped node1")


if __name__ == "__main__":
    kvc_test.main()
