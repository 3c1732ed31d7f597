#!/usr/bin/env python3
"""The harness checks itself, without the daemons: what the external host sees is what the network does.
- Without egress, pod traffic leaves masqueraded by the CNI: the source is the node's service-network address
  (TCP, UDP, ICMP; IPv4 and IPv6).
- Pod-to-pod traffic across nodes keeps the pod's address (routes over the nodes' network, no masquerade).
- A ClusterIP is DNATed by the node's kube-proxy stand-in to the external host.
- A hand-written SNAT rule and VIP in one node change what the external host sees to the VIP, and the address
  watcher sees the VIP come and go: so the harness can observe egress.
- kubectl sees the objects the harness created; close() leaves no namespace behind.
"""
import unittest

import kvc_test
from cluster import (CLUSTERIP4, CLUSTERIP6, EXT4, EXT6, POD_PORT, SERVICE_IF, VIPS4, VIPS6, Cluster, node_svc4,
                     node_svc6, run)


class HarnessTest(kvc_test.ClusterTestCase):
    NODES = 2
    DAEMONS = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.c.add_pod("a", 1)
        cls.b = cls.c.add_pod("b", 2)

    def test_without_egress_the_node_address(self):
        got = self.probe_sources(self.a, [("tcp", EXT4, 80), ("udp", EXT4, 5060), ("icmp", EXT4, None),
                                          ("tcp", EXT6, 80), ("udp", EXT6, 5060), ("icmp", EXT6, None)])
        for (proto, dst, port), src in got.items():
            self.assertEqual(src, node_svc6(1) if ":" in dst else node_svc4(1), (proto, dst, port))

    def test_pod_to_pod_across_nodes_keeps_the_pod_address(self):
        got = self.probe_sources(self.a, [("tcp", self.b.ip4, POD_PORT), ("udp", self.b.ip4, POD_PORT),
                                          ("icmp", self.b.ip4, None), ("tcp", self.b.ip6, POD_PORT),
                                          ("icmp", self.b.ip6, None)])
        for (proto, dst, port), src in got.items():
            self.assertEqual(src, self.a.ip6 if ":" in dst else self.a.ip4, (proto, dst, port))

    def test_clusterip_reaches_the_external_host(self):
        got = self.probe_sources(self.a, [("tcp", CLUSTERIP4, 80), ("tcp", CLUSTERIP6, 80)])
        self.assertEqual(got[("tcp", CLUSTERIP4, 80)], node_svc4(1))
        self.assertEqual(got[("tcp", CLUSTERIP6, 80)], node_svc6(1))

    def test_handwritten_snat_is_observed(self):
        node = self.c.node(1)
        vip4, vip6 = VIPS4[7], VIPS6[15]
        ip = lambda *a: run(["ip"] + list(a), ns=node.netns)  # noqa: E731
        ip("addr", "add", vip4 + "/32", "dev", SERVICE_IF, "preferred_lft", "0")
        ip("addr", "add", vip6 + "/128", "dev", SERVICE_IF, "preferred_lft", "0", "nodad")
        rules = """table inet kvc_selftest {
  chain post { type nat hook postrouting priority srcnat - 10; policy accept;
    ip saddr %s ip daddr != 10.244.0.0/16 snat ip to %s
    ip6 saddr %s ip6 daddr != fd00:10:244::/56 snat ip6 to %s
  }
}""" % (self.a.ip4, vip4, self.a.ip6, vip6)
        run(["nft", "-f", "-"], ns=node.netns, input=rules)
        try:
            self.wait(lambda: self.c.addr_watch.holders(vip4) == [node.netns], 5, "watcher sees the VIP")
            got = self.probe_sources(self.a, [("tcp", EXT4, 80), ("udp", EXT4, 5060), ("icmp", EXT4, None),
                                              ("tcp", EXT6, 80), ("udp", EXT6, 5060), ("icmp", EXT6, None),
                                              ("tcp", self.b.ip4, POD_PORT)])
            for (proto, dst, port), src in got.items():
                want = self.a.ip4 if dst == self.b.ip4 else vip6 if ":" in dst else vip4
                self.assertEqual(src, want, (proto, dst, port))
            self.assertEqual(self.c.ext_neigh(vip4)[0], node.mac())
        finally:
            run(["nft", "delete", "table", "inet", "kvc_selftest"], ns=node.netns)
            ip("addr", "del", vip4 + "/32", "dev", SERVICE_IF)
            ip("addr", "del", vip6 + "/128", "dev", SERVICE_IF)
        self.wait(lambda: self.c.addr_watch.holders(vip4) == [], 5, "watcher sees the VIP go")
        self.assertEqual(self.c.addr_watch.max_concurrent(vip4)[0], 1)
        run(["conntrack", "-F"], ns=node.netns, check=False)
        got = self.probe_sources(self.a, [("tcp", EXT4, 80)])
        self.assertEqual(got[("tcp", EXT4, 80)], node_svc4(1))

    def test_kubectl_sees_the_objects(self):
        nodes = self.c.kubectl_json("get", "nodes")["items"]
        self.assertEqual(sorted(n["metadata"]["name"] for n in nodes), ["node1", "node2"])
        self.assertEqual(nodes[0]["spec"]["podCIDRs"], ["10.244.1.0/24", "fd00:10:244:1::/64"])
        pod = self.c.kubectl_json("get", "pod", "a")
        self.assertEqual(pod["spec"]["nodeName"], "node1")
        self.assertEqual([p["ip"] for p in pod["status"]["podIPs"]], self.a.ips)
        self.c.add_service("svc-h", [VIPS4[6]], selector={"app": "a"})
        try:
            eps = self.c.kubectl_json("get", "endpointslices", "-l", "kubernetes.io/service-name=svc-h")["items"]
            self.assertEqual(len(eps), 1)
            self.assertEqual(eps[0]["endpoints"][0]["addresses"], [self.a.ip4])
            self.assertEqual(eps[0]["endpoints"][0]["nodeName"], "node1")
            svc = self.c.kubectl_json("get", "service", "svc-h")
            self.assertEqual(svc["metadata"]["annotations"]["kube-vip.io/egress"], "true")
        finally:
            self.c.delete_service("svc-h")


class CleanupTest(unittest.TestCase):
    def test_close_leaves_nothing(self):
        c = Cluster(nodes=2, daemons=())
        c.start()
        p = c.add_pod("x", 1)
        prefix, d = c.prefix, c.dir
        self.assertIn(p.netns, run(["ip", "netns", "list"]).stdout)
        c.close()
        left = [ns for ns in run(["ip", "netns", "list"]).stdout.split() if ns.startswith(prefix)]
        self.assertEqual(left, [])
        import os
        self.assertFalse(os.path.exists(d))


if __name__ == "__main__":
    kvc_test.main()
