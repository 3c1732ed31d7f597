"""Common base for the cluster tests: argument handling (the daemons' binaries, passed by meson), one cluster
per test class, daemon logs printed when a test fails, measured times printed and kept for the report.

A test file ends with `kvc_test.main()`; run one alone with
  PYTHONPATH=tests/lib python3 tests/cluster/test_egress.py --build-dir build [-v] [TestClass.test_name]
"""
import json
import os
import sys
import time
import unittest

import cluster
import kvbuild
from cluster import Cluster  # noqa: F401

BINARIES = {}
TIMINGS_FILE = os.environ.get("KVC_TIMINGS", "")


def note_timing(name, seconds, **extra):
    """Prints a measured time (it lands in the meson test log) and appends it to $KVC_TIMINGS if set."""
    line = {"measure": name, "seconds": round(seconds, 3)}
    line.update(extra)
    print("\nTIMING %s = %.3f s %s" % (name, seconds, json.dumps(extra) if extra else ""), flush=True)
    if TIMINGS_FILE:
        with open(TIMINGS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")


class ClusterTestCase(unittest.TestCase):
    """setUpClass builds one cluster for the class (nodes, daemons); tests add their own pods and services
    and remove them again, so the order of tests does not matter."""

    NODES = 3
    DAEMONS = ("kvnetd", "kvelectd", "kvpd")
    LEASE = (3, 2, 0.5)
    ENDPOINTSLICE_CONTROLLER = False  # True: the API server's controller makes the slices from the Pods
    IPC_PREFLIGHT = False  # True: fail the class at once if kvnetd or kvelectd refuses the kvpd user
    CLUSTER_ARGS = {}  # more keyword arguments for Cluster (vip_ranges, daemon_args, kvpd_socket)
    c = None

    @classmethod
    def setUpClass(cls):
        cluster.install_signal_handlers()
        cls.c = Cluster(binaries=BINARIES, nodes=cls.NODES, daemons=cls.DAEMONS, lease=cls.LEASE,
                        log=lambda m: print("[cluster] " + m, flush=True),
                        endpointslice_controller=cls.ENDPOINTSLICE_CONTROLLER, **cls.CLUSTER_ARGS)
        cls.c.start()
        if cls.IPC_PREFLIGHT and cls.c.ipc_problem:
            problem = cls.c.ipc_problem
            logs = cls.c.logs(30)
            cls.c.close()
            raise RuntimeError("%s\n(kvnetd/bus.c: its methods need SD_BUS_VTABLE_UNPRIVILEGED, or the server "
                               "connection sd_bus_set_trusted(), after its own SO_PEERCRED check)\n%s" % (problem, logs))

    @classmethod
    def tearDownClass(cls):
        if cls.c:
            cls.c.close()
            left = [ns for ns in cluster.run(["ip", "netns", "list"]).stdout.split() if ns.startswith(cls.c.prefix)]
            if left:
                raise AssertionError("namespaces left behind: %s" % left)

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer")

    def setUp(self):
        self.expect_down = set()  # (node name, daemon) that a test stops on purpose
        self._log_offsets = {path: os.path.getsize(path) for path in self._daemon_logs()}

    def _daemon_logs(self):
        out = []
        for node in self.c.nodes:
            for which in ("kvnetd", "kvelectd", "kvpd"):
                path = os.path.join(node.dir, "%s.log" % which)
                if os.path.exists(path):
                    out.append(path)
        return out

    def _sanitizer_reports(self):
        found = []
        for path in self._daemon_logs():
            with open(path, "rb") as f:
                f.seek(self._log_offsets.get(path, 0))
                text = f.read().decode("utf-8", "replace")
            for mark in self.SANITIZER_MARKS:
                i = text.find(mark)
                if i >= 0:
                    found.append("%s: %s" % (path, text[max(0, i - 200):i + 1500]))
                    break
        return found

    def tearDown(self):
        """Every daemon the test did not stop on purpose must still run; a dead one is restarted (and its
        death fails the test) so the next test starts from a whole cluster."""
        dead = []
        for node in self.c.nodes:
            for which, p in sorted(node.procs.items()):
                if not p.alive() and (node.name, which) not in self.expect_down:
                    dead.append("%s/%s exited with %s" % (node.name, which, p.p.returncode))
                    node.start_daemon(which)
        reports = self._sanitizer_reports()
        if dead or reports:
            self.fail("; ".join(["daemons died during the test: " + "; ".join(dead)] if dead else []) +
                      ("\nsanitizer reports in daemon logs:\n" + "\n".join(reports) if reports else ""))

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before and self.c and not self.c.closed:
            sys.stderr.write("\n======== daemon logs for %s ========\n%s\n" % (self.id(), self.c.logs()))
            sys.stderr.write("======== external host saw (last 30) ========\n%s\n" %
                             "\n".join(json.dumps(r) for r in self.c.ext_records()[-30:]))
        return out

    # ------------------------------------------------------------------ helpers shared by the scenarios
    def wait(self, cond, timeout, what, interval=0.05):
        return self.c.wait(cond, timeout, what, interval)

    def probe_sources(self, pod, targets, timeout=2.0):
        """targets: list of (proto, dst, port). Returns {(proto, dst, port): source the external host recorded}
        (from the records, not from the answer, so ICMP is covered too)."""
        tag = "p%d-%s" % (int(time.time() * 1000) % 10**9, pod.name)
        probes = [{"proto": p, "dst": d, "port": port, "tag": "%s-%d" % (tag, i)}
                  for i, (p, d, port) in enumerate(targets)]
        res = pod.probe(probes, timeout=timeout)
        out = {}
        for i, (p, d, port) in enumerate(targets):
            want = "%s-%d" % (tag, i)
            recs = [r for r in self.c.ext_records(proto=p, tag=want)]
            if not recs and self._is_pod(d):
                recs = [r for r in self._pod_by_ip(d).records(proto=p, tag=want)]
            out[(p, d, port)] = recs[-1]["src"] if recs else ("no-answer: %s" % res[i].get("err"))
        return out

    def source(self, pod, proto, dst, port=None, timeout=2.0):
        return self.probe_sources(pod, [(proto, dst, port)], timeout)[(proto, dst, port)]

    def wait_source(self, pod, want, proto="tcp", dst=cluster.EXT4, port=80, timeout=20.0):
        """Probes until the external host records want as the source; returns the time it did."""
        last = []

        def ok():
            last[:] = [self.source(pod, proto, dst, port, timeout=1.0)]
            return last[0] == want

        try:
            self.wait(ok, timeout, "%s %s:%s from %s seen as %s" % (proto, dst, port, pod.name, want), 0.1)
        except TimeoutError as e:
            raise AssertionError("%s (last seen: %s)" % (e, last)) from None
        return time.time()

    def egress(self, name, node, vips, annotations=None, dual=True, pods=1, wait=True, k8s_ns="default"):
        """pods pods labelled app=name on node and an egress Service name with vips; waits until the external
        host sees the first VIP of each family as the source. Cleaned up after the test. Returns the pods."""
        made = []
        for i in range(pods):
            made.append(self.c.add_pod("%s-%d" % (name, i), node, labels={"app": name}, dual=dual, k8s_ns=k8s_ns))
        self.addCleanup(self._drop, name, k8s_ns, vips)
        self.c.add_service(name, vips, annotations=annotations, k8s_ns=k8s_ns)
        if wait:
            for fam_vips, dst in (([v for v in vips if ":" not in v], cluster.EXT4),
                                  ([v for v in vips if ":" in v], cluster.EXT6)):
                if fam_vips and (dst == cluster.EXT4 or dual):
                    self.wait_source(made[0], fam_vips[0], dst=dst)
        return made

    def _drop(self, name, k8s_ns="default", vips=None):
        """Deletes the Service name and its pods; waits until no node holds one of its VIPs."""
        svc = self.c.services.get((k8s_ns, name))
        if vips is None and svc:
            vips = svc["metadata"]["annotations"].get("kube-vip.io/loadbalancerIPs", "").split(",")
        if svc:
            self.c.delete_service(name, k8s_ns)
        for pname, pod in list(self.c.pods.items()):
            if pod.labels.get("app") == name:
                self.c.delete_pod(pname)
        vips = [v for v in (vips or []) if v]
        self.wait(lambda: not any(self.c.addr_watch.holders(v) for v in vips), 15,
                  "the VIPs of %s (%s) gone after removing it" % (name, ",".join(vips)))

    def assert_nothing_left(self, vips, pod_ips):
        """No node has a VIP bound or an nft rule or element naming a VIP or pod address."""
        for node in self.c.nodes:
            self.assertEqual([v for v in node.vips() if v in vips], [], "VIP left on %s" % node.name)
            rules = node.nft_ruleset()
            for a in list(vips) + list(pod_ips):
                self.assertNotIn(a, rules, "%s left in the ruleset of %s:\n%s" % (a, node.name, rules))

    def _is_pod(self, addr):
        return self._pod_by_ip(addr) is not None

    def _pod_by_ip(self, addr):
        for p in self.c.pods.values():
            if addr in p.ips:
                return p
        return None


def main():
    """Strips --build-dir DIR (the same as KVEGRESS_BUILD_DIR, which meson sets), then runs unittest. The
    daemons are the ones of that build (kvbuild.py); a missing one fails here, naming its path."""
    argv = [sys.argv[0]]
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--build-dir" and i + 1 < len(args):
            kvbuild.set_build_dir(args[i + 1])
            i += 2
            continue
        argv.append(a)
        i += 1
    for d in ("kvnetd", "kvelectd", "kvpd"):
        BINARIES[d] = kvbuild.binary("%s/%s" % (d, d))
    if os.geteuid() != 0:
        print("cluster tests need root (network namespaces)")
        sys.exit(77)
    unittest.main(argv=argv, verbosity=2)
