#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: pod mappings in one transaction, and one change among many.

Runs kvnetd in a namespace and times SetEgress over the real socket (client
round trip included), then prints a table. Reference in the same run: the
same 10,000 elements added with the nft CLI in one batch.
    sudo tests/kvnetd/bench_kvnetd_mappings.py [N]"""

import sys
import time


import netns
from kvnet import VIP4, EgressTopology, Kvnetd


def pods(n, base=100):
    return [f"10.{base + (i >> 16)}.{(i >> 8) & 255}.{i & 255}" for i in range(n)]


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    rows = []
    with netns.Topology("kvb") as t:
        net = EgressTopology(t)
        k = Kvnetd(net.node, extra_args=("--log-level", "info")).start()
        with k.client() as c:
            c.grant_vip("default/bench", VIP4, "eth1", ttl=300)
            all_pods = pods(n)
            rows.append((f"{n} mappings, one SetEgress (one transaction)",
                         timed(lambda: c.set_egress("default/bench", VIP4, "", all_pods))))
            changed = all_pods[:-1] + ["10.250.0.1"]
            rows.append((f"change one mapping with {n} present",
                         timed(lambda: c.set_egress("default/bench", VIP4, "", changed))))
            rows.append((f"replay the same {n} (no change)",
                         timed(lambda: c.set_egress("default/bench", VIP4, "", changed))))
            rows.append((f"add a denied network (rules rewritten, {n} pods kept)",
                         timed(lambda: c.set_egress("default/bench", VIP4, "", changed, denied=["203.0.113.0/24"]))))
            rows.append((f"remove the service ({n} mappings)", timed(lambda: c.remove_service("default/bench"))))
        k.stop()
        # Reference: the nft CLI adding the same elements in one batch.
        net.node.nft("table inet ref { map m { type ipv4_addr : verdict; }; chain c { }; }")
        script = "add element inet ref m { " + ", ".join(f"{p} : goto c" for p in pods(n)) + " }\n"
        rows.append((f"reference: nft -f, {n} elements in one batch", timed(lambda: net.node.nft(script))))
    w = max(len(r[0]) for r in rows)
    print(f"{'operation'.ljust(w)}  ms")
    for name, ms in rows:
        print(f"{name.ljust(w)}  {ms:8.1f}")


if __name__ == "__main__":
    main()
