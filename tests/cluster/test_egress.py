#!/usr/bin/env python3
"""The documentation's egress scenarios, asserted on what the external host sees, with the three daemons
running on three nodes (issue #6, scenarios 1, 3, 4, 5, 8 and 9):
 1. the source is the VIP for TCP, UDP and ICMP; without the annotation it is the node's address;
 3. egress-destination-ports tcp:8080,udp:5060: only those are rewritten;
 4. dual stack: egress-ipv6 with an IPv6 VIP, and both families at once;
 5. denied and allowed networks; the pod and service CIDRs are excluded; pod-to-pod across nodes keeps the
    pod address;
 8. status annotations, status.loadBalancer.ingress and Events, as kubectl shows them;
 9. after the annotation is removed, or the Service deleted, nothing is left on any node.
"""
import json

import kvc_test
from cluster import (CLUSTERIP4, CLUSTERIP6, EXT4, EXT4B, EXT6, FAR4, FAR6, POD_PORT, VIPS4, VIPS6, node_svc4,
                     node_svc6)


class EgressTest(kvc_test.ClusterTestCase):
    NODES = 3
    IPC_PREFLIGHT = True

    def test_1_source_is_the_vip_for_tcp_udp_icmp(self):
        (pod,) = self.egress("web", 1, [VIPS4[0]])
        got = self.probe_sources(pod, [("tcp", EXT4, 80), ("tcp", EXT4, 8080), ("udp", EXT4, 5060),
                                       ("udp", EXT4, 9000), ("icmp", EXT4, None), ("tcp", EXT4B, 80)])
        for k, src in got.items():
            self.assertEqual(src, VIPS4[0], k)
        self.assertEqual(self.c.vip_holders(VIPS4[0]), ["node1"])
        # A CNI that re-creates its masquerade chain (its hook then runs after ours) does not win.
        self.c.reinstall_cni(self.c.node(1))
        self.assertEqual(self.source(pod, "udp", EXT4, 5060), VIPS4[0])
        self.assertEqual(self.source(pod, "tcp", EXT4, 80), VIPS4[0])

    def test_1_without_the_annotation_the_node_address(self):
        pod = self.c.add_pod("plain-0", 2, labels={"app": "plain"}, dual=False)
        self.addCleanup(self._drop, "plain")
        self.c.add_service("plain", [VIPS4[1]], egress=False)
        got = self.probe_sources(pod, [("tcp", EXT4, 80), ("udp", EXT4, 5060), ("icmp", EXT4, None)])
        for k, src in got.items():
            self.assertEqual(src, node_svc4(2), k)
        # Turning it on afterwards works, and off again gives the node's address back.
        self.c.annotate("plain", egress="true")
        self.wait_source(pod, VIPS4[1])
        self.c.annotate("plain", egress=None)
        self.wait_source(pod, node_svc4(2))
        self.wait_source(pod, node_svc4(2), proto="udp", port=5060)
        self.wait_source(pod, node_svc4(2), proto="icmp", port=None)

    def test_3_destination_ports(self):
        (pod,) = self.egress("sip", 1, [VIPS4[2]], dual=False,
                             annotations={"kube-vip.io/egress-destination-ports": "tcp:8080,udp:5060"}, wait=False)
        self.wait_source(pod, VIPS4[2], proto="tcp", port=8080)
        got = self.probe_sources(pod, [("tcp", EXT4, 8080), ("udp", EXT4, 5060), ("tcp", EXT4, 80),
                                       ("tcp", EXT4, 9000), ("udp", EXT4, 9000), ("icmp", EXT4, None)])
        self.assertEqual(got.pop(("tcp", EXT4, 8080)), VIPS4[2])
        self.assertEqual(got.pop(("udp", EXT4, 5060)), VIPS4[2])
        for k, src in got.items():
            self.assertEqual(src, node_svc4(1), k)

    def test_4_ipv6_only_with_egress_ipv6(self):
        (pod,) = self.egress("v6", 2, [VIPS6[0]], annotations={"kube-vip.io/egress-ipv6": "true"})
        got = self.probe_sources(pod, [("tcp", EXT6, 80), ("udp", EXT6, 5060), ("icmp", EXT6, None),
                                       ("tcp", EXT4, 80)])
        self.assertEqual(got[("tcp", EXT6, 80)], VIPS6[0])
        self.assertEqual(got[("udp", EXT6, 5060)], VIPS6[0])
        self.assertEqual(got[("icmp", EXT6, None)], VIPS6[0])
        self.assertEqual(got[("tcp", EXT4, 80)], node_svc4(2), "an IPv6-only egress leaves IPv4 alone")
        svc = self.c.kubectl_json("get", "service", "v6")
        self.assertEqual(svc["metadata"]["annotations"].get("kube-vip.io/active-endpoint-ipv6"), pod.ip6)

    def test_4_dual_stack_both_families(self):
        (pod,) = self.egress("dual", 3, [VIPS4[3], VIPS6[1]], annotations={"kube-vip.io/egress-ipv6": "true"})
        got = self.probe_sources(pod, [("tcp", EXT4, 80), ("udp", EXT4, 5060), ("icmp", EXT4, None),
                                       ("tcp", EXT6, 80), ("udp", EXT6, 5060), ("icmp", EXT6, None)])
        for (proto, dst, port), src in got.items():
            self.assertEqual(src, VIPS6[1] if ":" in dst else VIPS4[3], (proto, dst, port))
        self.assertEqual(sorted(self.c.node(3).vips()), sorted([VIPS4[3], VIPS6[1]]))
        ann = self.c.kubectl_json("get", "service", "dual")["metadata"]["annotations"]
        self.assertEqual(ann.get("kube-vip.io/active-endpoint"), pod.ip4)
        self.assertEqual(ann.get("kube-vip.io/active-endpoint-ipv6"), pod.ip6)

    def test_5_denied_networks(self):
        (pod,) = self.egress("deny", 1, [VIPS4[4], VIPS6[2]],
                             annotations={"kube-vip.io/egress-denied-networks": "198.51.100.0/24,2001:db8:100::/64"})
        got = self.probe_sources(pod, [("tcp", EXT4, 80), ("tcp", FAR4, 80), ("udp", FAR4, 5060),
                                       ("tcp", EXT6, 80), ("tcp", FAR6, 80)])
        self.assertEqual(got[("tcp", EXT4, 80)], VIPS4[4])
        self.assertEqual(got[("tcp", EXT6, 80)], VIPS6[2])
        self.assertEqual(got[("tcp", FAR4, 80)], node_svc4(1))
        self.assertEqual(got[("udp", FAR4, 5060)], node_svc4(1))
        self.assertEqual(got[("tcp", FAR6, 80)], node_svc6(1))

    def test_5_allowed_networks(self):
        (pod,) = self.egress("allow", 2, [VIPS4[5]], dual=False, wait=False,
                             annotations={"kube-vip.io/egress-allowed-networks": "198.51.100.0/24,192.168.0.251/32"})
        self.wait_source(pod, VIPS4[5], dst=FAR4)
        got = self.probe_sources(pod, [("tcp", FAR4, 80), ("icmp", FAR4, None), ("tcp", EXT4B, 80),
                                       ("tcp", EXT4, 80), ("udp", EXT4, 5060)])
        self.assertEqual(got[("tcp", FAR4, 80)], VIPS4[5])
        self.assertEqual(got[("icmp", FAR4, None)], VIPS4[5])
        self.assertEqual(got[("tcp", EXT4B, 80)], VIPS4[5], "each allowed network works")
        self.assertEqual(got[("tcp", EXT4, 80)], node_svc4(2))
        self.assertEqual(got[("udp", EXT4, 5060)], node_svc4(2))

    def test_5_pod_and_service_cidrs_are_excluded(self):
        (pod,) = self.egress("cidr", 1, [VIPS4[6], VIPS6[3]])
        local = self.c.add_pod("cidr-peer-local", 1, labels={"app": "peer"})
        remote = self.c.add_pod("cidr-peer-remote", 3, labels={"app": "peer"})
        self.addCleanup(self.c.delete_pod, "cidr-peer-local")
        self.addCleanup(self.c.delete_pod, "cidr-peer-remote")
        got = self.probe_sources(pod, [("tcp", remote.ip4, POD_PORT), ("udp", remote.ip4, POD_PORT),
                                       ("icmp", remote.ip4, None), ("tcp", remote.ip6, POD_PORT),
                                       ("tcp", local.ip4, POD_PORT), ("tcp", local.ip6, POD_PORT)])
        for (proto, dst, port), src in got.items():
            self.assertEqual(src, pod.ip6 if ":" in dst else pod.ip4, "pod-to-pod %s %s" % (proto, dst))
        # A ClusterIP that the node DNATs to the external host: excluded by its original destination, so the
        # CNI masquerades it (the node's address), it is not SNATed to the VIP.
        got = self.probe_sources(pod, [("tcp", CLUSTERIP4, 80), ("udp", CLUSTERIP4, 9000), ("tcp", CLUSTERIP6, 80)])
        self.assertEqual(got[("tcp", CLUSTERIP4, 80)], node_svc4(1))
        self.assertEqual(got[("udp", CLUSTERIP4, 9000)], node_svc4(1))
        self.assertEqual(got[("tcp", CLUSTERIP6, 80)], node_svc6(1))
        # And the egress itself still works.
        self.assertEqual(self.source(pod, "tcp", EXT4, 80), VIPS4[6])

    def test_8_status_and_events_as_kubectl_shows_them(self):
        (pod,) = self.egress("status", 2, [VIPS4[7], VIPS6[4]], annotations={"kube-vip.io/egress-ipv6": "true"})

        def status_ok():
            svc = self.c.kubectl_json("get", "service", "status")
            ann = svc["metadata"]["annotations"]
            ingress = sorted(i.get("ip") for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", []))
            return (ann.get("kube-vip.io/vipHost") == "node2" and ann.get("kube-vip.io/active-endpoint") == pod.ip4
                    and ann.get("kube-vip.io/active-endpoint-ipv6") == pod.ip6
                    and ingress == sorted([VIPS4[7], VIPS6[4]])) and svc

        try:
            svc = self.wait(status_ok, 10, "status annotations and ingress", 0.3)
        except TimeoutError:
            self.fail("status not as expected:\n%s" % self.c.kubectl("get", "service", "status", "-o", "yaml"))
        print("\n" + json.dumps({"annotations": svc["metadata"]["annotations"], "status": svc["status"]}, indent=1))
        desc = self.c.kubectl("describe", "service", "status")
        print(desc)
        self.assertIn("Events:", desc)
        events = self.c.kubectl_json("get", "events", "--field-selector",
                                     "involvedObject.kind=Service,involvedObject.name=status")["items"]
        reasons = [e.get("reason") for e in events]
        self.assertTrue(reasons, "no Events for the Service")
        self.assertTrue(all(e.get("type") == "Normal" for e in events), events)
        # The lease, as kube-vip names it, held by the node with the VIP.
        lease = self.c.kubectl_json("get", "lease", "kubevip-status")
        self.assertEqual(lease["spec"]["holderIdentity"], "node2")
        # An invalid Service (externalTrafficPolicy Cluster) gets a Warning Event and no VIP.
        self.c.add_pod("bad-0", 1, labels={"app": "bad"}, dual=False)
        self.addCleanup(self._drop, "bad")
        self.c.add_service("bad", [VIPS4[6]], etp="Cluster")

        def warned():
            ev = self.c.kubectl_json("get", "events", "--field-selector",
                                     "involvedObject.kind=Service,involvedObject.name=bad")["items"]
            return [e for e in ev if e.get("type") == "Warning"]

        ev = self.wait(warned, 10, "a Warning Event for externalTrafficPolicy: Cluster", 0.3)
        print("Warning: %s: %s" % (ev[0].get("reason"), ev[0].get("message")))
        self.assertEqual(self.c.vip_holders(VIPS4[6]), [])

    def test_9_annotation_removed_nothing_left(self):
        (pod,) = self.egress("gone1", 3, [VIPS4[0], VIPS6[5]])
        self.c.annotate("gone1", egress=None)
        self.wait(lambda: not self.c.vip_holders(VIPS4[0]) and not self.c.vip_holders(VIPS6[5]), 10, "VIPs gone")
        self.wait_source(pod, node_svc4(3))
        self.wait_source(pod, node_svc6(3), dst=EXT6)
        self.assert_nothing_left([VIPS4[0], VIPS6[5]], pod.ips)

    def test_9_service_deleted_nothing_left(self):
        (pod,) = self.egress("gone2", 1, [VIPS4[1], VIPS6[6]])
        self.c.delete_service("gone2")
        self.wait(lambda: not self.c.vip_holders(VIPS4[1]) and not self.c.vip_holders(VIPS6[6]), 10, "VIPs gone")
        self.wait_source(pod, node_svc4(1))
        self.wait_source(pod, node_svc4(1), proto="udp", port=5060)
        self.wait_source(pod, node_svc6(1), dst=EXT6)
        self.assert_nothing_left([VIPS4[1], VIPS6[6]], pod.ips)


if __name__ == "__main__":
    kvc_test.main()
