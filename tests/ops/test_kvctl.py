#!/usr/bin/env python3
"""kvctl against the real daemons of a one-node simulated cluster (tests/cluster): status, vips, leases and
rules with and without --json, exit codes healthy / degraded / down, a stopped or dead daemon named within the
timeout, and the read-only boundary: root and the kvegress group may list but never change (AccessDenied), a
peer with neither is refused at connect.

  PYTHONPATH=tests/lib python3 tests/ops/test_kvctl.py --build-dir build-sanitize [-v] [TestKvctl.test_status]
"""
import json
import os
import pwd
import grp
import shutil
import signal
import subprocess
import sys
import time

import asuser
import cluster
import kvbuild
import kvc_test
from dbus_p2p import Connection, DBusError

KVCTL = None
VIP = cluster.VIPS4[2]
NET = ("/io/kvegress/Net1", "io.kvegress.Net1")
ELECT = ("/io/kvegress/Elect1", "io.kvegress.Elect1")
CTRL = ("/io/kvegress/Controller1", "io.kvegress.Controller1")


def node_socks(node):
    return {"kvpd": os.path.join(node.dir, "run", "kvpd", "kvpd.sock"), "kvnetd": node._paths()["kvnetd_sock"],
            "kvelectd": node._paths()["kvelectd_sock"]}


def socket_args(socks):
    return ["--kvpd-socket", socks["kvpd"], "--kvnetd-socket", socks["kvnetd"], "--kvelectd-socket",
            socks["kvelectd"]]


class TestKvctl(kvc_test.ClusterTestCase):
    NODES = 2

    @classmethod
    def setUpClass(cls):
        cluster.install_signal_handlers()
        cls.c = cluster.Cluster(binaries=kvc_test.BINARIES, nodes=cls.NODES, lease=cls.LEASE,
                                log=lambda m: print("[cluster] " + m, flush=True))
        for node in cls.c.nodes:
            # kvpd's socket as kvpd.socket would give it: a directory of kvpd's own, open to the group.
            rundir = os.path.join(node.dir, "run", "kvpd")
            os.makedirs(rundir)
            os.chmod(node.dir, 0o755)
            os.chown(rundir, pwd.getpwnam("kvpd").pw_uid, grp.getgrnam("kvegress").gr_gid)
            os.chmod(rundir, 0o2750)
        # One kvpd environment for all nodes: each node's socket path differs by its directory only.
        cls.c.extra_env["kvpd"] = {}
        orig_env = cluster.Node.daemon_env

        def daemon_env(node, which):
            env = orig_env(node, which)
            if which == "kvpd":
                env["KVEGRESS_KVPD_SOCKET"] = node_socks(node)["kvpd"]
            return env
        cluster.Node.daemon_env = daemon_env
        cls.c.start()
        cls.node = cls.c.nodes[0]
        cls.socks = node_socks(cls.node)
        # kvctl where any user can run it, as a package installs it (the checkout may be in a 0700 folder).
        global KVCTL
        installed = os.path.join(cls.c.dir, "bin", "kvctl")
        shutil.copy2(KVCTL, installed)
        os.chmod(installed, 0o755)
        KVCTL = installed

    def kvctl(self, *args, timeout=1.0, user=None, node=None):
        socks = node_socks(node) if node else self.socks
        cmd = [KVCTL, "--timeout", str(timeout)] + socket_args(socks) + list(args)
        if user:
            cmd = ["setpriv", "--reuid", user[0], "--regid", "nogroup", "--groups", user[1], "--"] + cmd
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        p.seconds = time.monotonic() - t
        return p

    def status(self, *args, **kw):  # noqa: D102
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
        # The class chain (kvnetd/nft.h) and the Service's own VIP map elements.
        self.assertIn("snat ip to ip saddr map @vip4", rules.stdout)
        self.assertIn('%s comment "default/web" : %s' % (pods[0].ips[0], VIP), rules.stdout)
        self.assertIn("tcp . 80", rules.stdout)
        self.assertEqual(json.loads(self.kvctl("--json", "rules", "default/web").stdout)["rules"], rules.stdout)
        # kvnetd's journal line for the transaction names the Service, the VIP and the pod (KVEGRESS_POD=).
        applied = [l for l in self.log_text("kvnetd").splitlines()
                   if "MESSAGE_ID=d966d50de11844f58f866eab2f711a32" in l and "KVEGRESS_SERVICE=default/web " in l]
        self.assertEqual(len(applied), 1, applied)
        self.assertIn("KVEGRESS_VIP=%s KVEGRESS_POD=%s" % (VIP, pods[0].ips[0]), applied[0])
        bad = self.kvctl("rules", "default/Web;flush ruleset")
        self.assertEqual(bad.returncode, 64, bad.stdout + bad.stderr)
        self.assertIn("default/Web;flush ruleset", bad.stderr)
        unknown = self.kvctl("rules", "default/nothere")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("default/nothere has no egress on this node", unknown.stderr)

    def log_text(self, which):
        with open(os.path.join(self.node.dir, "%s.log" % which), errors="replace") as f:
            return f.read()

    def test_refused_service_one_event_for_60s(self):
        """A Service kvnetd refuses (its VIP is outside --vip-range) is retried every 2 s for 60 s: one
        EgressFailed Event object, one warning line per daemon with its MESSAGE_ID, and kvctl names the error,
        the daemon it came from, and exits 1. The accepted Service beside it gets the acknowledgement."""
        bad_vip = "192.168.0.200"
        kvnetd_log0, kvpd_log0 = len(self.log_text("kvnetd")), len(self.log_text("kvpd"))
        pods = self.egress("ok", self.node, [cluster.VIPS4[3]], dual=False)
        self.egress("refused", self.node, [bad_vip], dual=False, wait=False)
        t0 = time.time()

        def events():
            items = self.c.get("/api/v1/namespaces/default/events")["items"]
            return [e for e in items if e["involvedObject"]["name"] == "refused"]
        self.wait(lambda: any(e["reason"] == "EgressFailed" for e in events()), 20, "EgressFailed on refused")
        rc, st, _ = self.status()
        self.assertEqual(rc, 1, st)
        self.assertEqual(st["health"], "degraded")
        refused = [s for s in st["services"] if s["service"] == "default/refused"][0]
        self.assertEqual(refused["last_error"]["from"], "kvnetd")
        self.assertTrue(refused["last_error"]["standing"])
        self.assertIn(bad_vip, refused["last_error"]["message"])
        self.assertIn("last error  kvnetd refused GrantVip", self.kvctl("status").stdout)

        ann = self.c.get("/api/v1/namespaces/default/services/ok")["metadata"]["annotations"]
        self.assertRegex(ann.get("kvegress.io/egress-programmed", ""),
                         r"^node=node1,vips=%s,pods=1,at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$" % cluster.VIPS4[3])
        self.assertNotIn("kube-vip.io/active-endpoint-ipv6", ann)  # IPv4 only: no empty annotation
        self.assertEqual(ann.get("kube-vip.io/active-endpoint"), pods[0].ips[0])

        time.sleep(max(0.0, 60 - (time.time() - t0)))
        evs = [e for e in events() if e["reason"] == "EgressFailed"]
        print("after %.0fs: %s" % (time.time() - t0, [(e["reason"], e.get("count"), e["message"]) for e in evs]))
        self.assertEqual(len(evs), 1, evs)
        # Said once, when it was news: never PATCHed to count 2 while the same refusal stands.
        self.assertEqual(evs[0]["count"], 1, evs)
        self.assertEqual(evs[0]["type"], "Warning")
        self.assertIn("kvnetd refused GrantVip", evs[0]["message"])
        kvnetd_lines = [l for l in self.log_text("kvnetd")[kvnetd_log0:].splitlines()
                        if "warning: refused GrantVip(default/refused)" in l]
        kvpd_lines = [l for l in self.log_text("kvpd")[kvpd_log0:].splitlines()
                      if "MESSAGE_ID=7dfdac8d082d4cacbd7d6f24cd181b60" in l]
        retries = self.log_text("kvnetd")[kvnetd_log0:].count("refused GrantVip(default/refused)")
        print("kvnetd refusals in 60 s: %d, logged at warning: %d" % (retries, len(kvnetd_lines)))
        self.assertGreater(retries, 10)  # it was retried all along
        self.assertEqual(len(kvnetd_lines), 1, kvnetd_lines)
        self.assertIn("MESSAGE_ID=36679562147744ac8c5700d74b90593f", kvnetd_lines[0])  # input rejected
        self.assertEqual(len(kvpd_lines), 1, kvpd_lines)
        self.assertIn("KVEGRESS_SERVICE=default/refused", kvpd_lines[0])
        self.assertIn("KVEGRESS_DAEMON=kvnetd", kvpd_lines[0])

    def start_exporter(self, node, port=9405):
        """kvegress-metrics.socket without systemd: systemd-socket-activate accepts in the node's namespace and
        runs one `kvctl metrics --http` per connection as uid nobody with group kvegress only."""
        cmd = ["ip", "netns", "exec", node.netns, "setpriv", "--reuid", "nobody", "--regid", "nogroup",
               "--groups", "kvegress", "--", "systemd-socket-activate", "--inetd", "-a", "-l", "127.0.0.1:%d" % port,
               KVCTL, "--timeout", "2"] + socket_args(node_socks(node)) + ["metrics", "--http"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.terminate(), p.wait(5)))
        cluster.run(["ip", "netns", "exec", node.netns, "ip", "link", "set", "lo", "up"])
        self.wait(lambda: self.curl(node, port)[0] == 200, 10, "the exporter of %s answers" % node.name, 0.2)
        return p

    def curl(self, node, port=9405, path="/metrics"):
        p = subprocess.run(["ip", "netns", "exec", node.netns, "curl", "-s", "-m", "5", "-w", "\n%{http_code}",
                            "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True, timeout=20)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), body

    def scrape(self, node):
        """Scrapes node with curl and parses the answer with Prometheus's own parser (Debian's
        python3-prometheus-client, run by the system python3): {(name, frozenset(labels)): value}."""
        code, body = self.curl(node)
        self.assertEqual(code, 200, body)
        parser = ("import json, sys\n"
                  "from prometheus_client.parser import text_string_to_metric_families\n"
                  "out = []\n"
                  "for fam in text_string_to_metric_families(sys.stdin.read()):\n"
                  "    for s in fam.samples:\n"
                  "        out.append([s.name, s.labels, s.value, fam.type])\n"
                  "print(json.dumps(out))\n")
        p = subprocess.run(["/usr/bin/python3", "-c", parser], input=body, capture_output=True, text=True)
        if p.returncode != 0 and "No module named 'prometheus_client'" in p.stderr:
            self.skipTest("python3-prometheus-client is not installed (tools/setup.sh installs it)")
        self.assertEqual(p.returncode, 0, p.stderr + body)
        return {(n, frozenset(l.items())): v for n, l, v, _ in json.loads(p.stdout)}, body

    @staticmethod
    def value(samples, name, **labels):
        return samples.get((name, frozenset(labels.items())))

    def holder_of(self, lease):
        for node in self.c.nodes:
            rc, st, _ = self.status(node=node)
            if st.get("campaigns", {}).get(lease, {}).get("leading"):
                return node
        return None

    def test_metrics_scraped_during_failover(self):
        lease = "default/kubevip-fo"
        for node in self.c.nodes:
            self.start_exporter(node)
        self.egress("fo", self.node, [cluster.VIPS4[4]], dual=False)
        self.c.add_pod("fo-1", self.c.nodes[1], labels={"app": "fo"}, dual=False)
        self.c.sync_endpointslices()
        self.wait(lambda: self.holder_of(lease), 20, "a holder of %s" % lease)
        old = self.holder_of(lease)
        new = [n for n in self.c.nodes if n is not old][0]
        s_old, body = self.scrape(old)
        s_new, _ = self.scrape(new)
        for d in ("kvpd", "kvnetd", "kvelectd"):
            self.assertEqual(self.value(s_old, "kvegress_daemon_up", daemon=d), 1.0, d)
        self.assertEqual(self.value(s_old, "kube_vip_build_info", version="0.1.0", implementation="kvegress"), 1.0)
        self.assertEqual(self.value(s_old, "kube_vip_is_leader", lease=lease), 1.0)
        self.assertEqual(self.value(s_new, "kube_vip_is_leader", lease=lease), 0.0)
        self.assertGreaterEqual(self.value(s_old, "kvegress_vips_bound"), 1.0)
        self.assertGreaterEqual(self.value(s_old, "kvegress_nft_transactions_total", result="ok"), 1.0)
        self.assertGreaterEqual(self.value(s_old, "kvegress_change_to_snat_seconds_count"), 1.0)
        self.assertGreaterEqual(self.value(s_old, "kvegress_event_loop_lag_seconds_count", daemon="kvnetd"), 1.0)
        for d in ("kvnetd", "kvelectd", "kvpd"):
            lag = self.value(s_old, "kvegress_event_loop_lag_max_seconds", daemon=d)
            self.assertTrue(0.0 <= lag < 5.0, "%s: worst event-loop lag %s s" % (d, lag))
        transitions = self.value(s_new, "kube_vip_leader_election_transitions_total")
        failovers = self.value(s_new, "kvegress_failover_duration_seconds_count")
        self.assertEqual(self.curl(old, path="/nope")[0], 404)

        # Failover: the holder's kvpd stops (it releases the Lease); the other node takes it.
        t0 = time.monotonic()
        self.expect_down.add((old.name, "kvpd"))
        old.procs["kvpd"].stop(signal.SIGTERM, 10)
        try:
            self.wait(lambda: self.holder_of(lease) is new, 20, "%s takes %s over" % (new.name, lease))
            print("failover: %s leads %.2fs after the stop" % (new.name, time.monotonic() - t0))
            s_new, body = self.scrape(new)
            print("---- scrape of %s after the failover\n%s----" % (new.name, body))
            self.assertEqual(self.value(s_new, "kube_vip_is_leader", lease=lease), 1.0)
            self.assertEqual(self.value(s_new, "kube_vip_leader_election_transitions_total"), transitions + 1)
            self.assertEqual(self.value(s_new, "kvegress_failover_duration_seconds_count"), failovers + 1)
            print("failover seen by %s: %.3fs" % (new.name, self.value(s_new, "kvegress_failover_duration_seconds_sum")))
            # One daemon down: the scrape still answers, and says which.
            s_old, _ = self.scrape(old)
            self.assertEqual(self.value(s_old, "kvegress_daemon_up", daemon="kvpd"), 0.0)
            self.assertEqual(self.value(s_old, "kvegress_daemon_up", daemon="kvnetd"), 1.0)
            self.assertEqual(self.value(s_old, "kube_vip_is_leader", lease=lease), None)  # withdrawn
        finally:
            old.start_daemon("kvpd")

    def call(self, which, member, sig="", *args, user=None, groups=None):
        """Calls member on which's socket as root, or as user (with exactly groups as supplementary groups)
        in a forked child that imports nothing (asuser.py: a checkout in a 0700 folder must not decide the
        outcome). Returns ("ok", reply) or ("error", name) or ("refused", why)."""
        path, iface = {"kvnetd": NET, "kvelectd": ELECT, "kvpd": CTRL}[which]
        sock = self.socks[which]

        def do():
            try:
                with Connection(sock, timeout=5) as c:
                    return ("ok", repr(c.call(path, iface, member, sig, *args)))
            except DBusError as e:
                return ("error", e.name)
            except (OSError, EOFError, ValueError) as e:
                return ("refused", repr(e))

        if not user:
            return do()
        ok, value = asuser.call_as(user, do, group="nogroup", groups=groups.split(",") if groups else [])
        self.assertTrue(ok, value)
        return value

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
        # A stuck kvnetd: status says down (2) naming it, and `rules` gives up at the timeout with 2 too.
        p = self.node.procs["kvnetd"]
        p.send(signal.SIGSTOP)
        try:
            r = self.kvctl("--json", "status", timeout=1.0)
            rules = self.kvctl("rules", "default/web", timeout=1.0)
        finally:
            p.send(signal.SIGCONT)
        st = json.loads(r.stdout)
        self.assertEqual((r.returncode, st["health"]), (2, "down"), r.stdout)
        self.assertFalse(st["daemons"]["kvnetd"]["reachable"])
        self.assertIn("no answer within 1.0s", st["daemons"]["kvnetd"]["error"])
        self.assertTrue(st["daemons"]["kvelectd"]["reachable"] and st["daemons"]["kvpd"]["reachable"])
        self.assertLess(r.seconds, 2.5, "kvctl took %.2fs with a 1s timeout" % r.seconds)
        self.assertEqual(rules.returncode, 2, rules.stdout + rules.stderr)
        self.assertIn("kvctl: kvnetd: no answer within 1.0s", rules.stderr)
        self.assertLess(rules.seconds, 2.5, "kvctl rules took %.2fs with a 1s timeout" % rules.seconds)
        print("kvctl with kvnetd stopped: status %.2fs, rules %.2fs" % (r.seconds, rules.seconds))
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
    if "--build-dir" in args[:-1]:
        kvbuild.set_build_dir(args[args.index("--build-dir") + 1])
    KVCTL = kvbuild.binary("kvctl/kvctl")
    kvc_test.main()
