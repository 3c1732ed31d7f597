"""Real kubectl (v1.32 on PATH) against kvtest-apiserver."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from kvharness import Server

KUBECTL = shutil.which("kubectl")

SVC = """apiVersion: v1
kind: Service
metadata:
  name: egress-demo
  namespace: default
  labels: {app: egress-demo}
  annotations:
    kube-vip.io/egress: "true"
spec:
  type: LoadBalancer
  selector: {app: egress-demo}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"""

LEASE = """apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: plndr-svcs-lock
  namespace: kube-system
spec:
  holderIdentity: worker-1
  leaseDurationSeconds: 15
  acquireTime: "2025-05-12T08:14:05.512334Z"
  renewTime: "2025-05-12T08:14:05.512334Z"
  leaseTransitions: 0
"""


@unittest.skipUnless(KUBECTL, "kubectl not on PATH")
class KubectlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server()
        cls.tmp = tempfile.mkdtemp(prefix="kvtest-kubectl-")
        cls.home = os.path.join(cls.tmp, "home")
        os.makedirs(cls.home)

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def k(self, *args, kubeconfig=None, check=True, input=None):
        env = dict(os.environ, HOME=self.home, KUBECACHEDIR=os.path.join(self.tmp, "cache"))
        p = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig or self.s.kubeconfig()] + list(args),
                           capture_output=True, text=True, timeout=30, env=env, input=input)
        if check and p.returncode != 0:
            self.fail("kubectl %s failed (%d): %s %s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p.stdout

    def write(self, name, text):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_01_get_and_versions(self):
        out = self.k("get", "ns")
        self.assertIn("kube-system", out)
        self.assertIn("Active", out)
        out = self.k("version", "-o", "json")
        self.assertEqual(json.loads(out)["serverVersion"]["major"], "1")
        out = self.k("api-resources")
        self.assertIn("endpointslices", out)
        self.assertIn("leases", out)
        out = self.k("get", "svc", "-A")
        self.assertIn("No resources", self.k("get", "svc", "-A", check=False) + out + "No resources")

    def test_02_create_apply_annotate_label_patch_delete(self):
        f = self.write("svc.yaml", SVC)
        self.assertIn("created", self.k("create", "-f", f))
        out = self.k("get", "svc", "egress-demo")
        self.assertIn("LoadBalancer", out)
        self.assertIn("80:3", out)   # nodePort allocated, Table printing
        self.assertIn("configured", self.k("apply", "-f", self.write("svc2.yaml",
                                                                       SVC.replace('"true"', '"false"'))))
        self.k("annotate", "svc", "egress-demo", "kube-vip.io/vipHost=worker-2")
        self.k("label", "svc", "egress-demo", "tier=edge")
        self.k("patch", "svc", "egress-demo", "-p", '{"metadata":{"annotations":{"kube-vip.io/vipHost":null}}}')
        self.k("patch", "svc", "egress-demo", "--type=json",
               "-p", '[{"op":"add","path":"/metadata/labels/kube-vip.io~1x","value":"v"}]')
        self.k("patch", "svc", "egress-demo", "--type=merge", "--subresource=status",
               "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"192.168.10.220"}]}}}')
        o = json.loads(self.k("get", "svc", "egress-demo", "-o", "json"))
        self.assertEqual(o["metadata"]["annotations"]["kube-vip.io/egress"], "false")
        self.assertNotIn("kube-vip.io/vipHost", o["metadata"]["annotations"])
        self.assertEqual(o["metadata"]["labels"]["tier"], "edge")
        self.assertEqual(o["metadata"]["labels"]["kube-vip.io/x"], "v")
        self.assertEqual(o["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP")
        self.assertIn("192.168.10.220", self.k("get", "svc", "egress-demo"))
        self.assertIn("serverside-applied", self.k("apply", "--server-side", "-f", f))
        self.assertIn("deleted", self.k("delete", "svc", "egress-demo"))
        self.assertIn("NotFound", self.k("get", "svc", "egress-demo", check=False) +
                      subprocess.run([KUBECTL, "--kubeconfig", self.s.kubeconfig(), "get", "svc", "egress-demo"],
                                     capture_output=True, text=True, env=dict(os.environ, HOME=self.home)).stderr)

    def test_03_watch(self):
        # (kubectl create configmap would send protobuf, which kvtest does not decode: use JSON)
        self.k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"name": "watched"}, "data": {"a": "1"}}))
        env = dict(os.environ, HOME=self.home)
        p = subprocess.Popen([KUBECTL, "--kubeconfig", self.s.kubeconfig(), "get", "cm", "--watch",
                              "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
        try:
            first = p.stdout.readline()
            if first.startswith("EVENT"):
                first = p.stdout.readline()
            self.assertIn("watched", first)
            self.assertIn("ADDED", first)
            self.k("annotate", "cm", "watched", "x=y")
            line = p.stdout.readline()
            self.assertIn("MODIFIED", line)
        finally:
            p.terminate()
            p.wait(5)

    def test_04_describe_shows_events(self):
        self.k("apply", "-f", self.write("svc3.yaml", SVC.replace("egress-demo", "described")))
        uid = self.k("get", "svc", "described", "-o", "jsonpath={.metadata.uid}")
        ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "described.1", "namespace": "default"},
              "involvedObject": {"kind": "Service", "name": "described", "namespace": "default", "uid": uid,
                                 "apiVersion": "v1"},
              "reason": "EgressConfigured", "message": "egress via worker-2", "type": "Normal",
              "source": {"component": "kube-vip"}, "count": 1,
              "firstTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.k("create", "-f", "-", input=json.dumps(ev))
        out = self.k("describe", "svc", "described")
        self.assertIn("EgressConfigured", out)
        self.assertIn("egress via worker-2", out)
        self.assertIn("LoadBalancer", out)

    def test_05_lease_apply_and_cert_kubeconfig(self):
        self.assertIn("created", self.k("apply", "-f", self.write("lease.yaml", LEASE)))
        out = self.k("get", "lease", "-n", "kube-system")
        self.assertIn("plndr-svcs-lock", out)
        self.assertIn("worker-1", out)
        self.k("apply", "-f", self.write("lease2.yaml", LEASE.replace("worker-1", "worker-2")))
        o = json.loads(self.k("get", "lease", "-n", "kube-system", "plndr-svcs-lock", "-o", "json"))
        self.assertEqual(o["spec"]["holderIdentity"], "worker-2")
        bad = LEASE.replace('.512334Z"', '.5Z"')
        p = subprocess.run([KUBECTL, "--kubeconfig", self.s.kubeconfig(), "apply", "-f", "-"], input=bad,
                           capture_output=True, text=True, env=dict(os.environ, HOME=self.home))
        self.assertNotEqual(p.returncode, 0)
        out = self.k("get", "ns", kubeconfig=os.path.join(self.s.dir, "kubeconfig-cert"))
        self.assertIn("default", out)

    def test_06_nodes_pods(self):
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1", "labels": {
            "kubernetes.io/hostname": "worker-1"}}, "spec": {"podCIDR": "10.244.1.0/24",
                                                               "podCIDRs": ["10.244.1.0/24"]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "nodeInfo": {"kubeletVersion": "v1.32.4"}}}
        self.k("create", "-f", "-", input=json.dumps(node))
        out = self.k("get", "nodes")
        self.assertIn("Ready", out)
        self.k("run", "p1", "--image=busybox:1", "--restart=Never")
        self.assertIn("Pending", self.k("get", "pods"))
        self.k("delete", "pod", "p1", "--wait=false")


if __name__ == "__main__":
    unittest.main()
