"""Write-path fidelity checks (spec section 8: 11, 12, 13, 14, 15) and create-time defaults."""
import json
import os
import unittest

from kvharness import FIXTURES, LEASES, SVCS, ServerTestCase, lease_body, svc_body


def fixture_body(name):
    with open(os.path.join(FIXTURES, "realistic", "http", name), "rb") as f:
        return f.read().split(b"\n\n", 1)[1]


def fixture_json(name):
    with open(os.path.join(FIXTURES, "realistic", name)) as f:
        return json.load(f)


class WriteTest(ServerTestCase):

    def lease(self, name):
        self.s.json("DELETE", LEASES + "/" + name)  # tests share one server: start from scratch
        st, d = self.s.json("POST", LEASES, lease_body(name))
        self.assertEqual(st, 201, d)
        return d

    # check 11
    def test_stale_rv_and_uid_conflicts(self):
        d = self.lease("kubevip-egress-demo")
        old = json.loads(json.dumps(d))
        d["spec"]["holderIdentity"] = "node-b"
        st, d2 = self.s.json("PUT", LEASES + "/kubevip-egress-demo", d)
        self.assertEqual(st, 200)
        old["spec"]["holderIdentity"] = "node-c"
        st, r, body = self.s.request("PUT", LEASES + "/kubevip-egress-demo", old)
        self.assertEqual(st, 409)
        self.assertEqual(body, fixture_body("409-conflict-lease.http"))
        # UID precondition
        d2["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
        st, e = self.s.json("PUT", LEASES + "/kubevip-egress-demo", d2)
        self.assertEqual(st, 409)
        self.assertEqual(e["reason"], "Conflict")
        self.assertIn("Precondition failed: UID in precondition: 00000000-0000-4000-8000-000000000000", e["message"])
        # service stale RV message
        st, svc = self.s.json("POST", SVCS, svc_body("egress-demo"))
        svc["metadata"]["resourceVersion"] = "1"
        st, r, body = self.s.request("PUT", SVCS + "/egress-demo", svc)
        self.assertEqual(body, fixture_body("409-conflict-service.http"))

    def test_put_without_rv(self):
        st, svc = self.s.json("POST", SVCS, svc_body("norv"))
        del svc["metadata"]["resourceVersion"]
        svc["metadata"]["annotations"] = {"a": "b"}
        st, d = self.s.json("PUT", SVCS + "/norv", svc)
        self.assertEqual(st, 200, d)
        l = self.lease("norv-lease")
        del l["metadata"]["resourceVersion"]
        st, e = self.s.json("PUT", LEASES + "/norv-lease", l)
        self.assertEqual(st, 422)
        self.assertEqual(e["message"], 'Lease.coordination.k8s.io "norv-lease" is invalid: metadata.resourceVersion: '
                                       'Invalid value: 0x0: must be specified for an update')
        # create-on-PUT is allowed for leases (no RV needed there)
        st, d = self.s.json("PUT", LEASES + "/created-by-put", lease_body("created-by-put"))
        self.assertEqual(st, 201, d)
        # but not for services
        st, d = self.s.json("PUT", SVCS + "/nonexistent", svc_body("nonexistent"))
        self.assertEqual(st, 404)

    def test_noop_put_keeps_rv(self):
        d = self.lease("noop")
        st, w = self.s.json("GET", LEASES + "?resourceVersion=%s&watch=false" % d["metadata"]["resourceVersion"])
        st, d2 = self.s.json("PUT", LEASES + "/noop", d)
        self.assertEqual(st, 200)
        self.assertEqual(d2["metadata"]["resourceVersion"], d["metadata"]["resourceVersion"])
        ws = self.s.raw(LEASES + "?watch=true&timeoutSeconds=1&resourceVersion=%s" % d["metadata"]["resourceVersion"])
        ws.read_headers()
        evs, _, clean = ws.events(timeout=5)
        self.assertEqual(evs, [])
        self.assertTrue(clean)

    # check 12
    def test_already_exists_and_name_mismatch(self):
        self.s.json("DELETE", LEASES + "/kubevip-egress-demo")
        st, r, body = self.s.request("POST", LEASES, fixture_json("lease-create-request.json"))
        self.assertEqual(st, 201)
        st, r, body = self.s.request("POST", LEASES, fixture_json("lease-create-request.json"))
        self.assertEqual(st, 409)
        self.assertEqual(body, fixture_body("409-alreadyexists-lease.http"))
        b = lease_body("a")
        st, e = self.s.json("PUT", LEASES + "/b", b)
        self.assertEqual(st, 400)
        self.assertEqual(e["message"], "the name of the object (a) does not match the name on the URL (b)")
        st, e = self.s.json("POST", "/api/v1/namespaces/missing-ns/configmaps", {"metadata": {"name": "x"}})
        self.assertEqual(st, 404)
        self.assertEqual(e["message"], 'namespaces "missing-ns" not found')

    # check 13
    def test_status_subresource_and_ipmode(self):
        st, svc = self.s.json("POST", SVCS, svc_body("lb", type="LoadBalancer", loadBalancerIP="192.168.10.220"))
        self.assertEqual(st, 201, svc)
        sp = svc["spec"]
        self.assertEqual(svc["status"], {"loadBalancer": {}})
        self.assertEqual(sp["sessionAffinity"], "None")
        self.assertEqual(sp["internalTrafficPolicy"], "Cluster")
        self.assertEqual(sp["externalTrafficPolicy"], "Cluster")
        self.assertIs(sp["allocateLoadBalancerNodePorts"], True)
        self.assertTrue(30000 <= sp["ports"][0]["nodePort"] <= 32767)
        self.assertEqual(sp["ipFamilies"], ["IPv4"])
        self.assertEqual(sp["ipFamilyPolicy"], "SingleStack")
        self.assertEqual(sp["clusterIPs"], [sp["clusterIP"]])
        self.assertTrue(sp["clusterIP"].startswith("10.9") or sp["clusterIP"].startswith("10.1"))
        self.assertEqual(sp["ports"][0]["protocol"], "TCP")
        # /status ignores spec changes, defaults ipMode
        svc["spec"]["type"] = "ClusterIP"
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.10.220", "ports": [{"port": 80,
                                                                                          "protocol": "TCP"}]}]}}
        st, d = self.s.json("PUT", SVCS + "/lb/status", svc)
        self.assertEqual(st, 200, d)
        self.assertEqual(d["spec"]["type"], "LoadBalancer")
        self.assertEqual(d["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP")
        # main endpoint ignores status
        d["status"] = {"loadBalancer": {}}
        d["metadata"]["annotations"] = {"kube-vip.io/vipHost": "worker-2"}
        st, d2 = self.s.json("PUT", SVCS + "/lb", d)
        self.assertEqual(st, 200, d2)
        self.assertEqual(d2["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.10.220")
        self.assertEqual(d2["metadata"]["annotations"]["kube-vip.io/vipHost"], "worker-2")
        # PUT omitting allocated values keeps them
        d2["spec"].pop("clusterIP")
        d2["spec"].pop("clusterIPs")
        d2["spec"]["ports"][0].pop("nodePort")
        st, d3 = self.s.json("PUT", SVCS + "/lb", d2)
        self.assertEqual(st, 200, d3)
        self.assertEqual(d3["spec"]["clusterIP"], sp["clusterIP"])
        self.assertEqual(d3["spec"]["ports"][0]["nodePort"], sp["ports"][0]["nodePort"])
        # status patch (merge) as kube-vip does it
        st, d4 = self.s.json("PATCH", SVCS + "/lb/status",
                             {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.221"}]}}},
                             ctype="application/merge-patch+json")
        self.assertEqual(st, 200, d4)
        self.assertEqual(d4["status"]["loadBalancer"]["ingress"], [{"ip": "192.168.10.221", "ipMode": "VIP"}])

    def test_service_dual_stack_and_local(self):
        st, svc = self.s.json("POST", SVCS, svc_body("ds", type="LoadBalancer", ipFamilyPolicy="PreferDualStack",
                                                     externalTrafficPolicy="Local"))
        self.assertEqual(st, 201, svc)
        self.assertEqual(svc["spec"]["ipFamilies"], ["IPv4", "IPv6"])
        self.assertEqual(len(svc["spec"]["clusterIPs"]), 2)
        self.assertTrue(svc["spec"]["clusterIPs"][1].startswith("fd00:10:96::"))
        self.assertIn("healthCheckNodePort", svc["spec"])
        st, e = self.s.json("POST", SVCS, svc_body("dup", clusterIP=svc["spec"]["clusterIP"]))
        self.assertEqual(st, 422)
        self.assertIn("provided IP is already allocated", e["message"])
        st, gen = self.s.json("POST", SVCS, {"metadata": {"generateName": "gen-"}, "spec": {"ports": [{"port": 1}]}})
        self.assertEqual(st, 201)
        self.assertRegex(gen["metadata"]["name"], r"^gen-[a-z0-9]{5}$")

    # check 14
    def test_microtime_and_duration_validation(self):
        for bad, tail in (("2025-05-12T08:14:05Z", 'cannot parse "Z" as ".000000"'),
                          ("2025-05-12T08:14:05.512Z", 'cannot parse ".512Z" as ".000000"')):
            b = lease_body("mt")
            b["spec"]["renewTime"] = bad
            st, e = self.s.json("POST", LEASES, b)
            self.assertEqual(st, 400)
            self.assertEqual(e["reason"], "BadRequest")
            self.assertEqual(e["message"], 'Lease in version "v1" cannot be handled as a Lease: parsing time "%s" as '
                                           '"2006-01-02T15:04:05.000000Z07:00": %s' % (bad, tail))
        d = self.lease("kubevip-egress-demo-2")
        d["metadata"]["name"] = "kubevip-egress-demo"
        b = lease_body("kubevip-egress-demo", dur=0)
        st, cur = self.s.json("GET", LEASES + "/kubevip-egress-demo")
        if st == 404:
            self.lease("kubevip-egress-demo")
            st, cur = self.s.json("GET", LEASES + "/kubevip-egress-demo")
        cur["spec"]["leaseDurationSeconds"] = 0
        st, r, body = self.s.request("PUT", LEASES + "/kubevip-egress-demo", cur)
        self.assertEqual(st, 422)
        self.assertEqual(body, fixture_body("422-invalid-lease.http"))

    # check 15
    def test_patch_types(self):
        st, svc = self.s.json("POST", SVCS, svc_body("patchme"))
        p = SVCS + "/patchme"
        st, r, body = self.s.request("PATCH", p, {"metadata": {}}, ctype="application/json")
        self.assertEqual(st, 415)
        self.assertEqual(body, fixture_body("415-unsupported-patch.http"))
        st, r, body = self.s.request("PATCH", p, "kind: Service\napiVersion: v1\n", ctype="application/apply-patch+yaml")
        self.assertEqual(st, 422)
        self.assertEqual(body, fixture_body("422-apply-without-fieldmanager.http"))
        st, d = self.s.json("PATCH", p, {"metadata": {"annotations": {"kube-vip.io/vipHost": "n1", "gone": "x"}}},
                            ctype="application/merge-patch+json")
        self.assertEqual(st, 200)
        st, d = self.s.json("PATCH", p, {"metadata": {"annotations": {"gone": None}}},
                            ctype="application/merge-patch+json; charset=utf-8")
        self.assertEqual(d["metadata"]["annotations"], {"kube-vip.io/vipHost": "n1"})
        st, d = self.s.json("PATCH", p, {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}},
                            ctype="application/merge-patch+json")
        self.assertEqual(st, 409)
        st, d = self.s.json("PATCH", p, [{"op": "add", "path": "/metadata/labels", "value": {}},
                                         {"op": "add", "path": "/metadata/labels/kube-vip.io~1x", "value": "v"}],
                            ctype="application/json-patch+json")
        self.assertEqual(st, 200, d)
        self.assertEqual(d["metadata"]["labels"], {"kube-vip.io/x": "v"})
        st, d = self.s.json("PATCH", p, [{"op": "test", "path": "/metadata/name", "value": "other"}],
                            ctype="application/json-patch+json")
        self.assertEqual(st, 422)
        st, d = self.s.json("PATCH", p, {"spec": {"ports": [{"port": 443, "name": "https"}]}},
                            ctype="application/strategic-merge-patch+json")
        self.assertEqual(st, 200, d)
        self.assertEqual(sorted(x["port"] for x in d["spec"]["ports"]), [80, 443])  # merged by port
        st, d = self.s.json("PATCH", p + "?fieldManager=kvtest",
                            "apiVersion: v1\nkind: Service\nmetadata:\n  name: patchme\n  labels:\n    applied: 'yes'\n",
                            ctype="application/apply-patch+yaml")
        self.assertEqual(st, 200, d)
        self.assertEqual(d["metadata"]["labels"]["applied"], "yes")
        st, d = self.s.json("PATCH", SVCS + "/applied-new?fieldManager=kvtest",
                            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "applied-new"},
                             "spec": {"ports": [{"port": 80}]}}, ctype="application/apply-patch+yaml")
        self.assertEqual(st, 201, d)
        st, d = self.s.json("PATCH", SVCS + "/missing", {"metadata": {}}, ctype="application/merge-patch+json")
        self.assertEqual(st, 404)

    def test_delete_shapes(self):
        self.lease("to-delete")
        st, d = self.s.json("DELETE", LEASES + "/to-delete")
        self.assertEqual(st, 200)
        self.assertEqual((d["kind"], d["status"], d["details"]["kind"], d["details"]["group"]),
                         ("Status", "Success", "leases", "coordination.k8s.io"))
        st, d = self.s.json("DELETE", LEASES + "/to-delete")
        self.assertEqual(st, 404)
        self.lease("pre")
        st, d = self.s.json("DELETE", LEASES + "/pre", {"preconditions": {"uid": "nope"}})
        self.assertEqual(st, 409)
        # deletecollection
        for i in range(3):
            self.s.json("POST", "/api/v1/namespaces/kube-public/configmaps",
                        {"metadata": {"name": "dc-%d" % i, "labels": {"dc": "y"}}})
        st, d = self.s.json("DELETE", "/api/v1/namespaces/kube-public/configmaps?labelSelector=dc%3Dy")
        self.assertEqual(st, 200)
        self.assertEqual(len(d["items"]), 3)

    def test_namespace_lifecycle_and_pod_graceful_delete(self):
        st, ns = self.s.json("POST", "/api/v1/namespaces", {"metadata": {"name": "life"}})
        self.assertEqual(ns["status"], {"phase": "Active"})
        self.assertEqual(ns["metadata"]["labels"], {"kubernetes.io/metadata.name": "life"})
        st, pod = self.s.json("POST", "/api/v1/namespaces/life/pods",
                              {"metadata": {"name": "p"}, "spec": {"nodeName": "n1",
                                                                    "containers": [{"name": "c", "image": "i"}]}})
        self.assertEqual(pod["status"]["phase"], "Pending")
        st, d = self.s.json("DELETE", "/api/v1/namespaces/life/pods/p")
        self.assertEqual(st, 200)
        self.assertIn("deletionTimestamp", d["metadata"])       # graceful: still there
        st, d = self.s.json("DELETE", "/api/v1/namespaces/life/pods/p?gracePeriodSeconds=0")
        st, d = self.s.json("DELETE", "/api/v1/namespaces/life")
        self.assertEqual(st, 200)
        st, d = self.s.json("GET", "/api/v1/namespaces/life")
        self.assertEqual(st, 404)

    def test_endpointslice_generation_and_nulls(self):
        eps = fixture_json("endpointslice-empty.json")
        for k in ("uid", "resourceVersion", "creationTimestamp", "generation", "ownerReferences"):
            eps["metadata"].pop(k, None)
        st, d = self.s.json("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", eps)
        self.assertEqual(st, 201, d)
        self.assertEqual(d["metadata"]["generation"], 1)
        self.assertIsNone(d["endpoints"])
        full = fixture_json("endpointslice-ipv4.json")
        d["endpoints"] = full["endpoints"]
        st, d2 = self.s.json("PUT", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/idle-svc-9dtcq", d)
        self.assertEqual(st, 200, d2)
        self.assertEqual(d2["metadata"]["generation"], 2)


if __name__ == "__main__":
    unittest.main()
