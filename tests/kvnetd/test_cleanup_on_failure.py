#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A test that fails leaves nothing behind.

Each case runs, in a child process, a test that builds the kvnetd topology
(pod, node, service network, external host, peer; kvnetd running as user
kvnetd inside the node) and programs a VIP with egress, and then fails: by
an assertion, by an uncaught exception in setUp, or by being killed with
SIGTERM or SIGINT halfway (what meson does on a timeout, and a user's
Ctrl-C). Afterwards the parent checks that none of the child's namespaces,
processes or temporary directories remain, and that the host's own nftables
ruleset holds nothing of ours. Needs root."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest


CHILD = textwrap.dedent(r"""
    import os, sys, time, unittest
    import netns
    from kvnet import EgressTopology, KvnetClient, Kvnetd, VIP4, POD4

    MODE = {mode!r}

    class Failing(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.topo = netns.Topology("kvf")
            cls.net = EgressTopology(cls.topo)
            cls.kvnetd = Kvnetd(cls.net.node).start()
            print("BUILT", " ".join(n.name for n in cls.topo.namespaces), flush=True)
            if MODE == "setup":
                raise RuntimeError("setUpClass fails after the topology is up")

        @classmethod
        def tearDownClass(cls):
            cls.topo.cleanup()

        def test_fails(self):
            c = KvnetClient(self.kvnetd.socket)
            c.grant_vip("default/web", VIP4, "eth1", 30)
            c.set_egress("default/web", VIP4, "", [POD4])
            print("READY", flush=True)
            if MODE == "assert":
                self.assertEqual(1, 2, "a test that fails")
            time.sleep(60)  # killed here

    unittest.main(argv=[sys.argv[0]])
""")


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def ours(prefix):
    names = [l.split()[0] for l in run(["ip", "netns", "list"]).stdout.splitlines() if l.strip()]
    return [n for n in names if n.startswith(prefix)]


class CleanupOnFailure(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (network namespaces)")

    def _run_child(self, mode, kill=None):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(CHILD.format(mode=mode))
            script = f.name
        self.addCleanup(os.unlink, script)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        p = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
        prefix = "kvf%d-" % p.pid
        out = []
        try:
            if kill:
                deadline = time.monotonic() + 60
                for line in p.stdout:
                    out.append(line)
                    if "READY" in line:
                        break
                    if time.monotonic() > deadline:
                        break
                self.assertTrue(any("READY" in l for l in out), "".join(out))
                # The topology and kvnetd are up, with a VIP and rules.
                self.assertTrue(ours(prefix), "the child built no namespaces")
                p.send_signal(kill)
            rest, _ = p.communicate(timeout=60)
            out.append(rest or "")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        text = "".join(out)
        self.assertNotEqual(p.returncode, 0, "the child test was meant to fail:\n" + text)
        # Not vacuous: the child had built its namespaces (and started kvnetd)
        # before it failed.
        built = [l.split()[1:] for l in text.splitlines() if l.startswith("BUILT")]
        self.assertTrue(built and len(built[0]) >= 5 and all(n.startswith(prefix) for n in built[0]), text)
        return prefix, text

    def _assert_nothing_left(self, prefix, out):
        self.assertEqual(ours(prefix), [], "namespaces left behind:\n" + out)
        procs = run(["pgrep", "-u", "kvnetd", "-f", prefix]).stdout.split()
        self.assertEqual(procs, [], "kvnetd processes left behind")
        tmp = [d for d in os.listdir(tempfile.gettempdir()) if d.startswith(prefix)]
        self.assertEqual(tmp, [], "temporary directories left behind")
        host = run(["nft", "list", "tables"]).stdout
        self.assertNotIn("kvegress", host, "our table is in the host's ruleset")

    def test_assertion_failure(self):
        self._assert_nothing_left(*self._run_child("assert"))

    def test_setup_failure(self):
        self._assert_nothing_left(*self._run_child("setup"))

    def test_sigterm_mid_test(self):
        self._assert_nothing_left(*self._run_child("hang", kill=signal.SIGTERM))

    def test_sigint_mid_test(self):
        self._assert_nothing_left(*self._run_child("hang", kill=signal.SIGINT))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
