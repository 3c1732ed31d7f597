# SPDX-License-Identifier: Apache-2.0
"""What the benchmark parts share: paths, tables printed as they fill and
written as Markdown, process figures from /proc, a pipelined kvnetd client
and time limits.

A benchmark prints figures; it never passes or fails on them. A point that
exceeds its time limit is printed as "> LIMIT" and the larger sizes of that
series are skipped, so a slow build still finishes."""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from dbus_p2p import ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL, marshal, unmarshal  # noqa: E402

BUILD = os.path.abspath(os.environ.get("KVB_BUILD", os.path.join(ROOT, "build-release")))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tool(name):
    """A binary of the build: a daemon ("kvnetd") or a bench tool ("flowgen")."""
    for p in (os.path.join(BUILD, name, name), os.path.join(BUILD, "tools", "bench", name)):
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError(f"{name} not built in {BUILD} (tools/bench.sh builds it)")


def caps():
    """kvnetd's limits, read from the interface header of this checkout."""
    out = {}
    with open(os.path.join(ROOT, "shared", "kvnetd-bus.h")) as f:
        for m in re.finditer(r"#define KVNETD_MAX_(\w+)\s+(\d+)", f.read()):
            out[m.group(1)] = int(m.group(2))
    return out


class OverLimit(Exception):
    """A point took longer than its time limit."""

    def __init__(self, limit):
        super().__init__(f"> {limit:g} s")
        self.limit = limit


def median(xs):
    return statistics.median(xs) if xs else None


# ---- figures --------------------------------------------------------------


def ms(seconds):
    if seconds is None:
        return "-"
    v = seconds * 1000
    return f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms" if v < 10000 else f"{seconds:,.1f} s"


def secs(seconds):
    return "-" if seconds is None else f"{seconds:.2f} s" if seconds < 100 else f"{seconds:,.0f} s"


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def _proc_kib(path, field):
    """The KiB figure of the line starting with field in a /proc file, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib(pid):
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_kib(pid):
    """Proportional set size (KiB) from /proc/PID/smaps_rollup: each shared
    page divided among the processes mapping it; None if unreadable."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def cpu_seconds(pid):
    """User + system CPU time of pid so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def thread_cpu_seconds(pid, comm):
    """User + system CPU time so far of pid's threads named comm."""
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    head, tail = f.read().rsplit(")", 1)
                if head.split("(", 1)[1] == comm:
                    fields = tail.split()
                    total += (int(fields[11]) + int(fields[12])) / CLK_TCK
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return None
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- tables ---------------------------------------------------------------


class Table:
    """Rows printed to stdout as they come, and kept for the Markdown file."""

    def __init__(self, title, columns, notes=()):
        self.title, self.columns, self.rows, self.notes = title, list(columns), [], list(notes)
        print(f"\n{title}", flush=True)
        print(" | ".join(self.columns), flush=True)

    def add(self, *cells):
        cells = [str(c) for c in cells]
        self.rows.append(cells)
        print(" | ".join(cells), flush=True)

    def note(self, text):
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def markdown(self):
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "---|" * len(self.columns))
        for r in self.rows:
            out.append("| " + " | ".join(r) + " |")
        out.append("")
        for n in self.notes:
            out.append(f"- {n}")
        if self.notes:
            out.append("")
        return "\n".join(out)


def write_markdown(path, tables, preface=()):
    if not path:
        return
    with open(path, "w") as f:
        for p in preface:
            f.write(p + "\n\n")
        for t in tables:
            f.write(t.markdown() + "\n")


def common_args(ap):
    ap.add_argument("--out", help="write the tables here as Markdown")
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    return ap


# ---- kvnetd over its socket, many calls in flight -------------------------

NET_PATH, NET_IFACE = "/io/kvegress/Net1", "io.kvegress.Net1"


def pipeline(conn, calls, deadline, window=64):
    """Sends calls [(member, signature, args)] on conn with up to window
    replies outstanding (kvnetd serves one connection in order, as kvpd's
    queue does). Returns the list of errors [(index, name, message)].
    Raises OverLimit when the monotonic deadline passes."""
    pending, errors = {}, []

    def one_reply():
        left = deadline - time.monotonic()
        if left <= 0:
            raise OverLimit(0)
        conn.sock.settimeout(left)
        try:
            mtype, fields, data = conn.receive()
        except socket.timeout:
            raise OverLimit(0)
        if mtype == SIGNAL:
            return
        idx = pending.pop(fields.get(5), None)
        if idx is not None and mtype == ERROR:
            sig = fields.get(8, "")
            vals = unmarshal(sig, data) if sig else []
            errors.append((idx, fields.get(4), vals[0] if vals else ""))

    for i, (member, sig, args) in enumerate(calls):
        conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            serial = conn.send(METHOD_CALL, NET_PATH, NET_IFACE, member, sig, marshal(sig, args))
        except (socket.timeout, TimeoutError):
            raise OverLimit(0)
        pending[serial] = i
        while len(pending) >= window:
            one_reply()
    while pending:
        one_reply()
    return errors


def kvnetd_transactions(conn, timeout=60):
    """kvnetd's count of egress nft transactions so far (GetMetrics), or None."""
    return kvnetd_metric(conn, "kvegress_nft_transactions_total", timeout)


def kvnetd_metric(conn, name, timeout=60):
    """The sum of kvnetd's samples of metric name (GetMetrics), as an int, or None."""
    try:
        errs, vals = [], []
        conn.sock.settimeout(timeout)
        serial = conn.send(METHOD_CALL, NET_PATH, NET_IFACE, "GetMetrics", "", b"")
        while True:
            mtype, fields, data = conn.receive()
            if fields.get(5) != serial:
                continue
            if mtype == ERROR:
                errs.append(fields.get(4))
                return None
            vals = unmarshal(fields.get(8, ""), data)
            break
        total = 0.0
        for line in vals[0].splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)
    except (OSError, ValueError, IndexError):
        return None


def call_timed(conn, member, sig, args, limit):
    """One call; returns (seconds, error name or None). OverLimit past limit."""
    t0 = time.monotonic()
    errs = pipeline(conn, [(member, sig, args)], t0 + limit, window=1)
    return time.monotonic() - t0, (errs[0][1] + ": " + errs[0][2]) if errs else None


_ = METHOD_RETURN  # re-exported for parts that read replies themselves


class NftMonitor:
    """`nft monitor` inside a namespace, counting the transactions committed
    between start() and stop(). Each end is marked by a transaction of our
    own (a table added and deleted at once) that the monitor must echo, so
    a monitor slow to subscribe on a loaded machine cannot miss the change
    (a fixed wait once made it report 0)."""

    def __init__(self, ns, timeout=20):
        self.ns = ns
        self.lines = []
        # With 10,000 chains in the namespace, nft monitor under load took
        # longer than 20 s to echo the first marker.
        self.timeout = timeout

    def _reader(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def _mark(self, name):
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            self.ns.run("nft", f"add table inet {name}; delete table inet {name}")
            t = time.monotonic() + 1
            while time.monotonic() < t:
                for i, line in enumerate(self.lines):
                    if line.startswith(f"delete table inet {name}"):
                        return i
                time.sleep(0.02)
        raise RuntimeError("nft monitor did not echo a transaction")

    def start(self):
        self.p = subprocess.Popen(self.ns.cmd("nft", "monitor"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, bufsize=1)
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self.first = self._mark("kvbench_mark_a")
        return self

    def stop(self, settle=0.3):
        """The number of transactions since start(), ours excluded."""
        time.sleep(settle)
        try:
            last = self._mark("kvbench_mark_b")
        finally:
            self.p.terminate()
            self.p.wait(10)
        gens = [line for line in self.lines[self.first:last] if line.startswith("# new generation")]
        return max(0, len(gens) - 1)  # the first is marker a's own


def nft_json(ns, *argv):
    return json.loads(ns.run("nft", "-j", *argv).stdout)
