"""--endpointslice-controller: slices follow Services and Pods."""
import time
import unittest

from kvharness import SVCS, ServerTestCase, svc_body

EPS = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
PODS = "/api/v1/namespaces/default/pods"


class ControllerTest(ServerTestCase):
    server_args = ("--endpointslice-controller", "--pod-kill-seconds", "1")

    def slices(self, svc):
        st, d = self.s.json("GET", EPS + "?labelSelector=kubernetes.io%%2Fservice-name%%3D%s" % svc)
        return d["items"]

    def wait_for(self, fn, timeout=5):
        end = time.time() + timeout
        while time.time() < end:
            v = fn()
            if v:
                return v
            time.sleep(0.05)
        self.fail("condition not reached")

    def pod(self, name, node, ip, ready=True):
        st, p = self.s.json("POST", PODS, {"metadata": {"name": name, "labels": {"app": "egress-demo"}},
                                           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i:1"}]}})
        self.assertEqual(st, 201, p)
        p["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        st, p = self.s.json("PUT", PODS + "/%s/status" % name, p)
        self.assertEqual(st, 200, p)
        return p

    def test_slices_follow_pods(self):
        st, svc = self.s.json("POST", SVCS, svc_body("egress-demo", type="LoadBalancer",
                                                     selector={"app": "egress-demo"}))
        sl = self.wait_for(lambda: self.slices("egress-demo"))
        self.assertEqual(len(sl), 1)
        self.assertIsNone(sl[0]["endpoints"])
        self.assertEqual(sl[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
                         "endpointslice-controller.k8s.io")
        self.assertEqual(sl[0]["metadata"]["ownerReferences"][0]["uid"], svc["metadata"]["uid"])
        self.assertTrue(sl[0]["metadata"]["name"].startswith("egress-demo-"))
        self.pod("p1", "worker-1", "10.244.1.9")
        self.pod("p2", "worker-2", "10.244.2.17", ready=False)

        def two():
            s = self.slices("egress-demo")
            return s if s and s[0]["endpoints"] and len(s[0]["endpoints"]) == 2 else None
        sl = self.wait_for(two)
        eps = {e["targetRef"]["name"]: e for e in sl[0]["endpoints"]}
        self.assertEqual(eps["p1"]["conditions"], {"ready": True, "serving": True, "terminating": False})
        self.assertEqual(eps["p1"]["nodeName"], "worker-1")
        self.assertEqual(eps["p2"]["conditions"]["ready"], False)
        self.assertEqual(sl[0]["ports"], [{"name": "http", "protocol": "TCP", "port": 8080}])
        # graceful delete -> terminating, then gone
        self.s.json("DELETE", PODS + "/p1")

        def terminating():
            s = self.slices("egress-demo")
            e = [x for x in s[0]["endpoints"] or [] if x["targetRef"]["name"] == "p1"]
            return e and e[0]["conditions"]["terminating"]
        self.wait_for(terminating)
        self.wait_for(lambda: len(self.slices("egress-demo")[0]["endpoints"] or []) == 1)
        # service deletion garbage-collects its slices
        self.s.json("DELETE", SVCS + "/egress-demo")
        self.wait_for(lambda: self.slices("egress-demo") == [])


if __name__ == "__main__":
    unittest.main()
