#!/usr/bin/env python3
"""kvctl against the real daemons of a one-node simulated cluster (tests/cluster): status, vips, leases and
rules with and without --json, exit codes healthy / degraded / down, a stopped or dead daemon named within the
timeout, and the read-only boundary: root and the kvegress group may list but never change (AccessDenied), a
peer with neither is refused at connect.

  python3 tests/ops/test_kvctl.py --build-dir build-sanitize [-v] [TestKvctl.test_status]
"""
import json
import os
import pwd
import grp
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import cluster  # noqa: E402
import kvc_test  # noqa: E402
from dbus_p2p import Connection, DBusError  # noqa: E402

KVCTL = None
VIP = cluster.VIPS4[2]
NET = ("/io/kvegress/Net1", "io.kvegress.Net1")
ELECT = ("/io/kvegress/Elect1", "io.kvegress.Elect1")
CTRL = ("/io/kvegress/Controller1", "io.kvegress.Controller1")


class TestKvctl(kvc_test.ClusterTestCase):
    NODES = 1

    @classmethod
    def setUpClass(cls):
        cluster.install_signal_handlers()
        cls.c = cluster.Cluster(binaries=kvc_test.BINARIES, nodes=cls.NODES, lease=cls.LEASE,
                                log=lambda m: print("[cluster] " + m, flush=True))
        node = cls.c.nodes[0]
        # kvpd's socket as kvpd.socket would give it: a directory of kvpd's own, readable by the group.
        rundir = os.path.join(node.dir, "run", "kvpd")
        os.makedirs(rundir)
        os.chmod(node.dir, 0o755)
        os.chown(rundir, pwd.getpwnam("kvpd").pw_uid, grp.getgrnam("kvegress").gr_gid)
        os.chmod(rundir, 0o2750)
        cls.socks = {"kvpd": os.path.join(rundir, "kvpd.sock"), "kvnetd": node._paths()["kvnetd_sock"],
                     "kvelectd": node._paths()["kvelectd_sock"]}
        cls.c.extra_env["kvpd"] = {"KVEGRESS_KVPD_SOCKET": cls.socks["kvpd"]}
        cls.c.start()
        cls.node = node

    def kvctl(self, *args, timeout=1.0, user=None):
        cmd = [KVCTL, "--timeout", str(timeout), "--kvpd-socket", self.socks["kvpd"],
               "--kvnetd-socket", self.socks["kvnetd"], "--kvelectd-socket", self.socks["kvelectd"]] + list(args)
        if user:
            cmd = ["setpriv", "--reuid", user[0], "--regid", "nogroup", "--groups", user[1], "--"] + cmd
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        p.seconds = time.monotonic() - t
        return p

    def status(self, *args, **kw):
        p = self.kvctl("--json", "status", *args, **kw)
        return p.returncode, json.loads(p.stdout), p

    def wait_healthy(self, what):
        last = []

        def ok():
            rc, st, _ = self.status()
            last[:] = [st]
            return rc == 0 and all(s.get("programmed") for s in st["services"] if s.get("role") == "holder")
        try:
            self.wait(ok, 20, what, 0.2)
        except TimeoutError as e:
            raise AssertionError("%s; last: %s" % (e, json.dumps(last, indent=1))) from None
        return last[0]

    def test_status_vips_leases_rules(self):
        pods = self.egress("web", self.node, [VIP], dual=False,
                           annotations={"kube-vip.io/egress-destination-ports": "tcp:80"})
        st = self.wait_healthy("kvctl status healthy with default/web programmed")
        self.assertEqual(st["health"], "healthy")
        self.assertEqual(st["node"], "node1")
        self.assertTrue(all(d["reachable"] for d in st["daemons"].values()), st["daemons"])
        web = [s for s in st["services"] if s["service"] == "default/web"]
        self.assertEqual(len(web), 1, st)
        web = web[0]
        self.assertEqual(web["role"], "holder")
        self.assertEqual(web["lease"], "default/kubevip-web")
        self.assertEqual(web["state"], "ready")
        self.assertEqual(web["vips_wanted"], [VIP])
        self.assertEqual([(v["address"], v["interface"]) for v in web["vips_bound"]], [(VIP, "eth1")])
        self.assertGreater(web["vips_bound"][0]["grant_expires_in_ms"], 0)
        self.assertGreater(web["lease_deadline_in_ms"], 0)
        self.assertEqual(web["pods"], [pods[0].ips[0]])
        self.assertEqual(web["ports"], [{"protocol": "tcp", "port": 80}])
        self.assertEqual(web["snat"]["vip4"], VIP)
        self.assertEqual(web["snat"]["pods"], [pods[0].ips[0]])
        self.assertTrue(web["campaign"]["leading"])
        self.assertEqual(web["campaign"]["holder"], "node1")
        self.assertIsNone(web["last_error"])

        text = self.kvctl("status")
        self.assertEqual(text.returncode, 0, text.stdout + text.stderr)
        print(text.stdout)
        self.assertIn("node node1", text.stdout)
        self.assertIn("default/web: ready, holder of lease default/kubevip-web", text.stdout)
        self.assertIn("%s on eth1" % VIP, text.stdout)

        vips = self.kvctl("--json", "vips")
        self.assertEqual(vips.returncode, 0)
        self.assertEqual([(v["service"], v["address"]) for v in json.loads(vips.stdout)], [("default/web", VIP)])
        leases = self.kvctl("leases")
        self.assertIn("default/kubevip-web", leases.stdout)
        self.assertIn("node1", leases.stdout)

        rules = self.kvctl("rules", "default/web")
        self.assertEqual(rules.returncode, 0, rules.stderr)
        print(rules.stdout)
        self.assertIn("snat ip to %s" % VIP, rules.stdout)
        self.assertIn('comment "default/web"', rules.stdout)
        self.assertIn("tcp . 80", rules.stdout)
        self.assertEqual(json.loads(self.kvctl("--json", "rules", "default/web").stdout)["rules"], rules.stdout)
        bad = self.kvctl("rules", "default/Web;flush ruleset")
        self.assertEqual(bad.returncode, 64, bad.stdout + bad.stderr)
        self.assertIn("default/Web;flush ruleset", bad.stderr)
        unknown = self.kvctl("rules", "default/nothere")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("default/nothere has no egress on this node", unknown.stderr)

    def call(self, which, member, sig="", *args, user=None, groups=None):
        """Calls member on which's socket as root, or as user (with exactly groups as supplementary groups)
        in a child process. Returns ("ok", reply) or ("error", name) or ("refused", why)."""
        path, iface = {"kvnetd": NET, "kvelectd": ELECT, "kvpd": CTRL}[which]
        code = ("import sys, json; sys.path.insert(0, %r)\n"
                "from dbus_p2p import Connection, DBusError\n"
                "try:\n"
                "    with Connection(%r, timeout=5) as c:\n"
                "        print(json.dumps(['ok', repr(c.call(%r, %r, %r, %r, *%r))]))\n"
                "except DBusError as e:\n"
                "    print(json.dumps(['error', e.name]))\n"
                "except (OSError, EOFError, ValueError) as e:\n"
                "    print(json.dumps(['refused', repr(e)]))\n") % (
                    os.path.join(HERE, "..", "lib"), self.socks[which], path, iface, member, sig, list(args))
        cmd = ["/usr/bin/python3", "-c", code]
        if user:
            cmd = ["setpriv", "--reuid", user, "--regid", "nogroup", "--groups", groups, "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return tuple(json.loads(p.stdout.strip().splitlines()[-1]))

    def test_read_only_boundary(self):
        denied = "org.freedesktop.DBus.Error.AccessDenied"
        # root: not kvpd, so read-only on kvnetd and kvelectd.
        self.assertEqual(self.call("kvnetd", "ListVips")[0], "ok")
        self.assertEqual(self.call("kvnetd", "GrantVip", "ssst", "default/x", VIP, "eth1", 1), ("error", denied))
        self.assertEqual(self.call("kvnetd", "RemoveService", "s", "default/web"), ("error", denied))
        self.assertEqual(self.call("kvelectd", "ListCampaigns")[0], "ok")
        self.assertEqual(self.call("kvelectd", "Campaign", "ss", "default", "x"), ("error", denied))
        self.assertEqual(self.call("kvelectd", "Withdraw", "ss", "default", "kubevip-web"), ("error", denied))
        self.assertEqual(self.call("kvpd", "ListServices")[0], "ok")
        # The daemons' own checks, not the file mode: open the sockets to everyone for this test.
        modes = {w: os.stat(self.socks[w]).st_mode & 0o777 for w in ("kvnetd", "kvelectd")}
        dirs = {w: os.stat(os.path.dirname(self.socks[w])).st_mode & 0o7777 for w in modes}
        try:
            for w in modes:
                os.chmod(os.path.dirname(self.socks[w]), 0o755)
                os.chmod(self.socks[w], 0o666)
            # A user in group kvegress (supplementary, as an operator is): reads, never writes.
            self.assertEqual(self.call("kvnetd", "ListVips", user="nobody", groups="kvegress")[0], "ok")
            self.assertEqual(self.call("kvnetd", "SetEgress", "sssasa(sq)asasas", "default/web", "", "", [], [],
                                       [], [], [], user="nobody", groups="kvegress"), ("error", denied))
            self.assertEqual(self.call("kvelectd", "ListCampaigns", user="nobody", groups="kvegress")[0], "ok")
            # Neither the client, nor root, nor the group: refused before a byte is read.
            for w, member in (("kvnetd", "ListVips"), ("kvelectd", "ListCampaigns")):
                got = self.call(w, member, user="nobody", groups="nogroup")
                self.assertEqual(got[0], "refused", got)
            st = self.kvctl("--json", "status", user=("nobody", "nogroup"))
            self.assertEqual(st.returncode, 2, st.stdout)
            # kvpd's socket keeps its file mode as the check.
            self.assertIn("kvpd", json.loads(st.stdout)["daemons"])
        finally:
            for w in modes:
                os.chmod(self.socks[w], modes[w])
                os.chmod(os.path.dirname(self.socks[w]), dirs[w])
        # Nothing was changed by all that.
        self.assertEqual(self.status()[0] in (0, 1), True)

    def test_daemon_down_or_stuck(self):
        # A stuck kvelectd (SIGSTOP): kvctl gives up at its timeout and says which one.
        p = self.node.procs["kvelectd"]
        p.send(signal.SIGSTOP)
        try:
            r = self.kvctl("--json", "status", timeout=1.0)
        finally:
            p.send(signal.SIGCONT)
        st = json.loads(r.stdout)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(st["health"], "degraded")
        self.assertFalse(st["daemons"]["kvelectd"]["reachable"])
        self.assertIn("no answer within 1.0s", st["daemons"]["kvelectd"]["error"])
        self.assertTrue(st["daemons"]["kvnetd"]["reachable"])
        self.assertLess(r.seconds, 2.5, "kvctl took %.2fs with a 1s timeout" % r.seconds)
        print("kvctl with kvelectd stopped: %.2fs" % r.seconds)
        # kvnetd gone: down, and the text names it.
        self.expect_down.add((self.node.name, "kvnetd"))
        self.node.procs["kvnetd"].stop(signal.SIGTERM, 10)
        try:
            r = self.kvctl("status")
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertRegex(r.stdout, r"kvnetd +DOWN: cannot connect to .*kvnetd.sock")
            self.assertIn("kvpd      up", r.stdout)
        finally:
            self.node.start_daemon("kvnetd")
        self.wait_healthy("healthy again after kvnetd is back")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--kvctl" in args:
        i = args.index("--kvctl")
        KVCTL = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    sys.argv[1:] = args
    if not KVCTL:
        build = os.environ.get("KVC_BUILD_DIR") or os.path.join(cluster.ROOT, "build")
        for i, a in enumerate(args):
            if a == "--build-dir":
                build = args[i + 1]
        KVCTL = os.path.abspath(os.path.join(build, "kvctl", "kvctl"))
    kvc_test.main()
