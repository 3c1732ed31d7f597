"""Common base for the cluster tests: argument handling (the daemons' binaries, passed by meson), one cluster
per test class, daemon logs printed when a test fails, measured times printed and kept for the report.

A test file ends with `kvc_test.main()`; run one alone with
  python3 tests/cluster/test_egress.py --build-dir build [-v] [TestClass.test_name]
"""
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster  # noqa: E402
from cluster import Cluster  # noqa: E402,F401

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
    c = None

    @classmethod
    def setUpClass(cls):
        cluster.install_signal_handlers()
        cls.c = Cluster(binaries=BINARIES, nodes=cls.NODES, daemons=cls.DAEMONS, lease=cls.LEASE,
                        log=lambda m: print("[cluster] " + m, flush=True))
        cls.c.start()

    @classmethod
    def tearDownClass(cls):
        if cls.c:
            cls.c.close()
            left = [ns for ns in cluster.run(["ip", "netns", "list"]).stdout.split() if ns.startswith(cls.c.prefix)]
            if left:
                raise AssertionError("namespaces left behind: %s" % left)

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

    def _is_pod(self, addr):
        return self._pod_by_ip(addr) is not None

    def _pod_by_ip(self, addr):
        for p in self.c.pods.values():
            if addr in p.ips:
                return p
        return None


def main():
    """Strips --build-dir DIR / --kvnetd PATH / --kvelectd PATH / --kvpd PATH, then runs unittest."""
    argv = [sys.argv[0]]
    args = sys.argv[1:]
    i = 0
    build = None
    while i < len(args):
        a = args[i]
        if a in ("--build-dir", "--kvnetd", "--kvelectd", "--kvpd") and i + 1 < len(args):
            if a == "--build-dir":
                build = args[i + 1]
            else:
                BINARIES[a[2:]] = os.path.abspath(args[i + 1])
            i += 2
            continue
        argv.append(a)
        i += 1
    build = build or os.environ.get("KVC_BUILD_DIR") or os.path.join(cluster.ROOT, "build")
    for d in ("kvnetd", "kvelectd", "kvpd"):
        BINARIES.setdefault(d, os.path.abspath(os.path.join(build, d, d)))
    if os.geteuid() != 0:
        print("cluster tests need root (network namespaces)")
        sys.exit(77)
    unittest.main(argv=argv, verbosity=2)
