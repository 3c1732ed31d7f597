#!/usr/bin/env python3
"""The README's main job: a simulated cluster in network namespaces, and what an external host sees as the
source address of a pod's traffic, in plain words, before and after egress, and when the pod moves.

  PYTHONPATH=tests/lib python3 tests/cluster/demo.py --build-dir build
Needs root. Takes well under a minute and leaves nothing behind (also on Ctrl-C or failure).
"""
import argparse
import os
import sys
import time

import cluster
from cluster import EXT4, EXT6, VIPS4, VIPS6, Cluster, node_svc4, node_svc6, run


def say(msg=""):
    print(msg, flush=True)


def seen_by_external(c, pod, dsts=((EXT4, "IPv4"), (EXT6, "IPv6"))):
    """One TCP connection, one UDP datagram and one ping from pod to each destination; returns
    {(family, proto): source the external host recorded}."""
    tag = "demo-%d" % int(time.time() * 1000)
    probes, keys = [], []
    for dst, fam in dsts:
        for proto, port in (("tcp", 80), ("udp", 5060), ("icmp", None)):
            probes.append({"proto": proto, "dst": dst, "port": port, "tag": "%s-%d" % (tag, len(probes))})
            keys.append((fam, proto))
    pod.probe(probes, timeout=2.0)
    out = {}
    for i, k in enumerate(keys):
        recs = c.ext_records(tag="%s-%d" % (tag, i))
        out[k] = recs[-1]["src"] if recs else "nothing (no answer)"
    return out


def show(c, pod, expect4, expect6, what):
    got = seen_by_external(c, pod)
    for fam, exp in (("IPv4", expect4), ("IPv6", expect6)):
        srcs = {got[(fam, p)] for p in ("tcp", "udp", "icmp")}
        if len(srcs) == 1:
            src = srcs.pop()
            say("     %s: the external host sees source %-18s (TCP, UDP and ping alike)  %s"
                % (fam, src, "<- " + what if src == exp else "!! expected %s" % exp))
        else:
            say("     %s: the external host sees %s  !! expected %s everywhere" %
                (fam, ", ".join("%s from %s" % (p, got[(fam, p)]) for p in ("tcp", "udp", "icmp")), exp))
    return all(got[(f, p)] == (expect4 if f == "IPv4" else expect6) for f in ("IPv4", "IPv6")
               for p in ("tcp", "udp", "icmp"))


def wait_for_source(c, pod, want, dst=EXT4, timeout=20):
    t0 = time.time()
    while time.time() < t0 + timeout:
        tag = "demo-wait-%d" % int(time.time() * 1000)
        pod.probe([{"proto": "tcp", "dst": dst, "port": 80, "tag": tag}], timeout=1.0)
        recs = c.ext_records(tag=tag)
        if recs and recs[-1]["src"] == want:
            return time.time() - t0
        time.sleep(0.1)
    raise TimeoutError("the external host did not see %s within %ds" % (want, timeout))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(cluster.ROOT, "build"))
    ap.add_argument("--verbose", action="store_true", help="print the daemons' logs at the end")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo.py needs root (network namespaces); run: sudo tools/demo.sh")
    cluster.install_signal_handlers()
    t_start = time.time()
    vip4, vip6 = VIPS4[5], VIPS6[5]
    ok = True
    c = Cluster(build_dir=a.build_dir, nodes=3, endpointslice_controller=True)
    try:
        say("kvegress demo: a simulated Kubernetes cluster in network namespaces on this machine")
        say("=" * 100)
        c.start()
        if c.ipc_problem:
            raise RuntimeError(c.ipc_problem)
        say("  * 3 nodes (node1, node2, node3). Each runs kvnetd, kvelectd and kvpd, each as its own user;")
        say("    only kvnetd holds CAP_NET_ADMIN. A test Kubernetes API server; Pods and Services are made")
        say("    with kubectl, its EndpointSlice controller lists the pods.")
        say("  * The nodes' own network 172.16.0.0/24 has no route out. Each node also sits on the service")
        say("    network 192.168.0.0/24 + fd00:192:168::/64 (eth1), where the VIPs live.")
        say("  * The external host %s / %s records the source address of every connection." % (EXT4, EXT6))
        say("  (up in %.1f s)" % (time.time() - t_start))
        say()

        say("1. A pod 'web' starts on node1 and talks to the external host.")
        pod = c.add_pod("web-1", 1, labels={"app": "web"})
        say("     pod address: %s and %s" % (pod.ip4, pod.ip6))
        ok &= show(c, pod, node_svc4(1), node_svc6(1), "node1's own address (the CNI masquerades pods)")
        say()

        say("2. The operator asks for a stable egress address: a LoadBalancer Service with kube-vip's annotations")
        say("     kube-vip.io/egress: \"true\", kube-vip.io/egress-ipv6: \"true\",")
        say("     kube-vip.io/loadbalancerIPs: %s,%s, externalTrafficPolicy: Local" % (vip4, vip6))
        t0 = time.time()
        c.add_service("web", [vip4, vip6], annotations={"kube-vip.io/egress-ipv6": "true"})
        dt = wait_for_source(c, pod, vip4)
        wait_for_source(c, pod, vip6, dst=EXT6)
        say("     (kubectl apply ...; %.2f s later the VIPs are on %s and egress is on)" %
            (time.time() - t0, ", ".join(c.vip_holders(vip4))))
        ok &= show(c, pod, vip4, vip6, "the VIP")
        svc = c.kubectl_json("get", "service", "web")
        ann = svc["metadata"]["annotations"]
        say("     kubectl get service web: vipHost=%s active-endpoint=%s active-endpoint-ipv6=%s" %
            (ann.get("kube-vip.io/vipHost"), ann.get("kube-vip.io/active-endpoint"),
             ann.get("kube-vip.io/active-endpoint-ipv6")))
        ingress = [i.get("ip") for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])]
        say("                              status.loadBalancer.ingress=%s" % ",".join(ingress))
        say()

        say("3. The pod is rescheduled to node2 (a new pod with a new address).")
        t0 = time.time()
        new = c.move_pod("web-1", "web-2", 2)
        say("     new pod address: %s and %s" % (new.ip4, new.ip6))
        dt = wait_for_source(c, new, vip4)
        wait_for_source(c, new, vip6, dst=EXT6)
        say("     %.2f s after the new pod became ready, the VIPs are on %s and egress follows the pod:" %
            (time.time() - new.ready_at, ", ".join(c.vip_holders(vip4))))
        ok &= show(c, new, vip4, vip6, "still the VIP")
        ann = c.kubectl_json("get", "service", "web")["metadata"]["annotations"]
        say("     kubectl get service web: vipHost=%s active-endpoint=%s" %
            (ann.get("kube-vip.io/vipHost"), ann.get("kube-vip.io/active-endpoint")))
        say()

        say("4. The operator removes the egress annotation (kubectl annotate service web kube-vip.io/egress-).")
        c.annotate("web", egress=None)
        wait_for_source(c, new, node_svc4(2))
        c.wait(lambda: not c.vip_holders(vip4) and not c.vip_holders(vip6), 10, "the VIPs to go")
        ok &= show(c, new, node_svc4(2), node_svc6(2), "node2's own address again")
        say("     no VIP is left on any node.")
        say()
    except KeyboardInterrupt:
        ok = False
        say("\ninterrupted")
    except Exception as e:  # noqa: BLE001 - say what failed, in words, then clean up
        ok = False
        say("\nthe demo failed: %s" % e)
        say(c.logs(40))
    finally:
        if a.verbose and ok:
            say(c.logs(40))
        prefix = c.prefix
        say("5. Tearing everything down...")
        c.close()
        left = [ns for ns in run(["ip", "netns", "list"]).stdout.split() if ns.startswith(prefix)]
        say("     %s (%.1f s in all)." % ("nothing left behind" if not left else "LEFT BEHIND: %s" % left,
                                         time.time() - t_start))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
