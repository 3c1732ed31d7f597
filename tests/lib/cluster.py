#!/usr/bin/env python3
"""The simulated cluster: network namespaces on one machine, the test Kubernetes API server, and the three
daemons per node, as in the documentation's second diagram (tests/cluster/README.md draws it).

  nodes' network 172.16.0.0/24, fd00:172:16::/64 (bridge "brn"): the API server (.2) and the nodes' eth0 (.11-.13).
      It has no route to the external host.
  service network 192.168.0.0/24, fd00:192:168::/64 (bridge "brs"): the nodes' eth1 (.11-.13), the VIPs
      (192.168.0.240/29, fd00:192:168::240/124) and the external host (.250, .251, ::250, ::251, plus a second
      network 198.51.100.1/24 and 2001:db8:100::1/64 that the nodes route through it).
  node N: pods on bridge cni0, pod CIDR 10.244.N.0/24 and fd00:10:244:N::/64, routes to the other nodes' pod
      CIDRs over eth0, a CNI-like masquerade for pod traffic leaving the cluster, a kube-proxy-like DNAT of the
      ClusterIP 10.96.0.50 / fd00:10:96::50 to the external host, and kvnetd, kvelectd and kvpd, each as its own
      user (kvnetd with only CAP_NET_ADMIN and CAP_NET_RAW).
  external host: records the source of every TCP connection, UDP datagram and ICMP echo (agents/recorder.py).

Objects are created with kubectl against the API server, as an operator would; the harness plays the parts
of the kubelet (pod status) and the EndpointSlice controller. Everything is removed by close(), which also runs
at exit and on SIGINT/SIGTERM; namespaces left by a run that died are swept at the next start.

  PYTHONPATH=tests/lib python3 tests/lib/cluster.py --build-dir build selftest    # topology checks, no daemons
  PYTHONPATH=tests/lib python3 tests/lib/cluster.py --build-dir build shell       # start it all and wait (Ctrl-C tears down)
Standard library only.
"""
import argparse
import atexit
import base64
import grp
import http.client
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
from apiserver import ApiServer
from netns import AddrWatcher, CmdError, ip, ip_batch, kill_netns, ns_socket, run, sweep_stale  # noqa: F401 (CmdError re-exported)

RBAC_MANIFEST = os.path.join(ROOT, "deploy", "kubernetes", "rbac.yaml")
SERVICE_ACCOUNT = ("kube-system", "kvegress")  # the one deploy/kubernetes/rbac.yaml creates and binds
RECORDER = os.path.join(HERE, "agents", "recorder.py")
PROBE = os.path.join(HERE, "agents", "probe.py")
PY = sys.executable or "python3"

# Addressing (see the module doc string).
API_IP = "172.16.0.2"
API_PORT = 6443
EXT4, EXT4B = "192.168.0.250", "192.168.0.251"
EXT6, EXT6B = "fd00:192:168::250", "fd00:192:168::251"
FAR4, FAR6 = "198.51.100.1", "2001:db8:100::1"  # a second network behind the external host
FAR4_NET, FAR6_NET = "198.51.100.0/24", "2001:db8:100::/64"
VIP_RANGE4, VIP_RANGE6 = "192.168.0.240/29", "fd00:192:168::240/124"
VIPS4 = ["192.168.0.%d" % i for i in range(240, 248)]
VIPS6 = ["fd00:192:168::%x" % i for i in range(0x240, 0x250)]
POD_CIDR4, POD_CIDR6 = "10.244.0.0/16", "fd00:10:244::/56"
SVC_CIDR4, SVC_CIDR6 = "10.96.0.0/12", "fd00:10:96::/112"
CLUSTERIP4, CLUSTERIP6 = "10.96.0.50", "fd00:10:96::50"  # DNATed to the external host by each node
EXT_TCP_PORTS = [80, 8080, 9000]
EXT_UDP_PORTS = [5060, 9000]
POD_PORT = 9000
SERVICE_IF = "eth1"


def node_ip4(n):
    return "172.16.0.%d" % (10 + n)


def node_ip6(n):
    return "fd00:172:16::%d" % (10 + n)


def node_svc4(n):
    return "192.168.0.%d" % (10 + n)


def node_svc6(n):
    return "fd00:192:168::%d" % (10 + n)


def pod_cidr4(n):
    return "10.244.%d.0/24" % n


def pod_cidr6(n):
    return "fd00:10:244:%d::/64" % n


def _uid(user):
    return pwd.getpwnam(user).pw_uid


def _gid(group):
    return grp.getgrnam(group).gr_gid


class Proc:
    """A process the harness started (its log file is kept for the failure report)."""

    def __init__(self, name, cmd, log_path, env=None, ns=None):
        self.name, self.log_path = name, log_path
        full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
        self.cmd = full
        self.log = open(log_path, "ab", buffering=0)
        self.log.write(("=== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(full))).encode())
        # ip netns exec and setpriv exec into the next program, so self.p.pid is the program's own pid.
        self.p = subprocess.Popen(full, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        if self.alive():
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals and waits; SIGKILL after timeout. Returns the exit code."""
        self.send(sig)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.p.wait(5)
        self.log.write(("=== %s: exit %s\n" % (time.strftime("%H:%M:%S"), self.p.returncode)).encode())
        return self.p.returncode

    def close(self):
        if self.alive():
            self.stop(signal.SIGTERM, 5)
        self.log.close()


class Pod:
    def __init__(self, cluster, name, node, labels, k8s_ns, index, dual):
        self.cluster, self.name, self.node, self.labels = cluster, name, node, dict(labels)
        self.k8s_ns = k8s_ns
        self.netns = "%s-pod-%s" % (cluster.prefix, name)
        self.ip4 = "10.244.%d.%d" % (node.n, 10 + index)
        self.ip6 = "fd00:10:244:%d::%x" % (node.n, 0x10 + index) if dual else None
        self.host_if = "vp%d" % index
        self.recorder = None
        self.log = os.path.join(cluster.dir, "pod-%s-recorder.jsonl" % name)
        # Its endpoint's conditions in the harness's EndpointSlices (set_endpoint_conditions).
        self.conditions = {"ready": True, "serving": True, "terminating": False}

    @property
    def ips(self):
        return [self.ip4] + ([self.ip6] if self.ip6 else [])

    def probe(self, probes, timeout=2.0):
        """Runs probes (dicts: proto, dst, port, tag) from inside the pod; returns one result dict each."""
        p = run([PY, PROBE, "batch", json.dumps(probes), "--timeout", str(timeout)], ns=self.netns,
                timeout=30 + len(probes) * (timeout + 1))
        return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]

    def stream(self, dst, tcp=None, udp=None, icmp=False, interval=0.05, duration=60, tag=None):
        """Starts a continuous stream (agents/probe.py stream) from the pod; returns the Proc (stdout = results)."""
        cmd = [PY, PROBE, "stream", "--dst", dst, "--interval", str(interval), "--duration", str(duration),
               "--tag", tag or ("stream %s" % self.name)]
        if tcp:
            cmd += ["--tcp", str(tcp)]
        if udp:
            cmd += ["--udp", str(udp)]
        if icmp:
            cmd += ["--icmp"]
        path = os.path.join(self.cluster.dir, "stream-%s-%d.jsonl" % (self.name, len(self.cluster.procs)))
        p = Proc("stream-%s" % self.name, cmd, path, ns=self.netns)
        self.cluster.procs.append(p)
        return p

    def flows(self, dst, port, interval=0.005, duration=60, tag=None, sport_base=0, sport_count=10000):
        """A new UDP flow (fresh source port; sport_base and up, sport_count of them, if given) every interval
        from the pod (agents/probe.py flows); returns the Proc (SIGTERM stops it)."""
        cmd = [PY, PROBE, "flows", "--dst", dst, "--port", str(port), "--interval", str(interval),
               "--duration", str(duration), "--tag", tag or ("flows %s" % self.name),
               "--sport-base", str(sport_base), "--sport-count", str(sport_count)]
        path = os.path.join(self.cluster.dir, "flows-%s-%d.jsonl" % (self.name, len(self.cluster.procs)))
        p = Proc("flows-%s" % self.name, cmd, path, ns=self.netns)
        self.cluster.procs.append(p)
        return p

    def records(self, **match):
        return _read_records(self.log, **match)

    def hold(self, dst, port, interval=0.1, tag=None):
        """One long-lived TCP connection to dst:port (agents/probe.py hold); returns the Proc (stdout = one JSON
        line per answer; SIGTERM closes it cleanly)."""
        cmd = [PY, PROBE, "hold", "--dst", dst, "--port", str(port), "--interval", str(interval),
               "--tag", tag or ("hold %s" % self.name)]
        path = os.path.join(self.cluster.dir, "hold-%s-%d.jsonl" % (self.name, len(self.cluster.procs)))
        p = Proc("hold-%s" % self.name, cmd, path, ns=self.netns)
        p.path = path
        self.cluster.procs.append(p)
        return p


def _read_records(path, since=None, **match):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if since is not None and r["t"] < since:
                    continue
                if all((r.get(k) in v) if isinstance(v, (list, tuple, set)) else r.get(k) == v
                       for k, v in match.items()):
                    out.append(r)
    except FileNotFoundError:
        pass
    return out


class Node:
    def __init__(self, cluster, n):
        self.cluster, self.n = cluster, n
        self.name = "node%d" % n
        self.netns = "%s-%s" % (cluster.prefix, self.name)
        self.dir = os.path.join(cluster.dir, self.name)
        self.procs = {}
        self.pod_index = 0

    # ----------------------------------------------------------------------------------- daemons
    def _paths(self):
        d = self.dir
        return {
            "kvnetd_sock": os.path.join(d, "run", "kvnetd", "kvnetd.sock"),
            "kvelectd_sock": os.path.join(d, "run", "kvelectd", "kvelectd.sock"),
            "kvnetd_state": os.path.join(d, "state", "kvnetd"),
            "kvpd_sock": os.path.join(d, "run", "kvpd", "kvpd.sock"),
            "kubeconfig_kvelectd": os.path.join(d, "kubeconfig-kvelectd"),
            "kubeconfig_kvpd": os.path.join(d, "kubeconfig-kvpd"),
        }

    def prepare_daemon_dirs(self):
        """Directories and credentials as systemd would give them: RuntimeDirectory= owned by each daemon
        (group kvegress so kvpd reaches the sockets), a kubeconfig per daemon readable only by it."""
        p = self._paths()
        # setgid: the sockets created inside belong to group kvegress (what SocketGroup= does in the units).
        dirs = [("run/kvnetd", "kvnetd", 0o2750), ("run/kvelectd", "kvelectd", 0o2750),
                ("state/kvnetd", "kvnetd", 0o700)]
        if self.cluster.kvpd_socket:
            dirs.append(("run/kvpd", "kvpd", 0o2750))  # kvpd.socket's directory (kvctl reads kvpd there)
        for sub, user, mode in dirs:
            path = os.path.join(self.dir, sub)
            os.makedirs(path, exist_ok=True)
            os.chown(path, _uid(user), _gid("kvegress"))
            os.chmod(path, mode)
        for d in ("run", "state"):
            os.chmod(os.path.join(self.dir, d), 0o755)
        for user in ("kvelectd", "kvpd"):
            path = p["kubeconfig_" + user]
            self.cluster.write_kubeconfig(path, user="%s-%s" % (user, self.name))
            os.chown(path, _uid(user), _gid(user))
            os.chmod(path, 0o600)

    def daemon_cmd(self, which):
        c = self.cluster
        p = self._paths()
        binary = c.binaries[which]
        if which == "kvnetd":
            args = [binary, "--socket", p["kvnetd_sock"], "--socket-mode", "0660", "--allow-uid", "kvpd"]
            for r in c.vip_ranges:
                args += ["--vip-range", r]
            args += ["--interface", SERVICE_IF, "--state-dir", p["kvnetd_state"], "--log-level", "debug"]
            args += list(c.daemon_args.get("kvnetd", ()))
            return ["setpriv", "--reuid", "kvnetd", "--regid", "kvnetd", "--init-groups",
                    "--inh-caps", "-all,+net_admin,+net_raw", "--ambient-caps", "+net_admin,+net_raw",
                    "--bounding-set", "-all,+net_admin,+net_raw", "--"] + args
        if which == "kvelectd":
            ld, rd, rp = c.lease
            args = [binary, "--socket", p["kvelectd_sock"], "--allow-uid", "kvpd",
                    "--kubeconfig", p["kubeconfig_kvelectd"], "--node-name", self.name,
                    "--lease-duration", ms(ld), "--renew-deadline", ms(rd), "--retry-period", ms(rp),
                    "--log-level", "debug"]
            return ["setpriv", "--reuid", "kvelectd", "--regid", "kvelectd", "--init-groups",
                    "--inh-caps", "-all", "--bounding-set", "-all", "--"] + args
        if which == "kvpd":
            return ["setpriv", "--reuid", "kvpd", "--regid", "kvpd", "--init-groups",
                    "--inh-caps", "-all", "--bounding-set", "-all", "--", binary]
        raise ValueError(which)

    def daemon_env(self, which):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("vip_", "egress_", "KVEGRESS_", "svc_")) or k in ("KUBECONFIG", "NOTIFY_SOCKET"):
                del env[k]
        p = self._paths()
        ld, rd, rp = self.cluster.lease
        env.update({"vip_nodename": self.name, "KVEGRESS_LOG_TIME": "1"})  # log lines start with the UTC time
        if which == "kvpd":
            env.update({
                "vip_servicesinterface": SERVICE_IF,
                "egress_podcidr": "%s,%s" % (POD_CIDR4, POD_CIDR6),
                "egress_servicecidr": "%s,%s" % (SVC_CIDR4, SVC_CIDR6),
                "KVEGRESS_KUBECONFIG": p["kubeconfig_kvpd"],
                "KVEGRESS_KVNETD_SOCKET": p["kvnetd_sock"],
                "KVEGRESS_KVELECTD_SOCKET": p["kvelectd_sock"],
                "KVEGRESS_LOG_LEVEL": "debug",
            })
            if self.cluster.kvpd_socket:
                env["KVEGRESS_KVPD_SOCKET"] = p["kvpd_sock"]
        env.update(self.cluster.extra_env.get(which, {}))
        return env

    def start_daemon(self, which, wait=True):
        old = self.procs.get(which)
        if old and old.alive():
            raise RuntimeError("%s already runs on %s" % (which, self.name))
        log = os.path.join(self.dir, "%s.log" % which)
        sock = self._paths().get("%s_sock" % which)
        if sock and os.path.exists(sock):
            os.unlink(sock)  # left by a killed predecessor
        proc = Proc("%s/%s" % (self.name, which), self.daemon_cmd(which), log, env=self.daemon_env(which),
                    ns=self.netns)
        self.procs[which] = proc
        self.cluster.procs.append(proc)
        if wait and which in ("kvnetd", "kvelectd"):
            sock = self._paths()["%s_sock" % which]
            self.cluster.wait(lambda: os.path.exists(sock) or not proc.alive(), 20,
                              "%s socket %s" % (which, sock))
            if not proc.alive():
                raise RuntimeError("%s on %s exited with %s:\n%s" % (which, self.name, proc.p.returncode,
                                                                     tail(proc.log_path)))
        return proc

    def start_daemons(self):
        self.prepare_daemon_dirs()
        for which in ("kvnetd", "kvelectd", "kvpd"):
            if which in self.cluster.daemons:
                self.start_daemon(which)

    def stop_daemons(self, sig=signal.SIGTERM, timeout=10.0):
        """kvpd first (it withdraws and releases), then kvelectd, then kvnetd: systemd's order at shutdown."""
        codes = {}
        for which in ("kvpd", "kvelectd", "kvnetd"):
            p = self.procs.get(which)
            if p and p.alive():
                codes[which] = p.stop(sig, timeout)
        return codes

    def kill_daemons(self):
        """SIGKILL to all three at once (a crash)."""
        for p in self.procs.values():
            p.send(signal.SIGKILL)
        for p in self.procs.values():
            try:
                p.p.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def daemons_alive(self):
        return {k: p.alive() for k, p in self.procs.items()}

    # ----------------------------------------------------------------------------------- network views
    def addresses(self, ifname=SERVICE_IF):
        out = json.loads(ip(self.netns, "-j", "addr", "show", "dev", ifname).stdout or "[]")
        return [a["local"] for link in out for a in link.get("addr_info", [])]

    def vips(self):
        return [a for a in self.addresses() if self.cluster.is_vip(a)]

    def nft_ruleset(self):
        return run(["nft", "list", "ruleset"], ns=self.netns).stdout

    def nft_tables(self):
        out = run(["nft", "-j", "list", "tables"], ns=self.netns).stdout
        return [(t["table"]["family"], t["table"]["name"]) for t in json.loads(out)["nftables"] if "table" in t]

    def nft_monitor(self):
        """`nft monitor` in the node's namespace (every ruleset change, and a "# new generation N by process
        PID (NAME)" line per committed transaction); returns the Proc (its log_path holds the output)."""
        path = os.path.join(self.dir, "nft-monitor-%d.log" % len(self.cluster.procs))
        p = Proc("nft-monitor-%s" % self.name, ["stdbuf", "-oL", "nft", "monitor"], path, ns=self.netns)
        self.cluster.procs.append(p)
        return p

    def mac(self, ifname=SERVICE_IF):
        return json.loads(ip(self.netns, "-j", "link", "show", "dev", ifname).stdout)[0]["address"]

    def set_links(self, up):
        for ifname in ("eth0", "eth1"):
            ip(self.netns, "link", "set", ifname, "up" if up else "down")

    def cut_links(self, cut=True):
        """Cuts (or restores) the node's cables at the switch: its interfaces stay up, nothing gets through."""
        sw = self.cluster.sw
        for port in ("n%dn" % self.n, "n%ds" % self.n):
            ip(sw, "link", "set", port, "down" if cut else "up")

    def conntrack(self):
        return run(["conntrack", "-L"], ns=self.netns, check=False).stdout


class Cluster:
    def __init__(self, build_dir=None, nodes=3, daemons=("kvnetd", "kvelectd", "kvpd"), lease=(3, 2, 0.5),
                 binaries=None, log=None, extra_env=None, keep_dir=False, endpointslice_controller=False,
                 vip_ranges=(VIP_RANGE4, VIP_RANGE6), daemon_args=None, kvpd_socket=False):
        self.prefix = "kvc%d-%d" % (os.getpid(), Cluster._count)
        Cluster._count += 1
        self.n_nodes = nodes
        self.daemons = tuple(daemons or ())
        self.lease = lease
        self.extra_env = extra_env or {}
        # kvnetd's --vip-range (a wider one for many Services), extra arguments per daemon ({"kvnetd": [...]}),
        # and kvpd's own socket (what kvctl reads; kvpd.socket gives it in production).
        self.vip_ranges = tuple(vip_ranges)
        self._vip_nets = [ipaddress.ip_network(r) for r in self.vip_ranges]
        self.daemon_args = dict(daemon_args or {})
        self.kvpd_socket = kvpd_socket
        self.keep_dir = keep_dir or bool(os.environ.get("KVC_KEEP"))  # KVC_KEEP=1: keep logs and state
        # True: the API server's own EndpointSlice controller derives the slices from the Pods (as in a real
        # cluster); False: the harness writes them with kubectl (full control over their contents and timing).
        self.endpointslice_controller = endpointslice_controller
        self.say = log or (lambda msg: None)
        self.binaries = dict(binaries or {})
        if build_dir:
            for d in ("kvnetd", "kvelectd", "kvpd"):
                self.binaries.setdefault(d, os.path.abspath(os.path.join(build_dir, d, d)))
        for d in self.daemons:
            if not os.access(self.binaries.get(d, ""), os.X_OK):
                raise RuntimeError("no %s binary (looked for %s)" % (d, self.binaries.get(d)))
        self.dir = tempfile.mkdtemp(prefix="kvcluster-")
        os.chmod(self.dir, 0o755)
        self.sw = "%s-sw" % self.prefix
        self.api_ns = "%s-api" % self.prefix
        self.ext = "%s-ext" % self.prefix
        self.namespaces = []
        self.procs = []
        self.nodes = [Node(self, n) for n in range(1, nodes + 1)]
        self.pods = {}
        self.services = {}
        self.closed = False
        self.addr_watch = None
        self.tcpdump = None
        self.ipc_problem = None
        self._tokens = {}
        _LIVE.add(self)

    _count = 0

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self):
        """Builds the topology, starts the API server, registers the Nodes and starts the daemons."""
        try:
            t0 = time.time()
            sweep_stale("kvc")
            self._build_topology()
            self.say("topology up (%.1fs)" % (time.time() - t0))
            self._start_recorder()
            self._start_apiserver()
            self._register_nodes()
            self.say("API server and nodes ready (%.1fs)" % (time.time() - t0))
            self.addr_watch = AddrWatcher([n.netns for n in self.nodes])
            if self.daemons:
                self._install_binaries()
            for node in self.nodes:
                if self.daemons:
                    node.start_daemons()
            self.ipc_problem = self.check_ipc(self.nodes[0]) if "kvpd" in self.daemons else None
            if self.ipc_problem:
                self.say("WARNING: " + self.ipc_problem)
            if self.daemons:
                self.say("daemons started on %d nodes (%.1fs)" % (len(self.nodes), time.time() - t0))
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        # The daemons first, the way systemd stops them, so that their own clean-up runs.
        for node in self.nodes:
            try:
                node.stop_daemons(signal.SIGTERM, 5)
            except Exception as e:  # noqa: BLE001 - clean up whatever happens
                sys.stderr.write("cluster: stopping daemons on %s: %s\n" % (node.name, e))
        for p in reversed(self.procs):
            try:
                p.close()
            except Exception:  # noqa: BLE001
                pass
        if self.addr_watch:
            self.addr_watch.close()
        for ns in reversed(self.namespaces):
            kill_netns(ns)
        self.namespaces = []
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def is_vip(self, addr):
        """Whether addr lies in one of kvnetd's VIP ranges."""
        try:
            a = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(a.version == n.version and a in n for n in self._vip_nets)

    def restart_apiserver(self, down=0.0, sig=signal.SIGTERM):
        """Stops the API server (sig; SIGKILL loses what its debounced save had not written yet), waits down
        seconds, and starts it again on the same address with the objects it saved (no --reset)."""
        self.apiserver.stop(sig)
        time.sleep(down)
        self.apiserver.args = [a for a in self.apiserver.args if a != "--reset"]
        self.apiserver.start()

    def _install_binaries(self):
        """Copies the daemons' binaries where their users can read them (a checkout under a private home
        directory would not be), as a package would install them."""
        bindir = os.path.join(self.dir, "bin")
        os.makedirs(bindir, exist_ok=True)
        for d in self.daemons:
            dst = os.path.join(bindir, d)
            shutil.copy2(self.binaries[d], dst)
            os.chmod(dst, 0o755)
            self.binaries[d] = dst
        lib = os.path.join(ROOT, "tests", "lib", "dbus_p2p.py")
        if os.path.exists(lib):
            shutil.copy2(lib, os.path.join(bindir, "dbus_p2p.py"))
            os.chmod(os.path.join(bindir, "dbus_p2p.py"), 0o644)

    def check_ipc(self, node):
        """As user kvpd, calls a read-only method of kvnetd and of kvelectd, the way kvpd will: a daemon that
        refuses its legitimate client is reported here, once and precisely, instead of as egress timeouts.
        Returns None, or what was refused."""
        bindir = os.path.join(self.dir, "bin")
        if not os.path.exists(os.path.join(bindir, "dbus_p2p.py")):
            return None
        p = node._paths()
        code = """
import sys
sys.path.insert(0, %r)
from dbus_p2p import Connection, DBusError
bad = []
for sock, path, iface, member in ((%r, "/io/kvegress/Net1", "io.kvegress.Net1", "ListVips"),
                                  (%r, "/io/kvegress/Elect1", "io.kvegress.Elect1", "ListCampaigns")):
    try:
        with Connection(sock, timeout=10) as c:
            c.call(path, iface, member)
    except (DBusError, OSError) as e:
        bad.append("%%s.%%s on %%s: %%s" %% (iface, member, sock, e))
print("\\n".join(bad))
sys.exit(1 if bad else 0)
""" % (bindir, p["kvnetd_sock"], p["kvelectd_sock"])
        r = run(["setpriv", "--reuid", "kvpd", "--regid", "kvpd", "--init-groups", "--", "/usr/bin/python3", "-c",
                 code], ns=node.netns, check=False, timeout=30)
        if r.returncode != 0:
            return ("a daemon refuses kvpd (uid %d, its allowed client) on %s:\n%s%s" %
                    (_uid("kvpd"), node.name, r.stdout, r.stderr))
        return None

    def logs(self, lines=200):
        """The tail of every daemon's log (for a failure report)."""
        out = []
        for node in self.nodes:
            for which in ("kvnetd", "kvelectd", "kvpd"):
                path = os.path.join(node.dir, "%s.log" % which)
                if os.path.exists(path):
                    out.append("----- %s/%s (%s)\n%s" % (node.name, which, path, tail(path, lines)))
        api = os.path.join(self.dir, "api", "server.log")
        if os.path.exists(api):
            out.append("----- apiserver\n%s" % tail(api, 40))
        return "\n".join(out)

    # ------------------------------------------------------------------------------------------ topology
    def _netns(self, name):
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        ip(name, "link", "set", "lo", "up")
        return name

    def _veth(self, ns_a, name_a, ns_b, name_b):
        ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)

    def _build_topology(self):
        sw = self._netns(self.sw)
        ip_batch(sw, ["link add brn type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
                      "link add brs type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
                      "link set brn up", "link set brs up"])
        run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ns=sw)

        # API server on the nodes' network.
        api = self._netns(self.api_ns)
        self._veth(sw, "api", api, "eth0")
        ip_batch(sw, ["link set api master brn up"])
        ip_batch(api, ["addr add %s/24 dev eth0" % API_IP, "addr add fd00:172:16::2/64 dev eth0 nodad",
                       "link set eth0 up"])

        # External host on the service network.
        ext = self._netns(self.ext)
        self._veth(sw, "ext", ext, "eth0")
        ip_batch(sw, ["link set ext master brs up"])
        ip_batch(ext, ["addr add %s/24 dev eth0" % EXT4, "addr add %s/24 dev eth0" % EXT4B,
                       "addr add %s/64 dev eth0 nodad" % EXT6, "addr add %s/64 dev eth0 nodad" % EXT6B,
                       "addr add %s/24 dev eth0" % FAR4, "addr add %s/64 dev eth0 nodad" % FAR6,
                       "link set eth0 up"])

        for node in self.nodes:
            self._netns(node.netns)
            os.makedirs(node.dir, exist_ok=True)
            os.chmod(node.dir, 0o755)
            for k, v in (("net.ipv4.ip_forward", 1), ("net.ipv6.conf.all.forwarding", 1)):
                run(["sysctl", "-qw", "%s=%s" % (k, v)], ns=node.netns)
            ip_batch(node.netns, [
                # A fixed MAC, as the CNI bridge plugin sets: a bridge without one takes its lowest port's,
                # which changes when a pod's veth goes and stalls the other pods' connections.
                "link add cni0 address 02:00:0a:f4:%02x:01 type bridge stp_state 0 forward_delay 0 "
                "mcast_snooping 0" % node.n,
                "addr add 10.244.%d.1/24 dev cni0" % node.n,
                "addr add fd00:10:244:%d::1/64 dev cni0 nodad" % node.n, "link set cni0 up"])
            self._wire_node(node)
            self.install_cni(node)

    def _wire_node(self, node):
        """The node's two cables (eth0 on the nodes' network, eth1 on the service network), addresses, routes."""
        n, ns, sw = node.n, node.netns, self.sw
        self._veth(sw, "n%dn" % n, ns, "eth0")
        self._veth(sw, "n%ds" % n, ns, "eth1")
        ip_batch(sw, ["link set n%dn master brn up" % n, "link set n%ds master brs up" % n])
        cmds = ["addr add %s/24 dev eth0" % node_ip4(n), "addr add %s/64 dev eth0 nodad" % node_ip6(n),
                "addr add %s/24 dev eth1" % node_svc4(n), "addr add %s/64 dev eth1 nodad" % node_svc6(n),
                "link set eth0 up", "link set eth1 up",
                "route add %s via %s" % (FAR4_NET, EXT4), "route add %s via %s" % (FAR6_NET, EXT6)]
        for m in self.nodes:
            if m.n != n:
                cmds += ["route add %s via %s" % (pod_cidr4(m.n), node_ip4(m.n)),
                         "route add %s via %s" % (pod_cidr6(m.n), node_ip6(m.n))]
        ip_batch(ns, cmds)

    def power_off(self, node):
        """The node dies: its three daemons are SIGKILLed and its network interfaces vanish with whatever
        was bound on them (a crashed machine neither holds an address nor answers ARP)."""
        node.kill_daemons()
        ip(node.netns, "link", "del", "eth0", check=False)
        ip(node.netns, "link", "del", "eth1", check=False)

    def power_on(self, node, daemons=True):
        """The node boots again: fresh interfaces, no egress table, no conntrack, an empty /run (none of it
        survives a reboot), then the daemons."""
        run(["nft", "delete", "table", "inet", "kvegress"], ns=node.netns, check=False)
        run(["conntrack", "-F"], ns=node.netns, check=False)
        shutil.rmtree(os.path.join(node.dir, "state"), ignore_errors=True)
        shutil.rmtree(os.path.join(node.dir, "run"), ignore_errors=True)
        self._wire_node(node)
        if daemons:
            node.start_daemons()

    def install_cni(self, node):
        """A flannel-like masquerade for pod traffic leaving the cluster and a kube-proxy-like DNAT of one
        ClusterIP to the external host (to check that egress exclusions use the original destination)."""
        rules = """
table inet kvc_cni {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr %(pod4)s ip daddr != %(pod4)s ip daddr != 224.0.0.0/4 masquerade
        ip6 saddr %(pod6)s ip6 daddr != %(pod6)s ip6 daddr != ff00::/8 masquerade
    }
}
table inet kvc_kubeproxy {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr %(cip4)s tcp dport 80 dnat ip to %(ext4)s:80
        ip daddr %(cip4)s udp dport 9000 dnat ip to %(ext4)s:9000
        ip6 daddr %(cip6)s tcp dport 80 dnat ip6 to [%(ext6)s]:80
        ip6 daddr %(cip6)s udp dport 9000 dnat ip6 to [%(ext6)s]:9000
    }
}
""" % {"pod4": POD_CIDR4, "pod6": POD_CIDR6, "cip4": CLUSTERIP4, "cip6": CLUSTERIP6, "ext4": EXT4, "ext6": EXT6}
        run(["nft", "-f", "-"], ns=node.netns, input=rules)

    def reinstall_cni(self, node):
        """Deletes and re-creates the CNI's masquerade (as a CNI restart does): its hook is then registered
        after the egress chain's."""
        run(["nft", "delete", "table", "inet", "kvc_cni"], ns=node.netns)
        run(["nft", "delete", "table", "inet", "kvc_kubeproxy"], ns=node.netns)
        self.install_cni(node)

    def _start_recorder(self):
        self.ext_log = os.path.join(self.dir, "ext-recorder.jsonl")
        ready = os.path.join(self.dir, "ext-recorder.ready")
        cmd = [PY, RECORDER, "--log", self.ext_log, "--icmp", "--ready", ready]
        for p in EXT_TCP_PORTS:
            cmd += ["--tcp", str(p)]
        for p in EXT_UDP_PORTS:
            cmd += ["--udp", str(p)]
        self.recorder = Proc("ext-recorder", cmd, os.path.join(self.dir, "ext-recorder.log"), ns=self.ext)
        self.procs.append(self.recorder)
        self.wait(lambda: os.path.exists(ready) or not self.recorder.alive(), 15, "external host recorder")
        if not self.recorder.alive():
            raise RuntimeError("recorder died:\n" + tail(self.recorder.log_path))

    # ------------------------------------------------------------------------------------------ API server
    def _start_apiserver(self):
        self.api_dir = os.path.join(self.dir, "api")
        os.makedirs(self.api_dir)
        # every request, with who made it: tests/cluster/test_rbac.py checks the daemons' against the manifest
        self.audit_log = os.path.join(self.dir, "audit.log")
        args = ["--san", API_IP, "--reset", "--audit-log", self.audit_log]
        if self.endpointslice_controller:
            args.append("--endpointslice-controller")
        self.apiserver = ApiServer(args=args, state_dir=self.api_dir, bind=API_IP, port=API_PORT, ns=self.api_ns,
                                   log_path=os.path.join(self.dir, "apiserver.log"), start=False)
        self.procs.append(self.apiserver)
        self.apiserver.start()
        self.api_url = self.apiserver.url
        self.admin_token = self.apiserver.token
        self.kubeconfig = self.apiserver.kubeconfig_path
        self.kube_cache = os.path.join(self.dir, "kube-cache")
        self.ssl_ctx = self.apiserver.ctx
        # The daemons get what an installation gives them: the shipped RBAC manifest, and a TokenRequest token
        # of its ServiceAccount (one per daemon and node, as `kubectl create token` mints them).
        self.kubectl("apply", "-f", RBAC_MANIFEST)
        for node in self.nodes:
            for user in ("kvelectd", "kvpd"):
                self._tokens["%s-%s" % (user, node.name)] = self.create_token()

    def create_token(self, seconds=86400):
        """A new token of the kvegress ServiceAccount (TokenRequest)."""
        ns, sa = SERVICE_ACCOUNT
        status, obj = self.api("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (ns, sa),
                               {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": seconds}})
        if status != 201:
            raise RuntimeError("TokenRequest for %s/%s: HTTP %s %s" % (ns, sa, status, obj))
        return obj["status"]["token"]

    def revoke_token(self, token):
        """From now on the token gets 401 (the API server's admin API; a rotation test revokes the old one)."""
        status, obj = self.api("POST", "/_kvtest/revoke-token", {"token": token})
        if status != 200:
            raise RuntimeError("revoke-token: HTTP %s %s" % (status, obj))

    def write_kubeconfig(self, path, user):
        with open(os.path.join(self.api_dir, "ca.crt"), "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        with open(path, "w") as f:
            f.write("""apiVersion: v1
kind: Config
clusters:
- name: kvc
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: kvc
  context: {cluster: kvc, user: %s}
current-context: kvc
""" % (self.api_url, ca, user, self._tokens[user], user))

    def kubectl(self, *args, input=None, check=True, timeout=60):
        """kubectl, run on the API server's network (the harness is the operator)."""
        cmd = ["kubectl", "--kubeconfig", self.kubeconfig, "--cache-dir", self.kube_cache] + list(args)
        p = run(cmd, ns=self.api_ns, input=input, check=check, timeout=timeout)
        return p.stdout if check else p

    def kubectl_json(self, *args):
        return json.loads(self.kubectl(*(list(args) + ["-o", "json"])))

    def apply(self, *objs):
        """kubectl apply of one or more objects (dicts)."""
        # A stream of JSON objects (a kind: List would need the server's OpenAPI v2, which it does not serve).
        return self.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in objs))

    def api(self, method, path, body=None, timeout=10, ctype="application/json"):
        """A direct HTTPS request to the API server (quick polling; the checks an operator makes use kubectl).
        ctype: the body's content type (application/merge-patch+json for a merge PATCH)."""
        ctx = self.ssl_ctx

        class Conn(http.client.HTTPSConnection):
            def connect(conn):  # noqa: N805 - the connection, not the cluster
                s = ns_socket(self.api_ns, socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect((API_IP, API_PORT))
                conn.sock = ctx.wrap_socket(s, server_hostname=API_IP)

        c = Conn(API_IP, API_PORT, context=ctx, timeout=timeout)
        try:
            headers = {"Authorization": "Bearer %s" % self.admin_token, "Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = ctype
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            c.close()

    def get(self, path):
        status, obj = self.api("GET", path)
        return obj if status == 200 else None

    def _register_nodes(self):
        objs = []
        for node in self.nodes:
            objs.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name,
                                                           "kubernetes.io/os": "linux"}},
                "spec": {"podCIDR": pod_cidr4(node.n), "podCIDRs": [pod_cidr4(node.n), pod_cidr6(node.n)]},
            })
        self.apply(*objs)
        for node in self.nodes:
            # The kubelet's part: the node's addresses and Ready condition.
            status = {"status": {
                "addresses": [{"type": "InternalIP", "address": node_ip4(node.n)},
                              {"type": "InternalIP", "address": node_ip6(node.n)},
                              {"type": "Hostname", "address": node.name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}]}}
            self.kubectl("patch", "node", node.name, "--subresource=status", "--type=merge", "-p",
                         json.dumps(status))

    # ------------------------------------------------------------------------------------------ pods
    def node(self, name_or_n):
        for n in self.nodes:
            if n.name == name_or_n or n.n == name_or_n:
                return n
        raise KeyError(name_or_n)

    def add_pod(self, name, node, labels=None, k8s_ns="default", dual=True, recorder=True, on_netns_ready=None,
                conditions=None):
        """A pod namespace behind node (veth into cni0), registered with kubectl, status set as the kubelet
        would, and the EndpointSlices of every Service that selects it updated. on_netns_ready(pod) runs once
        the pod's network works, before the API hears of it (an application that starts talking at once)."""
        node = self.node(node) if not isinstance(node, Node) else node
        node.pod_index += 1
        pod = Pod(self, name, node, labels or {"app": name}, k8s_ns, node.pod_index, dual)
        if conditions:
            pod.conditions.update(conditions)
        self._netns(pod.netns)
        self._veth(node.netns, pod.host_if, pod.netns, "eth0")
        ip_batch(node.netns, ["link set %s master cni0 up" % pod.host_if])
        cmds = ["addr add %s/24 dev eth0" % pod.ip4, "link set eth0 up",
                "route add default via 10.244.%d.1" % node.n]
        if pod.ip6:
            cmds += ["addr add %s/64 dev eth0 nodad" % pod.ip6, "route add default via fd00:10:244:%d::1" % node.n]
        ip_batch(pod.netns, cmds)
        if recorder:
            ready = pod.log + ".ready"
            pod.recorder = Proc("recorder-%s" % name, [PY, RECORDER, "--log", pod.log, "--tcp", str(POD_PORT),
                                                       "--udp", str(POD_PORT), "--icmp", "--ready", ready],
                                pod.log + ".stderr", ns=pod.netns)
            self.procs.append(pod.recorder)
            self.wait(lambda: os.path.exists(ready) or not pod.recorder.alive(), 15, "pod recorder")
        if on_netns_ready:
            on_netns_ready(pod)
        self.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": k8s_ns, "labels": pod.labels},
            "spec": {"nodeName": node.name, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                                                            "ports": [{"containerPort": 80}]}]},
        })
        t = now_rfc3339()
        status = {"status": {
            "phase": "Running", "podIP": pod.ip4, "podIPs": [{"ip": a} for a in pod.ips],
            "hostIP": node_ip4(node.n), "hostIPs": [{"ip": node_ip4(node.n)}], "startTime": t,
            "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                           for c in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": "app", "ready": True, "started": True, "restartCount": 0,
                                   "image": "registry.k8s.io/pause:3.9", "imageID": "",
                                   "state": {"running": {"startedAt": t}}}]}}
        self.kubectl("patch", "pod", name, "-n", k8s_ns, "--subresource=status", "--type=merge", "-p",
                     json.dumps(status))
        self.pods[name] = pod
        self.sync_endpointslices()
        pod.ready_at = time.time()
        return pod

    def delete_pod(self, name):
        """Deletes the Pod (kubectl), its endpoint, and its namespace."""
        pod = self.pods.pop(name)
        self.sync_endpointslices()
        self.kubectl("delete", "pod", name, "-n", pod.k8s_ns, "--grace-period=0", "--force", "--wait=false",
                     check=False)
        if pod.recorder:
            pod.recorder.close()
        ip(pod.node.netns, "link", "del", pod.host_if, check=False)
        kill_netns(pod.netns)
        if pod.netns in self.namespaces:
            self.namespaces.remove(pod.netns)

    def set_endpoint_conditions(self, name, **conditions):
        """Changes the pod's endpoint conditions (ready, serving, terminating) in the harness's EndpointSlices, as
        the EndpointSlice controller does when a pod starts up or shuts down."""
        assert not self.endpointslice_controller, "the API server's controller derives the conditions itself"
        self.pods[name].conditions.update(conditions)
        self.sync_endpointslices()

    def move_pod(self, name, new_name, to_node, on_netns_ready=None):
        """A rescheduling: the pod is deleted on its node and a new one starts on to_node."""
        old = self.pods[name]
        self.delete_pod(name)
        return self.add_pod(new_name, to_node, labels=old.labels, k8s_ns=old.k8s_ns, dual=bool(old.ip6),
                            on_netns_ready=on_netns_ready)

    # ------------------------------------------------------------------------------------------ services
    def add_service(self, name, vips, annotations=None, selector=None, k8s_ns="default", etp="Local",
                    egress=True, families=None):
        """A LoadBalancer Service with kube-vip's annotations; vips go to kube-vip.io/loadbalancerIPs (as
        kube-vip-cloud-provider would write them)."""
        ann = {"kube-vip.io/loadbalancerIPs": ",".join(vips)}
        if egress:
            ann["kube-vip.io/egress"] = "true"
        ann.update(annotations or {})
        fams = families or sorted({"IPv6" if ":" in v else "IPv4" for v in vips}, key=lambda f: f != "IPv4")
        svc = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": k8s_ns, "annotations": ann},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": etp, "selector": selector or {"app": name},
                     "ipFamilies": fams, "ipFamilyPolicy": "RequireDualStack" if len(fams) > 1 else "SingleStack",
                     "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]},
        }
        self.apply(svc)
        self.services[(k8s_ns, name)] = svc
        self.sync_endpointslices()

    def annotate(self, name, k8s_ns="default", **ann):
        """kubectl annotate; a value of None removes the annotation."""
        args = []
        for k, v in ann.items():
            key = k if "/" in k else "kube-vip.io/" + k.replace("_", "-")
            args.append("%s-" % key if v is None else "%s=%s" % (key, v))
        self.kubectl("annotate", "service", name, "-n", k8s_ns, "--overwrite", *args)

    def delete_service(self, name, k8s_ns="default"):
        self.kubectl("delete", "service", name, "-n", k8s_ns, "--wait=false")
        self.services.pop((k8s_ns, name), None)
        self.kubectl("delete", "endpointslices", "-n", k8s_ns, "-l", "kubernetes.io/service-name=%s" % name,
                     "--wait=false", check=False)

    def service(self, name, k8s_ns="default"):
        return self.get("/api/v1/namespaces/%s/services/%s" % (k8s_ns, name))

    def sync_endpointslices(self):
        """The EndpointSlice controller's part: one slice per family for each Service, listing the pods that
        its selector matches (with their node). Nothing to do when the API server's controller does it."""
        if self.endpointslice_controller:
            return
        objs = []
        for (k8s_ns, name), svc in self.services.items():
            sel = svc["spec"]["selector"]
            members = [p for p in self.pods.values()
                       if p.k8s_ns == k8s_ns and all(p.labels.get(k) == v for k, v in sel.items())]
            for fam in svc["spec"]["ipFamilies"]:
                eps = []
                for p in sorted(members, key=lambda p: p.name):
                    addr = p.ip4 if fam == "IPv4" else p.ip6
                    if addr:
                        eps.append({"addresses": [addr], "nodeName": p.node.name,
                                    "conditions": dict(p.conditions),
                                    "targetRef": {"kind": "Pod", "namespace": k8s_ns, "name": p.name}})
                objs.append({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "%s-%s" % (name, "v4" if fam == "IPv4" else "v6"), "namespace": k8s_ns,
                                 "labels": {"kubernetes.io/service-name": name,
                                            "endpointslice.kubernetes.io/managed-by": "kvc-harness"}},
                    "addressType": fam,
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                    "endpoints": eps,
                })
        if objs:
            self.last_slice_write = time.time()
            self.apply(*objs)

    # ------------------------------------------------------------------------------------------ external view
    def ext_records(self, since=None, **match):
        return _read_records(self.ext_log, since=since, **match)

    def ext_neigh(self, addr):
        """The external host's neighbour entry for addr: (lladdr, state) or None."""
        out = json.loads(ip(self.ext, "-j", "neigh", "show", addr).stdout or "[]")
        for e in out:
            return e.get("lladdr"), e.get("state")
        return None

    def start_ext_capture(self, filt="arp or icmp6"):
        """tcpdump on the external host's interface (link-level headers, so MACs are visible)."""
        path = os.path.join(self.dir, "ext-capture.txt")
        self.tcpdump = Proc("tcpdump", ["tcpdump", "-i", "eth0", "-n", "-e", "-l", "-tt", filt], path, ns=self.ext)
        self.procs.append(self.tcpdump)
        self.wait(lambda: "listening on" in read_text(path) or not self.tcpdump.alive(), 10, "tcpdump")
        return path

    def capture_lines(self):
        try:
            with open(os.path.join(self.dir, "ext-capture.txt")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def ip_sw(self, *args):
        """ip in the switch namespace (e.g. a cable: link set n1n down)."""
        return ip(self.sw, *args)

    def vip_holders(self, vip):
        return [n.name for n in self.nodes if vip in n.vips()]

    # ------------------------------------------------------------------------------------------ helpers
    def wait(self, cond, timeout, what, interval=0.05):
        """Polls cond until true (returns its value) or raises TimeoutError naming what."""
        end = time.time() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.time() >= end:
                raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
            time.sleep(interval)


def ms(seconds):
    return "%dms" % round(seconds * 1000)


def read_text(path):
    with open(path) as f:
        return f.read().strip()


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(data[-lines:])
    except OSError as e:
        return "(%s)" % e


_LIVE = set()


def _cleanup_all():
    for c in list(_LIVE):
        try:
            c.close()
        except Exception as e:  # noqa: BLE001
            sys.stderr.write("cluster: cleanup: %s\n" % e)


atexit.register(_cleanup_all)


def _on_signal(signum, frame):
    # Turn SIGTERM into an exception too, so finally blocks and atexit run.
    raise KeyboardInterrupt("signal %d" % signum)


def install_signal_handlers():
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)


# ------------------------------------------------------------------------------------------------ CLI
def selftest(build_dir):
    """Checks the harness itself, without the daemons: the external host sees the node's address (the CNI's
    masquerade); pod-to-pod across nodes keeps the pod address; a hand-written SNAT rule changes what the
    external host sees (so the harness can observe egress)."""
    with Cluster(build_dir=build_dir, daemons=(), log=print) as c:
        a = c.add_pod("a", 1)
        b = c.add_pod("b", 2)
        res = a.probe([{"proto": "tcp", "dst": EXT4, "port": 80, "tag": "t1"},
                       {"proto": "udp", "dst": EXT4, "port": 5060, "tag": "u1"},
                       {"proto": "icmp", "dst": EXT4, "tag": "i1"},
                       {"proto": "tcp", "dst": EXT6, "port": 80, "tag": "t6"},
                       {"proto": "tcp", "dst": b.ip4, "port": POD_PORT, "tag": "p2p"}])
        for r in res:
            print(r)
        print(c.ext_records())
        print(b.records())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("cmd", choices=["selftest", "shell", "sweep"])
    a = ap.parse_args()
    install_signal_handlers()
    if a.cmd == "sweep":
        print("removed:", sweep_stale("kvc"))
    elif a.cmd == "selftest":
        selftest(a.build_dir)
    else:
        with Cluster(build_dir=a.build_dir, log=print, keep_dir=True) as c:
            print("cluster up; state in %s; namespaces %s" % (c.dir, " ".join(c.namespaces)))
            print("kubectl: ip netns exec %s kubectl --kubeconfig %s ..." % (c.api_ns, c.kubeconfig))
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
