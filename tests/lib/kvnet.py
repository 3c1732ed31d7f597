# SPDX-License-Identifier: Apache-2.0
"""kvnetd in network namespaces: a client for io.kvegress.Net1, a runner
that starts kvnetd as user kvnetd with only CAP_NET_ADMIN and CAP_NET_RAW,
and the egress test topology (the second diagram of egress-documentation.md):

    pod 10.244.1.5 ── pod0 [node] eth0 172.16.0.2 ── peer 172.16.0.3 (other
    fd00:244:0:1::5     10.244.1.1      fd00:16::2      worker; its pod
    (and .6, ::6)       fd00:244:0:1::1                 10.244.2.7)
                        eth1 192.168.0.240 ── [lan bridge] ── ext 192.168.0.250
                             fd00:192::240                    fd00:192::250
                                                              + 198.51.100.10 (lo)

The node's own network (eth0) has no route to the external one; eth1, the
service network, is where VIPs live (VIP range 192.168.0.224/27 and
fd00:192::200/120). The node masquerades pod traffic like a CNI would
(table ip/ip6 cni, priority srcnat), and DNATs a ClusterIP 10.96.0.10:80 /
fd00:96::10:80 to ext's 198.51.100.10:8080 / fd00:192::250:8080 like
kube-proxy would.
"""

import os
import signal
import subprocess
import time
import unittest

import kvbuild
import netns
from dbus_p2p import Connection, DBusError  # noqa: F401 (re-exported)
from netns import Recorder, run

IFACE = "io.kvegress.Net1"
PATH = "/io/kvegress/Net1"

POD4, POD6 = "10.244.1.5", "fd00:244:0:1::5"
POD4_B, POD6_B = "10.244.1.6", "fd00:244:0:1::6"
NODE_POD4, NODE_POD6 = "10.244.1.1", "fd00:244:0:1::1"
NODE_SVC4, NODE_SVC6 = "192.168.0.240", "fd00:192::240"
EXT4, EXT6 = "192.168.0.250", "fd00:192::250"
FAR4 = "198.51.100.10"
PEER_POD4 = "10.244.2.7"
CLUSTER_IP4, CLUSTER_IP6 = "10.96.0.10", "fd00:96::10"
VIP4, VIP6 = "192.168.0.245", "fd00:192::245"
VIP4_B = "192.168.0.246"
VIP_RANGES = ["192.168.0.224/27", "fd00:192::200/120"]
POD_CIDRS = ["10.244.0.0/16", "fd00:244::/48"]
SVC_CIDRS = ["10.96.0.0/12", "fd00:96::/112"]
TCP_PORTS = [80, 8080]
UDP_PORTS = [53, 5060]



def mono_usec():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)


class KvnetClient(Connection):
    """io.kvegress.Net1 with Python arguments; ttl in seconds from now."""

    def _c(self, member, sig="", *args):
        return self.call(PATH, IFACE, member, sig, *args)

    def grant_vip(self, service, address, ifname, ttl=60):
        return self._c("GrantVip", "ssst", service, address, ifname, mono_usec() + int(ttl * 1e6))

    def renew(self, service, ttl=60):
        return self._c("RenewGrant", "st", service, mono_usec() + int(ttl * 1e6))

    def release_vip(self, service, address):
        return self._c("ReleaseVip", "ss", service, address)

    def set_egress(self, service, vip4="", vip6="", pods=(), ports=(), allowed=(), denied=(), excluded=()):
        return self._c("SetEgress", "sssasa(sq)asasas", service, vip4, vip6, list(pods), list(ports),
                       list(allowed), list(denied), list(excluded))

    def remove_service(self, service):
        return self._c("RemoveService", "s", service)

    def list_vips(self):
        return self._c("ListVips")[0]

    def list_egress(self):
        return self._c("ListEgress")[0]


def kvnetd_binary():
    """The kvnetd under test: the one of the build meson runs us from (kvbuild.py)."""
    return kvbuild.binary("kvnetd/kvnetd")


class Kvnetd:
    """kvnetd running inside ns as user kvnetd with only NET_ADMIN+NET_RAW."""

    def __init__(self, ns, extra_args=(), grace="3s", user="kvnetd", rundir=None):
        self.ns = ns
        self.rundir = rundir or os.path.join(ns.topo.tmpdir, "kvnetd")
        os.makedirs(self.rundir, exist_ok=True)
        run(["chown", user, self.rundir])
        os.chmod(self.rundir, 0o755)
        self.socket = os.path.join(self.rundir, "kvnetd.sock")
        self.log = os.path.join(ns.topo.tmpdir, "kvnetd.log")
        self.args = ["--socket", self.socket, "--socket-mode", "0666", "--state-dir", self.rundir,
                     "--interface", "eth1", "--grace-period", grace, "--ipv6-nodad", "--allow-uid", "0",
                     "--reconcile-interval", "2s", "--log-level", "debug", *extra_args]
        for r in VIP_RANGES:
            self.args += ["--vip-range", r]
        self.user = user
        self.proc = None

    def start(self, wait=True):
        argv = ["setpriv", "--reuid", self.user, "--regid", self.user, "--init-groups",
                "--inh-caps", "-all,+net_admin,+net_raw", "--ambient-caps", "-all,+net_admin,+net_raw",
                "--bounding-set", "-all,+net_admin,+net_raw", kvnetd_binary(), *self.args]
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.logf = open(self.log, "a")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.proc = self.ns.popen(*argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        if wait:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kvnetd exited with {self.proc.returncode}: {self.read_log()[-2000:]}")
                if os.path.exists(self.socket):
                    try:
                        self.client().close()
                        return self
                    except OSError:
                        pass
                time.sleep(0.05)
            raise RuntimeError("kvnetd did not start serving: " + self.read_log()[-2000:])
        return self

    def client(self):
        return KvnetClient(self.socket)

    def stop(self, sig=signal.SIGTERM):
        rc = self.ns.topo.kill(self.proc, sig)
        self.logf.close()
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""


class EgressTopology:
    """Builds the namespaces and addresses described in the module doc."""

    def __init__(self, topo):
        t = self.topo = topo
        self.pod, self.node, self.lan = t.netns("pod"), t.netns("node"), t.netns("lan")
        self.ext, self.peer = t.netns("ext"), t.netns("peer")

        t.veth(self.pod, "eth0", self.node, "pod0")
        self.pod.addr("eth0", POD4 + "/24")
        self.pod.addr("eth0", POD4_B + "/24")
        self.pod.addr("eth0", POD6 + "/64")
        self.pod.addr("eth0", POD6_B + "/64")
        self.pod.route("default", "via", NODE_POD4)
        self.pod.ip("-6", "route", "add", "default", "via", NODE_POD6)
        self.node.addr("pod0", NODE_POD4 + "/24")
        self.node.addr("pod0", NODE_POD6 + "/64")

        # Node network: only the other worker, which has its own pod CIDR.
        t.veth(self.node, "eth0", self.peer, "eth0")
        self.node.addr("eth0", "172.16.0.2/24")
        self.node.addr("eth0", "fd00:16::2/64")
        self.peer.addr("eth0", "172.16.0.3/24")
        self.peer.addr("eth0", "fd00:16::3/64")
        self.peer.addr("lo", PEER_POD4 + "/32")
        self.peer.route("10.244.1.0/24", "via", "172.16.0.2")
        self.node.route("10.244.2.0/24", "via", "172.16.0.3")

        # Service network: a bridge shared by the node and the external host.
        t.bridge(self.lan, "br0")
        t.veth(self.node, "eth1", self.lan, "node")
        t.veth(self.ext, "eth0", self.lan, "ext")
        t.attach(self.lan, "node", "br0")
        t.attach(self.lan, "ext", "br0")
        self.node.addr("eth1", NODE_SVC4 + "/24")
        self.node.addr("eth1", NODE_SVC6 + "/64")
        self.ext.addr("eth0", EXT4 + "/24")
        self.ext.addr("eth0", EXT6 + "/64")
        self.ext.addr("lo", FAR4 + "/32")
        self.node.route("198.51.100.0/24", "via", EXT4)
        # Learn neighbours from gratuitous ARP, as most hosts on a LAN do.
        self.ext.sysctl("net.ipv4.conf.all.arp_accept", 1)
        self.ext.sysctl("net.ipv4.conf.eth0.arp_accept", 1)

        self.node.sysctl("net.ipv4.ip_forward", 1)
        self.node.sysctl("net.ipv6.conf.all.forwarding", 1)
        # A CNI's masquerade and kube-proxy's ClusterIP DNAT.
        self.node.nft(f"""
table ip cni {{
  chain post {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
  }}
  chain pre {{ type nat hook prerouting priority dstnat; policy accept;
    ip daddr {CLUSTER_IP4} tcp dport 80 dnat to {FAR4}:8080
  }}
}}
table ip6 cni {{
  chain post {{ type nat hook postrouting priority srcnat; policy accept;
    ip6 saddr fd00:244::/48 ip6 daddr != fd00:244::/48 masquerade
  }}
  chain pre {{ type nat hook prerouting priority dstnat; policy accept;
    ip6 daddr {CLUSTER_IP6} tcp dport 80 dnat to [{EXT6}]:8080
  }}
}}
""")
        self.ext_rec = Recorder(self.ext, tcp=TCP_PORTS, udp=UDP_PORTS)
        self.peer_rec = Recorder(self.peer, tcp=TCP_PORTS, udp=UDP_PORTS)


class KvnetdTestCase(unittest.TestCase):
    """One EgressTopology and one kvnetd for the class; every test gets a client, self.c, and fails if kvnetd
    died (a dead one is started again for the next test). A subclass sets PREFIX (of its namespaces) and
    KVNETD_ARGS (keyword arguments of Kvnetd) or overrides kvnetd_args(), and may override prepare(net), run
    before kvnetd starts, and started(), run once it serves."""

    PREFIX = "kvt"
    KVNETD_ARGS = {}

    @classmethod
    def kvnetd_args(cls):
        return dict(cls.KVNETD_ARGS)

    @classmethod
    def prepare(cls, net):
        pass

    @classmethod
    def started(cls):
        pass

    @classmethod
    def setUpClass(cls):
        cls.topo = netns.Topology(cls.PREFIX)
        try:
            cls.net = EgressTopology(cls.topo)
            cls.prepare(cls.net)
            cls.kvnetd = Kvnetd(cls.net.node, **cls.kvnetd_args()).start()
            cls.started()
        except BaseException:
            cls.topo.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.kvnetd.alive():
                rc = cls.kvnetd.stop()
                assert rc == 0, f"kvnetd exited with {rc}:\n{cls.kvnetd.read_log()[-3000:]}"
        finally:
            cls.topo.cleanup()

    def setUp(self):
        if not self.kvnetd.alive():
            self.kvnetd.start()
        self.c = self.kvnetd.client()
        self.addCleanup(self.c.close)

    def remove_all_services(self):
        """Every service kvnetd holds removed: the test starts from an empty kvnetd."""
        for s in {v[0] for v in self.c.list_vips()} | {e[0] for e in self.c.list_egress()}:
            if s:
                self.c.remove_service(s)

    def tearDown(self):
        self.assertTrue(self.kvnetd.alive(), "kvnetd died:\n" + self.kvnetd.read_log()[-3000:])
