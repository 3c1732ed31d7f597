#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kvpd against the test API server, with the real kvelectd and kvnetd in node network namespaces
(tests/cluster's harness). What kvpd decides is read back from kvnetd (ListVips / ListEgress over its bus),
from the kernel (nft, ip addr) and from the Service (annotations, status, Events):

- the egress annotation gets the VIP bound and SNAT programmed for the local ready pods on the lease holder
  only, with vipHost / active-endpoint / status.loadBalancer.ingress written back;
- a malformed annotation gives an EgressInvalid Event naming the annotation and the entry, nothing is
  programmed, and another Service is not affected;
- a live edit of egress-destination-ports takes effect without a pod move;
- externalTrafficPolicy Cluster gives an Event and no egress;
- removal paths: annotation removed, type changed, endpoints gone, Service deleted, kvpd stopping: no rule, no
  VIP, no stale annotation;
- the time from an EndpointSlice change at the API to the SNAT change in the kernel is measured.

  PYTHONPATH=tests/lib python3 tests/kvpd/test_kvpd.py --build-dir build-kvpd [-v] [KvpdTest.test_name]
Standard library only.
"""
import statistics
import sys
import time

import kvc_test
from cluster import EXT4, VIPS4, VIPS6
from asuser import call_as
from dbus_p2p import Connection

NET_PATH, NET_IF = "/io/kvegress/Net1", "io.kvegress.Net1"
ANN = "kube-vip.io/"


def kvnetd_admits_kvpd(sock):
    """kvnetd must serve kvpd's uid (it checks peers itself); an sd-bus vtable without
    SD_BUS_VTABLE_UNPRIVILEGED answers AccessDenied to every non-root caller instead."""
    def list_vips():
        with Connection(sock, timeout=5) as c:
            return c.call(NET_PATH, NET_IF, "ListVips")
    ok, answer = call_as("kvpd", list_vips)
    return ok, "" if ok else answer


class KvpdTest(kvc_test.ClusterTestCase):
    NODES = 2

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ok, why = kvnetd_admits_kvpd(cls.c.node(1)._paths()["kvnetd_sock"])
        if not ok:
            cls.c.close()
            # 77: meson's "skipped", so the reason shows instead of a silent pass.
            print("SKIP: kvnetd refuses the kvpd user (%s): its bus methods lack SD_BUS_VTABLE_UNPRIVILEGED"
                  % why, flush=True)
            sys.exit(77)

    # ------------------------------------------------------------------ views
    def kvnetd(self, node, method):
        with Connection(node._paths()["kvnetd_sock"], timeout=5) as c:
            return c.call(NET_PATH, NET_IF, method)[0]

    def egress(self, node, key):
        """kvnetd's SetEgress tuple for key on node, or None."""
        for e in self.kvnetd(node, "ListEgress"):
            if e[0] == key:
                return e
        return None

    def vips_of(self, node, key):
        return sorted(v[1] for v in self.kvnetd(node, "ListVips") if v[0] == key)

    def annotations(self, name):
        svc = self.c.service(name) or {}
        return svc.get("metadata", {}).get("annotations", {})

    def ingress(self, name):
        svc = self.c.service(name) or {}
        return [i.get("ip") for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", []) or []]

    def events(self, name, reason):
        status, lst = self.c.api("GET", "/api/v1/namespaces/default/events")
        if status != 200:
            return []
        return [e for e in lst.get("items", [])
                if e.get("involvedObject", {}).get("name") == name and e.get("reason") == reason]

    def nowhere(self, key, vip):
        """No node has anything of key: no kvnetd state, no VIP on a link."""
        for n in self.c.nodes:
            if self.egress(n, key) or self.vips_of(n, key) or vip in n.vips():
                return False
        return True

    def no_status(self, name):
        a = self.annotations(name)
        return not any(k in a for k in (ANN + "vipHost", ANN + "active-endpoint", ANN + "active-endpoint-ipv6")) \
            and not self.ingress(name)

    def holder_of(self, key):
        for n in self.c.nodes:
            e = self.egress(n, key)
            if e:
                return n, e
        return None

    # ------------------------------------------------------------------ scenarios
    def test_egress_programmed_on_holder_only(self):
        c = self.c
        vip = VIPS4[0]
        pa = c.add_pod("web-a", 1, labels={"app": "web"}, dual=False)
        pb = c.add_pod("web-b", 1, labels={"app": "web"}, dual=False)
        c.add_service("web", [vip], annotations={ANN + "egress-destination-ports": "tcp:80,udp:5060"})
        try:
            n1, n2 = c.node(1), c.node(2)
            e = self.wait(lambda: self.egress(n1, "default/web"), 20, "SNAT programmed on node1")
            # (service, vip4, vip6, pods, ports, allowed, denied, excluded): ALL local ready pods.
            self.assertEqual(e[1], vip)
            self.assertEqual(sorted(e[3]), sorted([pa.ip4, pb.ip4]))
            self.assertEqual(sorted(tuple(p) for p in e[4]), [("tcp", 80), ("udp", 5060)])
            self.assertIn("10.244.0.0/16", e[7])
            self.assertIn("10.96.0.0/12", e[7])
            self.assertEqual(self.vips_of(n1, "default/web"), [vip])
            self.wait(lambda: vip in n1.vips(), 5, "VIP on node1's eth1")
            # Node 2 has no local pod: it does not even campaign, and programs nothing.
            self.assertIsNone(self.egress(n2, "default/web"))
            self.assertEqual(n2.vips(), [])
            a = self.wait(lambda: self.annotations("web").get(ANN + "vipHost") == "node1" and self.annotations("web"),
                          10, "vipHost written")
            self.assertIn(a.get(ANN + "active-endpoint"), (pa.ip4, pb.ip4))
            self.wait(lambda: self.ingress("web") == [vip], 10, "status.loadBalancer.ingress")
            self.wait(lambda: self.events("web", "EgressActive"), 10, "EgressActive Event")
            # What the external host sees: the VIP, for both pods, on a listed port; the node's address on
            # another port.
            for pod in (pa, pb):
                got = self.probe_sources(pod, [("tcp", EXT4, 80), ("tcp", EXT4, 8080)])
                self.assertEqual(got[("tcp", EXT4, 80)], vip, pod.name)
                self.assertNotEqual(got[("tcp", EXT4, 8080)], vip, pod.name)
        finally:
            c.delete_service("web")
            c.delete_pod("web-a")
            c.delete_pod("web-b")
        self.wait(lambda: self.nowhere("default/web", vip), 20, "service deleted: nothing left")

    def test_malformed_annotation_refused_others_unaffected(self):
        c = self.c
        c.add_pod("good-a", 1, labels={"app": "good"}, dual=False)
        c.add_pod("bad-a", 1, labels={"app": "bad"}, dual=False)
        c.add_service("good", [VIPS4[1]])
        c.add_service("bad", [VIPS4[2]], annotations={ANN + "egress-destination-ports": "tcp:80,udp:99999"})
        try:
            self.wait(lambda: self.egress(c.node(1), "default/good"), 20, "good programmed")
            ev = self.wait(lambda: self.events("bad", "EgressInvalid"), 20, "EgressInvalid Event")
            msg = ev[0]["message"]
            self.assertIn("default/bad", msg)
            self.assertIn(ANN + "egress-destination-ports", msg)
            self.assertIn("99999", msg)
            self.assertEqual(ev[0]["type"], "Warning")
            time.sleep(1)
            self.assertTrue(self.nowhere("default/bad", VIPS4[2]))
            self.assertTrue(self.no_status("bad"))
            # Fixing it takes effect at once.
            c.annotate("bad", egress_destination_ports="tcp:80")
            e = self.wait(lambda: self.egress(c.node(1), "default/bad"), 20, "bad programmed once fixed")
            self.assertEqual([tuple(p) for p in e[4]], [("tcp", 80)])
        finally:
            for s in ("good", "bad"):
                c.delete_service(s)
            for p in ("good-a", "bad-a"):
                c.delete_pod(p)
        self.wait(lambda: self.nowhere("default/good", VIPS4[1]) and self.nowhere("default/bad", VIPS4[2]), 20,
                  "clean")

    def test_live_edits_and_removal_paths(self):
        c = self.c
        vip = VIPS4[3]
        c.add_pod("edit-a", 2, labels={"app": "edit"}, dual=False)
        c.add_service("edit", [vip])
        n2 = c.node(2)
        try:
            e = self.wait(lambda: self.egress(n2, "default/edit"), 20, "programmed on node2")
            self.assertEqual(e[4], [])  # every port
            # Live edit of the ports: no pod move needed (kube-vip waited for one).
            c.annotate("edit", egress_destination_ports="udp:5060")
            self.wait(lambda: (self.egress(n2, "default/edit") or [None] * 5)[4] == [("udp", 5060)], 10,
                      "ports edit applied")
            c.annotate("edit", egress_denied_networks="198.51.100.0/24")
            self.wait(lambda: "198.51.100.0/24" in (self.egress(n2, "default/edit") or [None] * 7)[6], 10,
                      "denied edit applied")
            self.wait(lambda: self.annotations("edit").get(ANN + "vipHost") == "node2", 10, "vipHost")

            # Annotation removed: everything goes, status cleared.
            c.annotate("edit", egress=None)
            self.wait(lambda: self.nowhere("default/edit", vip), 10, "egress annotation removed")
            self.wait(lambda: self.no_status("edit"), 10, "status cleared after annotation removal")
            c.annotate("edit", egress="true")
            self.wait(lambda: self.egress(n2, "default/edit"), 20, "programmed again")

            # Type changed away from LoadBalancer.
            c.kubectl("patch", "service", "edit", "--type=merge", "-p",
                      '{"spec":{"type":"ClusterIP","externalTrafficPolicy":null,"allocateLoadBalancerNodePorts":null}}')
            self.wait(lambda: self.nowhere("default/edit", vip), 10, "type changed")
            self.wait(lambda: self.no_status("edit"), 10, "status cleared after type change")
            c.kubectl("patch", "service", "edit", "--type=merge", "-p",
                      '{"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local"}}')
            self.wait(lambda: self.egress(n2, "default/edit"), 20, "programmed again after type change")

            # Endpoints gone.
            c.delete_pod("edit-a")
            self.wait(lambda: self.nowhere("default/edit", vip), 10, "endpoints gone")
            self.wait(lambda: self.no_status("edit"), 10, "status cleared after endpoints went")
        finally:
            c.delete_service("edit")
            if "edit-a" in c.pods:
                c.delete_pod("edit-a")
        self.wait(lambda: self.nowhere("default/edit", vip), 10, "clean")

    def test_cluster_policy_refused(self):
        c = self.c
        c.add_pod("clu-a", 1, labels={"app": "clu"}, dual=False)
        c.add_service("clu", [VIPS4[4]], etp="Cluster")
        try:
            ev = self.wait(lambda: self.events("clu", "EgressInvalid"), 20, "EgressInvalid for Cluster policy")
            self.assertIn("externalTrafficPolicy", ev[0]["message"])
            time.sleep(1)
            self.assertTrue(self.nowhere("default/clu", VIPS4[4]))
        finally:
            c.delete_service("clu")
            c.delete_pod("clu-a")

    def test_dual_stack(self):
        c = self.c
        v4, v6 = VIPS4[5], VIPS6[5]
        p = c.add_pod("ds-a", 1, labels={"app": "ds"}, dual=True)
        c.add_service("ds", [v4, v6])
        try:
            e = self.wait(lambda: self.egress(c.node(1), "default/ds"), 20, "dual-stack programmed")
            self.assertEqual((e[1], e[2]), (v4, v6))
            self.assertEqual(sorted(e[3]), sorted([p.ip4, p.ip6]))
            a = self.wait(lambda: self.annotations("ds").get(ANN + "active-endpoint-ipv6") and self.annotations("ds"),
                          10, "active-endpoint-ipv6")
            self.assertEqual(a[ANN + "active-endpoint"], p.ip4)
            self.assertEqual(a[ANN + "active-endpoint-ipv6"], p.ip6)
        finally:
            c.delete_service("ds")
            c.delete_pod("ds-a")
        self.wait(lambda: self.nowhere("default/ds", v4), 20, "clean")

    def test_endpointslice_to_kernel_latency(self):
        """An endpoint added to the slice at the API -> its address in the node's nft ruleset."""
        c = self.c
        vip = VIPS4[6]
        c.add_pod("lat-a", 1, labels={"app": "lat"}, dual=False)
        c.add_service("lat", [vip])
        n1 = c.node(1)
        path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/lat-v4"
        samples = []
        try:
            self.wait(lambda: self.egress(n1, "default/lat"), 20, "programmed")
            self.wait(lambda: "10.244.1." in n1.nft_ruleset(), 10, "rules in the kernel")
            for i in range(20):
                addr = "10.244.1.%d" % (200 + i)
                status, sl = c.api("GET", path)
                self.assertEqual(status, 200)
                sl["endpoints"].append({"addresses": [addr], "nodeName": "node1",
                                        "conditions": {"ready": True, "serving": True, "terminating": False}})
                t0 = time.monotonic()
                status, _ = c.api("PUT", path, sl)
                self.assertEqual(status, 200)
                self.wait(lambda: addr in n1.nft_ruleset(), 10, "%s in nft" % addr, interval=0.002)
                samples.append(time.monotonic() - t0)
        finally:
            c.delete_service("lat")
            c.delete_pod("lat-a")
        samples.sort()
        kvc_test.note_timing("endpointslice_to_nft_median", statistics.median(samples),
                             min=round(samples[0], 4), max=round(samples[-1], 4), n=len(samples))
        self.assertLess(statistics.median(samples), 2.0)

    def test_leadership_moves_with_the_pods(self):
        """The holder's last pod goes: it withdraws, the other node (which has a pod) takes the lease, and the
        old holder's clean-up never erases the new holder's status."""
        c = self.c
        vip = VIPS4[0]
        c.add_pod("mv-1", 1, labels={"app": "mv"}, dual=False)
        c.add_pod("mv-2", 2, labels={"app": "mv"}, dual=False)
        c.add_service("mv", [vip])
        try:
            old, _ = self.wait(lambda: self.holder_of("default/mv"), 20, "a holder")
            self.wait(lambda: self.annotations("mv").get(ANN + "vipHost") == old.name, 10, "vipHost = holder")
            new = c.node(2 if old.n == 1 else 1)
            self.assertIsNone(self.egress(new, "default/mv"))  # candidates do not program (kube-vip did)
            t0 = time.monotonic()
            c.delete_pod("mv-%d" % old.n)
            e = self.wait(lambda: self.egress(new, "default/mv"), 15, "the other node takes over")
            kvc_test.note_timing("kvpd_handover_after_last_pod", time.monotonic() - t0)
            self.assertEqual(e[3], [c.pods["mv-%d" % new.n].ip4])
            self.wait(lambda: self.annotations("mv").get(ANN + "vipHost") == new.name, 10, "vipHost = new holder")
            self.assertIsNone(self.egress(old, "default/mv"))
            self.assertNotIn(vip, old.vips())
            time.sleep(1)  # a late clear from the old holder would show here
            a = self.annotations("mv")
            self.assertEqual(a.get(ANN + "vipHost"), new.name)
            self.assertEqual(a.get(ANN + "active-endpoint"), c.pods["mv-%d" % new.n].ip4)
            self.assertEqual(self.ingress("mv"), [vip])
            self.assertLessEqual(c.addr_watch.max_concurrent(vip)[0], 1)
        finally:
            c.delete_service("mv")
            for p in ("mv-1", "mv-2"):
                if p in c.pods:
                    c.delete_pod(p)
        self.wait(lambda: self.nowhere("default/mv", vip), 20, "clean")

    def test_sigterm_leaves_nothing(self):
        c = self.c
        vip = VIPS4[7]
        c.add_pod("stop-a", 2, labels={"app": "stop"}, dual=False)
        c.add_service("stop", [vip])
        n2 = c.node(2)
        try:
            self.wait(lambda: self.egress(n2, "default/stop"), 20, "programmed")
            self.wait(lambda: self.annotations("stop").get(ANN + "vipHost") == "node2", 10, "vipHost")
            p = n2.procs["kvpd"]
            t0 = time.monotonic()
            code = p.stop()
            took = time.monotonic() - t0
            self.assertEqual(code, 0)
            kvc_test.note_timing("kvpd_sigterm_cleanup", took)
            self.assertLess(took, 6)
            self.assertIsNone(self.egress(n2, "default/stop"))
            self.assertNotIn(vip, n2.vips())
            self.assertTrue(self.no_status("stop"), self.annotations("stop"))
            # Back up: the state is rebuilt from the API.
            n2.start_daemon("kvpd")
            self.wait(lambda: self.egress(n2, "default/stop"), 20, "programmed after restart")
        finally:
            c.delete_service("stop")
            c.delete_pod("stop-a")
        self.wait(lambda: self.nowhere("default/stop", vip), 20, "clean")


if __name__ == "__main__":
    kvc_test.main()
