#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""New UDP flows per second through a router namespace.

    gen (pods) ── eth0 [router] eth1 ── sink
    172.31.0.2     172.31.0.1  192.0.2.1   192.0.2.2 (VIPs are bound on eth1)

flowgen (C, raw socket) sends datagrams from pod addresses to 198.51.100.1,
routed through the router to the sink; each datagram is a new flow (new
source port / destination port / source address). The sink counts them at
its ingress (netdev hook, then drops them): how many arrived, and how many
carry a VIP (100.64.0.0/10) as source, i.e. were SNATed. The router is
where the ruleset under test lives: none, one SNAT rule, or kvnetd's.

The generator and the router share a core (veth forwarding runs in the
sender's context), so the figure is the rate one core forwards new flows
at, ruleset included. Conntrack is flushed before each run. The machine
is shared, so the rulesets compared are measured in turn, run after run
(a one-rule router stays up for the whole benchmark), and each figure is
the median of its runs.

Alone, this prints the two references:
    tools/bench/flows.py [--quick] [--out FILE]"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import Table, median, tool  # noqa: E402

import netns  # noqa: E402

VIP_RANGE = "100.64.0.0/10"
SINK_DST = "198.51.100.1"


class FlowTopology:
    def __init__(self, t):
        self.gen, self.router, self.sink = t.netns("gen"), t.netns("rtr"), t.netns("sink")
        t.veth(self.gen, "eth0", self.router, "eth0")
        t.veth(self.router, "eth1", self.sink, "eth0")
        self.gen.addr("eth0", "172.31.0.2/24")
        self.gen.route("default", "via", "172.31.0.1")
        self.router.addr("eth0", "172.31.0.1/24")
        self.router.addr("eth1", "192.0.2.1/24")
        self.sink.addr("eth0", "192.0.2.2/24")
        self.router.sysctl("net.ipv4.ip_forward", 1)
        for k in ("all", "default", "eth0", "eth1"):
            self.router.sysctl(f"net.ipv4.conf.{k}.rp_filter", 0)
        self.router.route("10.0.0.0/8", "via", "172.31.0.2")
        self.router.route("198.51.100.0/24", "via", "192.0.2.2")
        # No ARP on the measured path.
        self._pin_neigh(self.router, "eth1", "192.0.2.2", self.sink, "eth0")
        self._pin_neigh(self.gen, "eth0", "172.31.0.1", self.router, "eth0")
        self.sink.nft(f"""
table netdev sink {{
  counter vip {{ }}
  counter other {{ }}
  chain in {{ type filter hook ingress device "eth0" priority 0; policy accept;
    ip protocol udp ip saddr {VIP_RANGE} counter name "vip" drop
    ip protocol udp counter name "other" drop
  }}
}}
""")

    @staticmethod
    def _pin_neigh(ns, ifname, addr, peer, peer_if):
        mac = peer.ip_json("link", "show", "dev", peer_if)[0]["address"]
        ns.ip("neigh", "replace", addr, "lladdr", mac, "dev", ifname, "nud", "permanent")

    def counters(self):
        out = {}
        for o in benchlib.nft_json(self.sink, "list", "counters", "table", "netdev", "sink")["nftables"]:
            if "counter" in o:
                out[o["counter"]["name"]] = o["counter"]["packets"]
        return out

    def once(self, sources, flows, limit=60):
        """One run: (new flows/s arrived at the sink, share SNATed)."""
        self.router.run("conntrack", "-F", check=False)
        self.sink.run("nft", "reset", "counters", "table", "netdev", "sink")
        p = self.gen.run(tool("flowgen"), str(flows), SINK_DST, *sources, timeout=limit)
        seconds = float(p.stdout.split()[3])
        c = self.counters()
        got = c.get("vip", 0) + c.get("other", 0)
        self.router.run("conntrack", "-F", check=False)
        return (got / seconds if seconds > 0 else 0), (c.get("vip", 0) / got if got else 0)


def interleaved(runs, flows, reps):
    """runs: [(FlowTopology, sources)]. Runs them in turn, reps rounds, so
    the machine's load (it is shared) weighs on each alike; returns the
    median (rate, SNATed share) of each."""
    got = [[] for _ in runs]
    for _ in range(reps):
        for i, (ft, srcs) in enumerate(runs):
            got[i].append(ft.once(srcs, flows))
    return [(median([g[0] for g in x]), median([g[1] for g in x])) for x in got]


class Reference:
    """A router with one SNAT rule, kept up for the whole run, to measure
    beside every other ruleset."""

    # One source: 16 pods SNATed to one address would clash on ports
    # (flowgen gives every source the same port sequence) and the search for
    # a free port would be measured instead of the ruleset. kvnetd's 16
    # sources belong to 16 Services, each with its own VIP: no clash.
    PODS = ["10.128.0.1"]

    def __init__(self):
        self.t = netns.Topology("kvbf")
        self.ft = FlowTopology(self.t)
        self.ft.router.nft("""
table ip ref {
  chain post { type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.128.0.0/16 snat to 100.64.0.1
  }
}
""")

    def run(self):
        return (self.ft, self.PODS)

    def close(self):
        self.t.cleanup()


def fmt_rate(r):
    return "-" if r is None else f"{r / 1000:,.0f}k/s"


def references(ref, flows, reps):
    """No ruleset at all (no NAT, no conntrack) against one SNAT rule."""
    with netns.Topology("kvbn") as t:
        bare = FlowTopology(t)
        (b, _), (one, share) = interleaved([(bare, Reference.PODS), ref.run()], flows, reps)
    return b, one, share


def main():
    ap = benchlib.common_args(argparse.ArgumentParser(description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    args = ap.parse_args()
    flows = 50000 if args.quick else 200000
    ref = Reference()
    try:
        bare, one, share = references(ref, flows, 5)
    finally:
        ref.close()
    t = Table("New flows per second, references", ["router ruleset", "new flows/s", "SNATed"])
    t.add("none (no NAT, no conntrack)", fmt_rate(bare), "0 %")
    t.add("one SNAT rule", fmt_rate(one), f"{share:.0%}")
    benchlib.write_markdown(args.out, [t])
    print(json.dumps({"bare": bare, "one_rule": one}))


if __name__ == "__main__":
    main()
