# SPDX-License-Identifier: Apache-2.0
"""Network-namespace test topologies (Python 3 stdlib only).

A Topology owns everything it creates: namespaces (named
"<prefix><pid>-<name>", so a stale one can be traced to its dead owner),
veth pairs, bridges and the processes started inside. Topology.cleanup()
kills those processes and deletes the namespaces; it runs from `with`, from
atexit and from SIGTERM/SIGINT/SIGHUP handlers, so a failing or interrupted
test leaves nothing behind. sweep_stale(prefix) removes namespaces whose
owner process is gone (a test killed with SIGKILL).

Nothing here touches the host's own namespace beyond creating and deleting
namespaces (and the veth pairs, which are created directly inside them).

For namespaces made by name (the simulated cluster, tests/lib/cluster.py):
run(cmd, ns=NAME), ip()/ip_batch(), ns_socket() (a socket created inside a
namespace, so this process can talk netlink or TCP there), kill_netns(), and
AddrWatcher, which follows every address add/remove in a set of namespaces
over rtnetlink (events, not sampling), so a test can prove that a VIP was
never on two nodes at once.

    with Topology("kvt") as t:
        pod, node = t.netns("pod"), t.netns("node")
        t.veth(pod, "eth0", node, "pod0")
        pod.addr("eth0", "10.244.1.5/24"); node.addr("pod0", "10.244.1.1/24")
        ext = t.netns("ext"); rec = Recorder(ext, tcp=[8080], udp=[5060])
        ...
        print(probe(pod, "tcp", "192.168.0.250", 8080))   # source seen by ext

The recorder and the client that run inside a namespace are the ones the
simulated cluster uses too: agents/recorder.py and agents/probe.py.
"""

import atexit
import ctypes
import json
import os
import re
import select
import signal
import socket
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ["Topology", "Netns", "Recorder", "probe", "udp_stream", "sweep_stale", "run", "CmdError", "ip",
           "ip_batch", "ns_socket", "list_netns", "kill_netns", "AddrWatcher"]

HERE = os.path.abspath(__file__)
RECORDER = os.path.join(os.path.dirname(HERE), "agents", "recorder.py")
PROBE = os.path.join(os.path.dirname(HERE), "agents", "probe.py")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class CmdError(RuntimeError):
    """A command run() checked failed."""


class CmdTimeout(CmdError, subprocess.TimeoutExpired):
    """A command run() started did not end in time (also a subprocess.TimeoutExpired)."""

    def __init__(self, cmd, timeout):
        subprocess.TimeoutExpired.__init__(self, cmd, timeout)

    def __str__(self):
        return "timed out after %ss: %s" % (self.timeout, " ".join(self.cmd))


def run(cmd, ns=None, check=True, capture=True, timeout=60, **kw):
    """Runs cmd (a list), inside netns ns (a name) if given, with a bounded timeout; returns CompletedProcess
    with text stdout/stderr. Raises CmdError (with the output) on failure, CmdTimeout on timeout."""
    if ns:
        cmd = ["ip", "netns", "exec", ns] + list(cmd)
    try:
        p = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise CmdTimeout(list(cmd), timeout) from None
    if check and p.returncode != 0:
        raise CmdError("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout or "", p.stderr or ""))
    return p


def ip(ns, *args, check=True):
    return run(["ip", "-n", ns] + list(args), check=check)


def ip_batch(ns, lines):
    """Runs many ip commands in one process (ip -n NS -batch -)."""
    if lines:
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def ns_socket(ns, family, type_, proto=0):
    """A socket created inside netns ns (from a short-lived thread that enters it)."""
    out = {}

    def enter():
        try:
            fd = os.open("/run/netns/%s" % ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns(%s): %s" % (ns, os.strerror(e)))
            finally:
                os.close(fd)
            out["s"] = socket.socket(family, type_, proto)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["e"] = e

    t = threading.Thread(target=enter)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["s"]


def list_netns():
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return [n["name"] for n in json.loads(out)] if out else []


def netns_pids(ns):
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def kill_netns(ns, grace=3.0):
    """Ends every process inside ns (TERM, then KILL after grace seconds) and deletes ns. These are processes
    the test started there (a namespace with a test's prefix is only ever used by that test)."""
    pids = netns_pids(ns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while pids and time.monotonic() < end:
            pids = [p for p in pids if os.path.exists("/proc/%d" % p)]
            if pids:
                time.sleep(0.05)
        if not pids:
            break
    for _ in range(50):
        if run(["ip", "netns", "del", ns], check=False).returncode == 0 or ns not in list_netns():
            return
        time.sleep(0.1)


def sweep_stale(prefix):
    """Deletes namespaces "<prefix><pid>-*" whose owner pid no longer runs; returns their names."""
    pat = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    for name in list_netns():
        m = pat.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            kill_netns(name, grace=1.0)
            removed.append(name)
    return removed


class Netns:
    """One network namespace of a Topology."""

    def __init__(self, topo, name):
        self.topo = topo
        self.name = name

    def __repr__(self):
        return f"Netns({self.name})"

    def cmd(self, *argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv, check=True, timeout=60, **kw):
        return run(self.cmd(*argv), check=check, timeout=timeout, **kw)

    def ip(self, *argv, check=True):
        return run(["ip", "-n", self.name, *argv], check=check)

    def ip_json(self, *argv):
        out = run(["ip", "-j", "-n", self.name, *argv]).stdout
        return json.loads(out) if out.strip() else []

    def popen(self, *argv, **kw):
        """Starts a process inside; it is killed at cleanup."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(self.cmd(*argv), start_new_session=True, **kw)
        self.topo.processes.append(p)
        return p

    def sysctl(self, key, value):
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def addr(self, ifname, cidr, nodad=True):
        args = ["addr", "add", cidr, "dev", ifname]
        if ":" in cidr and nodad:
            args.append("nodad")
        self.ip(*args)

    def route(self, *argv):
        self.ip("route", "add", *argv)

    def link_up(self, ifname):
        self.ip("link", "set", ifname, "up")

    def nft(self, script):
        """Applies an nft script (one transaction)."""
        return run(self.cmd("nft", "-f", "-"), input=script)

    def addresses(self, ifname):
        """[(address, prefixlen, deprecated)] on ifname; deprecated (preferred
        lifetime 0) addresses are never chosen as a source by the host."""
        out = []
        for link in self.ip_json("addr", "show", "dev", ifname):
            for a in link.get("addr_info", []):
                out.append((a["local"], a["prefixlen"],
                            bool(a.get("deprecated")) or a.get("preferred_life_time") == 0))
        return out


class Topology:
    """Namespaces, links and processes with guaranteed cleanup."""

    _live = []
    _handlers_installed = False

    def __init__(self, prefix="kvt"):
        self.prefix = f"{prefix}{os.getpid()}-"
        self.namespaces = []
        self.processes = []
        self.tmpdir = tempfile.mkdtemp(prefix=self.prefix)
        os.chmod(self.tmpdir, 0o755)
        sweep_stale(prefix)
        Topology._live.append(self)
        Topology._install_handlers()

    @classmethod
    def _install_handlers(cls):
        if cls._handlers_installed:
            return
        cls._handlers_installed = True
        atexit.register(cls._cleanup_all)

        def on_signal(signum, frame):
            cls._cleanup_all()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, on_signal)

    @classmethod
    def _cleanup_all(cls):
        for t in list(cls._live):
            t.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def netns(self, name):
        """Creates a namespace with lo up, forwarding off and IPv6 DAD off."""
        full = self.prefix + name
        if len(full) > 64:
            raise ValueError(f"namespace name too long: {full}")
        run(["ip", "netns", "add", full])
        ns = Netns(self, full)
        self.namespaces.append(ns)
        ns.link_up("lo")
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            ns.sysctl(key, 0)
        return ns

    def veth(self, a, if_a, b, if_b, up=True):
        """A veth pair: if_a in namespace a, if_b in namespace b."""
        run(["ip", "-n", a.name, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", b.name])
        if up:
            a.link_up(if_a)
            b.link_up(if_b)

    def bridge(self, ns, name):
        ns.ip("link", "add", name, "type", "bridge")
        ns.link_up(name)

    def attach(self, ns, ifname, bridge):
        ns.ip("link", "set", ifname, "master", bridge)

    def kill(self, p, sig=signal.SIGTERM, timeout=10):
        """Stops a process started with Netns.popen(); returns its exit code."""
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        return p.returncode

    def cleanup(self):
        for p in self.processes:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.processes = []
        for ns in reversed(self.namespaces):
            kill_netns(ns.name, grace=0)
        self.namespaces = []
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        if self in Topology._live:
            Topology._live.remove(self)


class Recorder:
    """An "external host" service in ns (agents/recorder.py): TCP and UDP listeners that answer each
    connection or datagram with the source address they saw, and record it (and ICMP echo requests).
    entries() gives one dict a record: {"proto": "tcp"|"udp"|"icmp", "src": addr, "dst": addr, "port": n}
    (port: the port it came to; 0 for ICMP), plus "seq": N for a datagram of udp_stream()."""

    def __init__(self, ns, tcp=(), udp=(), icmp=True, path=None):
        self.ns = ns
        self.path = path or os.path.join(ns.topo.tmpdir, f"{ns.name}-recorder.log")
        open(self.path, "w").close()
        ready = self.path + ".ready"
        argv = [sys.executable or "python3", RECORDER, "--log", self.path, "--ready", ready]
        for p in tcp:
            argv += ["--tcp", str(p)]
        for p in udp:
            argv += ["--udp", str(p)]
        if icmp:
            argv.append("--icmp")
        self.proc = ns.popen(*argv, stderr=None)
        # Ready when the listeners are bound.
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if os.path.exists(ready):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("recorder did not start")

    @staticmethod
    def _entry(r):
        e = {"proto": r["proto"], "src": r["src"], "dst": r.get("dst") or "",
             "port": r.get("dport") if r["proto"] in ("tcp", "udp") else 0}
        tag = r.get("tag") or ""
        if tag.startswith("seq "):
            e["seq"] = int(tag.split()[1])
        return e

    def entries(self, proto=None):
        out = []
        with open(self.path) as f:
            for line in f:
                try:
                    e = self._entry(json.loads(line))
                except (ValueError, KeyError, IndexError):
                    continue
                if proto is None or e["proto"] == proto:
                    out.append(e)
        return out

    def clear(self):
        open(self.path, "w").close()

    def sources(self, proto=None, port=None):
        return [e["src"] for e in self.entries(proto) if port is None or e.get("port") == port]

    def wait_for(self, pred, timeout=5):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            hits = [e for e in self.entries() if pred(e)]
            if hits:
                return hits
            time.sleep(0.05)
        return []


def probe(ns, proto, host, port, src=None, sport=None, timeout=3):
    """From inside ns (from address src if given): connects (tcp) or sends a
    datagram (udp) to host:port and returns the source address the recorder
    saw, or None."""
    one = {"proto": proto, "dst": host, "port": port, "tag": "probe"}
    if src:
        one["src"] = src
    if sport:
        one["sport"] = sport
    p = ns.run(sys.executable or "python3", PROBE, "batch", json.dumps([one]), "--timeout", str(timeout),
               check=False, timeout=timeout + 10)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return res.get("seen") if res.get("ok") else None


def udp_stream(ns, host, port, count=100, interval=0.01, src=None, sport=None):
    """Starts one UDP flow from ns (agents/probe.py send): count datagrams "seq N" to host:port, one every
    interval seconds; returns the process (killed at cleanup)."""
    argv = [sys.executable or "python3", PROBE, "send", "--dst", host, "--port", str(port), "--count", str(count),
            "--interval", str(interval)]
    if src:
        argv += ["--src", src]
    if sport:
        argv += ["--sport", str(sport)]
    return ns.popen(*argv)


def wait_file_contains(path, text, timeout=10):
    """Waits until the file at path contains text (a process's readiness line); raises after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                if text in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not show {text!r} within {timeout}s")


def ping(ns, host, count=1, src=None):
    """True if host answers an ICMP echo from ns (from address src if given)."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", "2"]
    if src:
        argv += ["-I", src]
    return ns.run(*argv, host, check=False).returncode == 0


# ---------------------------------------------------------------------------------------------- rtnetlink
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
IFA_ADDRESS, IFA_LOCAL = 1, 2


def _parse_addr_msgs(buf):
    """Yields (type, family, prefixlen, ifindex, address) from a netlink buffer."""
    off = 0
    while off + 16 <= len(buf):
        ln, typ, flags, seq, pid = struct.unpack_from("=IHHII", buf, off)
        if ln < 16:
            break
        if typ in (RTM_NEWADDR, RTM_DELADDR):
            fam, plen, fl, scope, idx = struct.unpack_from("=BBBBI", buf, off + 16)
            a = off + 24
            addr = local = None
            while a + 4 <= off + ln:
                alen, atyp = struct.unpack_from("=HH", buf, a)
                if alen < 4:
                    break
                data = buf[a + 4:a + alen]
                if atyp == IFA_ADDRESS:
                    addr = data
                elif atyp == IFA_LOCAL:
                    local = data
                a += (alen + 3) & ~3
            raw = local or addr
            if raw:
                f = socket.AF_INET if fam == socket.AF_INET else socket.AF_INET6
                yield typ, fam, plen, idx, socket.inet_ntop(f, raw)
        elif typ == NLMSG_DONE:
            yield NLMSG_DONE, 0, 0, 0, None
        off += (ln + 3) & ~3


class AddrWatcher:
    """Follows the addresses of several namespaces over rtnetlink: an initial dump, then every event. history is
    a list of (t, ns, "add"|"del", address); holders(addr) tells which namespaces hold addr now."""

    def __init__(self, namespaces):
        self.lock = threading.Lock()
        self.history = []
        self.current = {ns: set() for ns in namespaces}
        self.socks = {}
        self.stop_r, self.stop_w = os.pipe()
        for ns in namespaces:
            s = ns_socket(ns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            self.socks[s.fileno()] = (ns, s)
            self._dump(ns)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _dump(self, ns):
        s = ns_socket(ns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            s.bind((0, 0))
            req = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            req += struct.pack("=BBBBI", 0, 0, 0, 0, 0)
            s.send(req)
            done = False
            now = time.time()
            while not done:
                buf = s.recv(1 << 16)
                for typ, fam, plen, idx, addr in _parse_addr_msgs(buf):
                    if typ == NLMSG_DONE:
                        done = True
                    elif typ == RTM_NEWADDR:
                        with self.lock:
                            if addr not in self.current[ns]:
                                self.current[ns].add(addr)
                                self.history.append((now, ns, "add", addr))
        finally:
            s.close()

    def _loop(self):
        fds = list(self.socks) + [self.stop_r]
        while True:
            r, _, _ = select.select(fds, [], [])
            now = time.time()
            if self.stop_r in r:
                return
            for fd in r:
                ns, s = self.socks[fd]
                try:
                    buf = s.recv(1 << 16)
                except OSError as e:  # ENOBUFS: resync from a dump
                    with self.lock:
                        self.history.append((now, ns, "error", str(e)))
                    continue
                for typ, fam, plen, idx, addr in _parse_addr_msgs(buf):
                    with self.lock:
                        if typ == RTM_NEWADDR and addr not in self.current[ns]:
                            self.current[ns].add(addr)
                            self.history.append((now, ns, "add", addr))
                        elif typ == RTM_DELADDR and addr in self.current[ns]:
                            self.current[ns].discard(addr)
                            self.history.append((now, ns, "del", addr))

    def holders(self, addr):
        with self.lock:
            return sorted(ns for ns, s in self.current.items() if addr in s)

    def events(self, addr):
        with self.lock:
            return [h for h in self.history if h[3] == addr]

    def max_concurrent(self, addr, since=0.0):
        """The largest number of namespaces that held addr at the same time (after since), and when."""
        held = set()
        worst, when = 0, None
        with self.lock:
            hist = list(self.history)
        seen_since = False
        for t, ns, op, a in hist:
            if a != addr:
                continue
            if t >= since and not seen_since:
                seen_since = True
                if len(held) > worst:
                    worst, when = len(held), (since, sorted(held))
            if op == "add":
                held.add(ns)
            elif op == "del":
                held.discard(ns)
            if t >= since and len(held) > worst:
                worst, when = len(held), (t, sorted(held))
        if not seen_since and len(held) > worst:
            worst, when = len(held), (since, sorted(held))
        return worst, when

    def close(self):
        try:
            os.write(self.stop_w, b"x")
        except OSError:
            pass
        self.thread.join(2)
        for _, s in self.socks.values():
            s.close()
        os.close(self.stop_r)
        os.close(self.stop_w)
