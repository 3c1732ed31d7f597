#!/usr/bin/env python3
"""README's install guide, run: every ```sh admin``` and ```sh node``` block of the section "Installing on a
node (Debian 12)", in order, against the test API server and a freshly booted Debian 12 container (the
cached root of boot-test.py, nothing of kvegress installed), so the guide cannot rot.

  - ```sh settings``` is the guide's one block of site values; the test gives the same names its own values
    (and fails if the guide names others).
  - admin blocks run on the host, in the API server's namespace, as an administrator would: kubectl with
    the admin kubeconfig, kvegress-kubeconfig from the built package (extracted, not installed), the
    packages in the working directory, and `ssh root@NODE` / `scp ... root@NODE:` reaching the container
    (small shims: ssh runs the command in the container with nsenter, scp copies into its root).
  - node blocks run as root in the container (nsenter into its namespaces), in /root.
  - Each block runs with bash -euo pipefail: a failing command fails the test.

Between blocks the test checks what the guide promises: the VIP and the rules after "enable", the Lease
held by the node, the token renewal picked up while the old token is revoked (and every connection cut,
so both daemons must authenticate again): no VIP event, the Lease still renewed, an annotation change
still applied; the mixed fleet (a second Service whose Lease "kube-vip" on another node holds and renews,
played by the test: never bound here; once kube-vip releases it, taken over); the upgrade moves nothing;
the purge leaves nothing. An `ip monitor` from the host over the
whole run must show the VIP added once and removed once.

usage: guide-test.py --deb-dir DIR (tools/build-deb.sh's output)      Needs root. Standard library only.
"""
import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
README = os.path.join(SRC, "README.md")
GUIDE_TITLE = "## Installing on a node (Debian 12)"

_spec = importlib.util.spec_from_file_location("boottest", os.path.join(HERE, "boot-test.py"))
bt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bt)

NODE = "kvguide-node"
VIP = bt.VIP
# A second Service whose Lease a kube-vip node holds when the guide starts (the mixed fleet).
VIP2, KUBE_VIP_NODE = "192.168.0.242", "kube-vip-worker-2"


def guide_blocks(path=README):
    """[(tag, text)] of the guide's fenced ```sh TAG blocks, in order."""
    with open(path) as f:
        text = f.read()
    start = text.index(GUIDE_TITLE)
    end = text.find("\n## ", start + len(GUIDE_TITLE))
    section = text[start:end if end > 0 else len(text)]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```sh (settings|admin|node)\n(.*?)^```$", section,
                                                            re.M | re.S)]


SHIM_SSH = """#!/bin/sh
# guide-test.py: `ssh root@NODE CMD...` runs CMD as root in the container, in /root, stdin passed on.
case "$1" in root@*) shift ;; *) echo "ssh shim: use root@NODE" >&2; exit 2 ;; esac
exec nsenter --all -t "$KVGUIDE_LEADER" -- /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HOME=/root LANG=C.UTF-8 /bin/bash -c "cd /root && $*"
"""
SHIM_SCP = """#!/bin/sh
# guide-test.py: `scp [-r] SRC... root@NODE:[DIR]` copies into the container's root (/root by default).
r=
[ "$1" = "-r" ] && { r=-r; shift; }
n=$#
dest=$(eval echo "\\${$n}")
case "$dest" in root@*:*) ;; *) echo "scp shim: last argument must be root@NODE:[DIR]" >&2; exit 2 ;; esac
dir=${dest#*:}
case "$dir" in /*) ;; *) dir=/root/$dir ;; esac
i=1
while [ $i -lt $n ]; do
    src=$(eval echo "\\${$i}")
    cp $r "$src" "$KVGUIDE_ROOT$dir"
    i=$((i + 1))
done
"""


class Guide(bt.Boot):
    def _install(self):
        """Nothing of kvegress: a fresh Debian 12 node. The admin's side gets the packages and the
        kvegress-kubeconfig command from them."""
        self.admin_dir = os.path.join(self.dir, "admin")
        self.pkg_dir = os.path.join(self.dir, "pkg")
        self.shim_dir = os.path.join(self.dir, "shims")
        for d in (self.admin_dir, self.pkg_dir, self.shim_dir):
            os.makedirs(d)
        self.debs = {}
        for which in ("current", "next"):
            deb = [f for f in os.listdir(os.path.join(self.deb_dir, which)) if f.startswith("kvegress_")]
            if not deb:
                raise RuntimeError("no kvegress_*.deb in %s/%s" % (self.deb_dir, which))
            self.debs[which] = deb[0]
            shutil.copy(os.path.join(self.deb_dir, which, deb[0]), self.admin_dir)
        bt.run(["dpkg-deb", "-x", os.path.join(self.admin_dir, self.debs["current"]), self.pkg_dir])
        for name, text in (("ssh", SHIM_SSH), ("scp", SHIM_SCP)):
            with open(os.path.join(self.shim_dir, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(self.shim_dir, name), 0o755)
        os.symlink("/dev/null", os.path.join(self.root, "etc/systemd/system/console-getty.service"))
        self.settings = {"NODE": NODE, "IFACE": bt.SVC_IF, "VIP_RANGE": bt.VIP_RANGE, "DEB": self.debs["current"],
                         "NEW_DEB": self.debs["next"]}
        self.log = []  # (tag, block, rc, output)

    def admin_api(self, op, body):
        """POST /_kvtest/OP as the admin (the server is reachable only from its namespace)."""
        with open(os.path.join(self.dir, "api", "admin-token")) as f:
            tok = f.read().strip()
        code = ("import json, ssl, sys, urllib.request as u\n"
                "c = ssl.create_default_context(cafile=sys.argv[1])\n"
                "r = u.Request(sys.argv[2], data=sys.argv[3].encode(), method='POST',\n"
                "              headers={'Authorization': 'Bearer ' + sys.argv[4], 'Content-Type': 'application/json'})\n"
                "print(u.urlopen(r, context=c, timeout=20).read().decode())\n")
        p = bt.run(["ip", "netns", "exec", self.ns_api, sys.executable, "-c", code,
                    os.path.join(self.dir, "api", "ca.crt"), "%s/_kvtest/%s" % (self.api_url, op), json.dumps(body),
                    tok], timeout=30)
        return json.loads(p.stdout or "{}")

    def leader(self):
        """The container's PID 1, as the host sees it."""
        want = self.nspawn.pid
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/status" % pid) as f:
                    st = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            ns = st.get("NSpid", "").split()
            if len(ns) == 2 and ns[1] == "1":
                p = int(pid)
                while p > 1:
                    if p == want:
                        return int(pid)
                    try:
                        with open("/proc/%d/stat" % p) as f:
                            p = int(f.read().rsplit(")", 1)[1].split()[1])
                    except OSError:
                        break
        return None

    def in_node(self, script, timeout=300):
        return bt.run(["nsenter", "--all", "-t", str(self.pid1), "--", "/usr/bin/env", "-i",
                       "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
                       "LANG=C.UTF-8", "/bin/bash", "-c", "cd /root && " + script], timeout=timeout, check=False)

    def run_block(self, tag, block):
        prologue = "set -euo pipefail\n" + "".join("%s=%s\n" % kv for kv in self.settings.items())
        if tag == "node":
            p = self.in_node(prologue + block)
        else:
            env = dict(os.environ, KUBECONFIG=self.kubeconfig_admin, KVGUIDE_LEADER=str(self.pid1),
                       KVGUIDE_ROOT=self.root, HOME=self.admin_dir,
                       PATH="%s:%s:%s" % (self.shim_dir, os.path.join(self.pkg_dir, "usr", "bin"),
                                          os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")))
            p = subprocess.run(["ip", "netns", "exec", self.ns_api, "/bin/bash", "-c", prologue + block],
                               capture_output=True, text=True, timeout=300, cwd=self.admin_dir, env=env)
        self.log.append((tag, block, p.returncode, p.stdout + p.stderr))
        if p.returncode != 0:
            raise AssertionError("guide block (%s) failed, exit %d:\n%s\n---- output\n%s" % (
                tag, p.returncode, block, (p.stdout + p.stderr)[-3000:]))
        return p.stdout + p.stderr

    def boot_empty(self):
        cmd = ["systemd-nspawn", "-q", "-D", self.root, "-M", self.prefix, "-b", "--register=no", "--keep-unit",
               "--network-namespace-path=/run/netns/" + self.ns_node, "--capability=CAP_NET_ADMIN",
               "--console=read-only", "--link-journal=no", "--resolv-conf=off", "--timezone=off"]
        self.nspawn = self._popen("nspawn", cmd, os.path.join(self.dir, "console.txt"))
        self.pid1 = bt.wait(self.leader, 30, 0.1)
        if not self.pid1:
            raise RuntimeError("no container PID 1 after 30 s:\n" + bt.tail(os.path.join(self.dir, "console.txt")))
        # systemd's bus comes up a little after PID 1 exists.
        end = time.monotonic() + 120
        while True:
            p = self.in_node("systemctl is-system-running --wait", timeout=120)
            if p.stdout.strip() in ("running", "degraded") or time.monotonic() > end:
                break
            time.sleep(0.2)
        if p.stdout.strip() not in ("running", "degraded"):
            raise RuntimeError("container not up: %s %s" % (p.stdout, p.stderr))

    def cluster_objects(self):
        """What the cluster has before the guide starts: this node, and a LoadBalancer Service whose one
        ready endpoint is on it (externalTrafficPolicy: Local), without the egress annotation."""
        objs = [
            {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
             "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": "default", "annotations": {"kube-vip.io/loadbalancerIPs": VIP}},
             "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web-v4", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
             "endpoints": [{"addresses": [bt.POD_IP], "nodeName": NODE,
                            "conditions": {"ready": True, "serving": True, "terminating": False}}]},
        ]
        # web2: egress already on, its pod on this node too, its Lease held and renewed by kube-vip on
        # another node (this test plays it, renewing every 2 s as kube-vip's 15/10/2 defaults do).
        objs += [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web2", "namespace": "default",
                          "annotations": {"kube-vip.io/loadbalancerIPs": VIP2, "kube-vip.io/egress": "true"}},
             "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web2"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web2-v4", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "web2"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
             "endpoints": [{"addresses": ["10.244.1.11"], "nodeName": NODE,
                            "conditions": {"ready": True, "serving": True, "terminating": False}}]},
        ]
        self.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in objs))
        self.kube_vip_renewing = True
        self.kube_vip_lease(KUBE_VIP_NODE, 15)
        self.kube_vip = threading.Thread(target=self._kube_vip_loop, daemon=True)
        self.kube_vip.start()

    def kube_vip_lease(self, holder, duration):
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "kubevip-web2", "namespace": "default"},
                 "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": now,
                          "acquireTime": now, "leaseTransitions": 0}}
        self.kubectl("apply", "-f", "-", input=json.dumps(lease), check=False)

    def _kube_vip_loop(self):
        while self.kube_vip_renewing and not self.closed:
            self.kube_vip_lease(KUBE_VIP_NODE, 15)
            time.sleep(2)

    def kube_vip_stop(self):
        """kube-vip stopped on its node: it releases its Lease (ReleaseOnCancel: holder cleared, 1 s)."""
        self.kube_vip_renewing = False
        self.kube_vip.join(30)
        self.kube_vip_lease("", 1)

    def lease(self, name="kubevip-web"):
        p = self.kubectl("get", "lease", name, "-n", "default", "-o", "json", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else {}

    def vip_events(self):
        with open(self.monitor_path) as f:
            return [line.strip() for line in f if VIP + "/" in line]


GUIDE = None


class GuideTest(unittest.TestCase):
    """One test: the guide, step by step, with the checks between the steps."""

    def test_guide(self):
        g = GUIDE
        blocks = guide_blocks()
        settings = [b for t, b in blocks if t == "settings"]
        self.assertEqual(len(settings), 1, "the guide has one ```sh settings block")
        names = re.findall(r"^([A-Z_]+)=", settings[0], re.M)
        self.assertEqual(sorted(names), sorted(g.settings), "the guide's settings and the test's differ")
        steps = [(t, b) for t, b in blocks if t != "settings"]
        self.assertGreater(len(steps), 5)
        g.cluster_objects()
        g.boot_empty()
        checks = {"kube-vip.io/egress=true": self.after_annotate, "install-token": self.after_renewal,
                  "HOLDER:": self.after_mixed_fleet,
                  "./$NEW_DEB": self.after_upgrade, "purge": self.after_purge}
        for tag, block in steps:
            before = self.snapshot() if "./$NEW_DEB" in block else None
            old_token = self.read_token() if "install-token" in block else None
            g.run_block(tag, block)
            for key, check in checks.items():
                if key in block:
                    check(before if key == "./$NEW_DEB" else old_token)
        events = g.vip_events()
        self.assertEqual(([e for e in events if not e.startswith("Deleted")].__len__(),
                          [e for e in events if e.startswith("Deleted")].__len__()), (1, 1), "\n".join(events))
        self.assertTrue(self.done.issuperset({"egress", "renewal", "mixed", "upgrade", "purge"}), self.done)

    done = set()

    def read_token(self):
        with open(os.path.join(GUIDE.root, "etc/kvegress/token")) as f:
            return f.read().strip()

    def node_vip(self):
        return VIP in GUIDE.node_addrs()

    def snapshot(self):
        return {"table": GUIDE.node_table(), "events": len(GUIDE.vip_events()),
                "pids": GUIDE.in_node("systemctl show -p MainPID --value kvnetd kvelectd kvpd").stdout.split()}

    def after_annotate(self, _):
        g = GUIDE
        self.assertTrue(bt.wait(self.node_vip, 30, 0.2), "no VIP on the node after the guide's annotate step")
        self.assertTrue(bt.wait(lambda: (g.lease().get("spec") or {}).get("holderIdentity") == NODE, 30, 0.2))
        self.assertIn(VIP, g.node_table() or "")
        self.done.add("egress")

    def after_renewal(self, old_token):
        """The guide renewed the token; now the old one is revoked and every connection cut: both daemons
        reconnect with the old token, get 401, re-read the token file and go on. Nothing moves."""
        g = GUIDE
        new_token = self.read_token()
        self.assertNotEqual(old_token, new_token, "the renewal did not replace /etc/kvegress/token")
        events = len(g.vip_events())
        g.admin_api("revoke-token", {"token": old_token})
        g.admin_api("drop-connections", {})
        t0 = time.monotonic()
        renew0 = (g.lease().get("spec") or {}).get("renewTime")
        # kvelectd renews every retryPeriod (2 s by default): a renewal after the revocation.
        self.assertTrue(bt.wait(lambda: (g.lease().get("spec") or {}).get("renewTime") != renew0, 20, 0.5),
                        "the Lease was not renewed after the old token was revoked")
        # kvpd: its watches were cut; an annotation change must still reach the node's table.
        g.kubectl("annotate", "--overwrite", "service", "web", "-n", "default",
                  "kube-vip.io/egress-destination-ports=tcp:8080")
        self.assertTrue(bt.wait(lambda: "8080" in (g.node_table() or ""), 30, 0.2),
                        "kvpd did not apply an annotation change after the rotation")
        g.kubectl("annotate", "service", "web", "-n", "default", "kube-vip.io/egress-destination-ports-")
        self.assertTrue(bt.wait(lambda: "8080" not in (g.node_table() or ""), 30, 0.2))
        self.assertEqual((g.lease().get("spec") or {}).get("holderIdentity"), NODE)
        self.assertEqual(len(g.vip_events()), events, "VIP events during the token rotation")
        self.assertTrue(self.node_vip())
        sys.stderr.write("guide-test: rotation: Lease renewed and annotation applied %.1f s after revocation\n" %
                         (time.monotonic() - t0))
        self.done.add("renewal")

    def after_mixed_fleet(self, _):
        """web2's Lease is kube-vip's: this node has never bound its VIP. kube-vip stops and releases
        it: this node takes the Lease and the VIP, and the two never overlap (one holder)."""
        g = GUIDE
        self.assertEqual((g.lease("kubevip-web2").get("spec") or {}).get("holderIdentity"), KUBE_VIP_NODE)
        self.assertNotIn(VIP2, g.node_addrs(), "the node bound a VIP whose Lease kube-vip holds")
        with open(g.monitor_path) as f:
            self.assertEqual([x for x in f if VIP2 + "/" in x], [], "VIP of kube-vip's Service seen on the node")
        t0 = time.monotonic()
        g.kube_vip_stop()
        self.assertTrue(bt.wait(lambda: VIP2 in g.node_addrs(), 30, 0.2),
                        "the node did not take web2 after kube-vip released its Lease")
        self.assertEqual((g.lease("kubevip-web2").get("spec") or {}).get("holderIdentity"), NODE)
        sys.stderr.write("guide-test: mixed fleet: web2 taken over %.1f s after kube-vip released it\n" %
                         (time.monotonic() - t0))
        self.done.add("mixed")

    def after_upgrade(self, before):
        g = GUIDE
        after = self.snapshot()
        self.assertEqual(after["events"], before["events"], "VIP events during the upgrade")
        self.assertEqual(after["table"], before["table"], "table inet kvegress changed during the upgrade")
        for a, b in zip(before["pids"], after["pids"]):
            self.assertNotEqual(a, b, "a daemon was not restarted by the upgrade")
        ver = g.in_node("dpkg-query -W -f='${Version}' kvegress").stdout
        self.assertEqual(ver, g.debs["next"].split("_")[1])
        self.done.add("upgrade")

    def after_purge(self, _):
        g = GUIDE
        self.assertFalse(self.node_vip(), "VIP left after the purge")
        self.assertNotIn(VIP2, g.node_addrs(), "VIP of web2 left after the purge")
        self.assertIsNone(g.node_table(), "table inet kvegress left after the purge")
        p = g.in_node("getent passwd kvnetd kvelectd kvpd; getent group kvegress kvegress-api; "
                      "ls -d /etc/kvegress /run/kvnetd /run/kvelectd 2>/dev/null; true")
        self.assertEqual(p.stdout.strip(), "", "left after the purge")
        self.done.add("purge")


def main():
    global GUIDE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb-dir", required=True)
    ap.add_argument("--build-deb", help="tools/build-deb.sh: run first (it builds once per tree)")
    ap.add_argument("unittest_args", nargs="*")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return bt.SKIP
    for tool in ("systemd-nspawn", "kubectl", "nft", "ip", "nsenter", "dpkg-deb"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed (tools/setup.sh installs it)" % tool)
            return bt.SKIP
    if a.build_deb:
        bt.build_debs(a.build_deb, a.deb_dir)
    try:
        root = bt.cached_root()
    except bt.Skip as e:
        print("SKIP: %s" % e)
        return bt.SKIP
    GUIDE = Guide(root, os.path.abspath(a.deb_dir))
    GUIDE.prefix = "kvboot%d" % os.getpid()

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        GUIDE.setup()
        prog = unittest.main(argv=[sys.argv[0], "-v"] + a.unittest_args, exit=False)
        print("\nguide blocks run:")
        for tag, block, rc, out in GUIDE.log:
            print("  [%s] exit %d: %s" % (tag, rc, block.strip().splitlines()[0][:100]))
        ok = prog.result.wasSuccessful()
        if not ok:
            for tag, block, rc, out in GUIDE.log[-2:]:
                print("\n----- %s block output\n%s" % (tag, out[-2000:]))
            print("\n----- container journal (tail)\n" + GUIDE.in_node(
                "journalctl -b --no-pager -n 120 -o short-monotonic").stdout if getattr(GUIDE, "pid1", None) else "")
            print("\n----- API server (tail)\n" + bt.tail(os.path.join(GUIDE.dir, "apiserver.log"), 20))
        return 0 if ok else 1
    finally:
        GUIDE.close()


if __name__ == "__main__":
    sys.exit(main())
