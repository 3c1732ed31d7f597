"""Small network-namespace helpers for the simulated cluster (standard library only).

- run(): a command, optionally inside a named netns (ip netns exec), with a bounded timeout.
- ns_socket(): a socket created inside a named netns. A socket keeps the namespace it was created in, so the
  test process (which stays in the host's namespace) can talk netlink to a node or HTTPS to the API server.
- AddrWatcher: follows every address add/remove in a set of namespaces over rtnetlink (events, not sampling), so
  a test can prove that a VIP was never on two nodes at once.
- sweep_stale(): removes namespaces (and the processes in them) left by an earlier run of this harness that died.
"""
import ctypes
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class CmdError(RuntimeError):
    pass


def run(cmd, ns=None, check=True, input=None, timeout=60, env=None):
    """Runs cmd (a list); returns CompletedProcess with text stdout/stderr."""
    if ns:
        cmd = ["ip", "netns", "exec", ns] + list(cmd)
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise CmdError("timed out after %ss: %s" % (timeout, " ".join(cmd))) from e
    if check and p.returncode != 0:
        raise CmdError("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
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
    p = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def netns_pids(ns):
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def kill_netns(ns, grace=3.0):
    """Ends every process inside ns (TERM, then KILL) and deletes ns. These are processes this harness started
    there (a namespace with our prefix is only ever used by us)."""
    pids = netns_pids(ns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.time() + grace
        while pids and time.time() < end:
            pids = [p for p in pids if os.path.exists("/proc/%d" % p)]
            if pids:
                time.sleep(0.05)
        if not pids:
            break
    run(["ip", "netns", "del", ns], check=False)


def sweep_stale(base="kvc"):
    """Deletes namespaces named <base><pid>-... whose creating process <pid> is gone."""
    pat = re.compile(r"^%s(\d+)-" % re.escape(base))
    removed = []
    for ns in list_netns():
        m = pat.match(ns)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            kill_netns(ns, grace=1.0)
            removed.append(ns)
    return removed


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
