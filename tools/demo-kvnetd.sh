#!/usr/bin/env bash
# kvnetd demo in network namespaces (needs root): a pod's traffic to an
# external host first leaves with the node's address, then, once kvnetd is
# told to, with the VIP. Builds the topology of tests/lib/kvnet.py, runs the
# real kvnetd as user kvnetd with only CAP_NET_ADMIN and CAP_NET_RAW, and
# removes everything at the end (also on failure or Ctrl-C).
#   tools/demo-kvnetd.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
export KVEGRESS_BUILD_DIR=$PWD/$build_dir  # tests/lib/kvbuild.py: the kvnetd of this build
if [ ! -x "$KVEGRESS_BUILD_DIR/kvnetd/kvnetd" ]; then
    echo "demo: $KVEGRESS_BUILD_DIR/kvnetd/kvnetd is missing; run tools/setup.sh $build_dir first" >&2
    exit 1
fi
getent passwd kvnetd >/dev/null || { echo "demo: user kvnetd is missing; run tools/setup.sh" >&2; exit 1; }

exec python3 - <<'PY'
import os, sys, time
sys.path.insert(0, "tests/lib")
import netns
from kvnet import (EXT4, EXT6, NODE_SVC4, POD4, POD6, POD_CIDRS, SVC_CIDRS, VIP4, VIP6, EgressTopology,
                   Kvnetd)

def say(s):
    print(s, flush=True)

def show(net, what):
    for proto, host, src in (("tcp", EXT4, POD4), ("udp", EXT4, POD4), ("tcp", EXT6, POD6)):
        seen = netns.probe(net.pod, proto, host, 8080 if proto == "tcp" else 5060, src=src)
        say(f"    pod {src:<16} -> external {host:<14} {proto}: the external host sees {seen}")
    net.ext_rec.clear()
    netns.ping(net.pod, EXT4, src=POD4)
    hits = net.ext_rec.wait_for(lambda e: e["proto"] == "icmp", timeout=2)
    say(f"    pod {POD4:<16} -> external {EXT4:<14} ping: the external host sees {hits[0]['src'] if hits else '?'}")

t0 = time.monotonic()
with netns.Topology("kvdemo") as t:
    say("Building namespaces: pod -> node -> service network (bridge) -> external host, and a second worker.")
    net = EgressTopology(t)
    say(f"Starting kvnetd in the node namespace as user kvnetd (CAP_NET_ADMIN, CAP_NET_RAW only).")
    k = Kvnetd(net.node, extra_args=("--log-level", "info")).start()
    say("\nBefore egress: the CNI masquerades the pod behind the node's own address "
        f"({NODE_SVC4}):")
    show(net, "before")
    with k.client() as c:
        say(f"\nAsking kvnetd over its socket: GrantVip {VIP4} and {VIP6} on eth1 to default/web, "
            f"then SetEgress for pods {POD4} and {POD6}.")
        c.grant_vip("default/web", VIP4, "eth1", ttl=60)
        c.grant_vip("default/web", VIP6, "eth1", ttl=60)
        c.set_egress("default/web", VIP4, VIP6, [POD4, POD6], excluded=POD_CIDRS + SVC_CIDRS)
        say("\nAfter egress: the same traffic leaves with the VIP as its source:")
        show(net, "after")
        say("\nkvnetd's table (one nft transaction per change):")
        for line in net.node.run("nft", "list", "table", "inet", "kvegress").stdout.splitlines():
            if "snat ip" in line or "goto cls_" in line or "comment \"default/web\"" in line:
                say("    " + line.strip())
    k.stop()
    say("\nStopped kvnetd; removing every namespace.")
left = [n for n in netns.list_netns() if n.startswith(f"kvdemo{os.getpid()}-")]
say(f"Done in {time.monotonic() - t0:.1f}s; namespaces left behind: {len(left)}.")
PY
