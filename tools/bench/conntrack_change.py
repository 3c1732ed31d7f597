#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One kvnetd change on a node whose conntrack table holds 10^3, 10^4, 10^5
and 10^6 entries: how long kvnetd's event loop is busy, how long the
deletion takes, and whether it fenced anyone.

The node (a namespace) runs kvnetd (release build, as in production) with
100 egress Services whose grants are renewed the way kvelectd does with
kube-vip's default timings: every 2 s, deadline = send time + 10 s - 0.5 s.
ctfill (C, ctnetlink) fills the node's conntrack table with UDP entries
from 4,096 pod addresses, the 100 Services' pods among them. Then one
Service's pod is replaced (SetEgress), so kvnetd must delete the old pod's
entries. Figures:
  - the SetEgress round trip, and the time until the old pod's entries are
    gone (kvnetd deletes them after it has answered, on its conntrack
    worker thread);
  - CPU time of kvnetd's event-loop thread and of its conntrack worker
    thread from the change until the entries are gone (schedstat, in ns:
    the loop's figure includes serving the probe and the renewals below,
    measured alone first and shown as the idle baseline);
  - event-loop lag: the longest round trip of a RenewGrant sent every 10 ms
    on a second connection while the change runs (kvnetd serves both
    connections from one loop, so this is how long a renewal waited), from
    the change until its entries are gone and 3 s more;
  - fences: kvnetd's "removing its VIPs and egress" log lines (must be 0;
    the probe's own Service is held like the others and counts too);
  - conntrack entries deleted.

nf_conntrack_max is global to the host (it bounds every namespace's table):
if it is below what is needed, it is raised for the run and restored on
exit (also on failure and on SIGINT/SIGTERM); the output says so.

    tools/bench/conntrack_change.py [--sizes 1000,10000,100000,1000000] [--quick] [--out FILE]"""

import argparse
import atexit
import ipaddress
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import OverLimit, Table, ms, tool  # noqa: E402

import netns  # noqa: E402
from kvnet import DBusError, KvnetClient, Kvnetd, mono_usec  # noqa: E402

os.environ.setdefault("KVEGRESS_BUILD_DIR", benchlib.BUILD)  # kvnet.py runs this build's kvnetd

CT_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
SERVICES = 100
RENEW_DEADLINE, RETRY, MARGIN = 10.0, 2.0, 0.5
POD_BASE = int(ipaddress.IPv4Address("10.128.0.0"))
POD_NEW = int(ipaddress.IPv4Address("10.192.0.0"))
EXCLUDED = ["10.0.0.0/16", "10.96.0.0/12"]


def vip(i):
    return f"192.168.0.{100 + i}" if i < 128 else f"192.168.1.{i - 128}"


def pod(i, base=POD_BASE):
    return str(ipaddress.IPv4Address(base + i))


class CtMax:
    """Raises nf_conntrack_max if needed, and always puts it back."""

    def __init__(self):
        with open(CT_MAX) as f:
            self.old = int(f.read())
        self.raised = None

    def ensure(self, need):
        if need <= self.old:
            return
        self.raised = need
        atexit.register(self.restore)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            prev = signal.getsignal(s)

            def handler(signum, frame, prev=prev):
                self.restore()
                if callable(prev):
                    prev(signum, frame)
                else:
                    raise SystemExit(128 + signum)

            signal.signal(s, handler)
        with open(CT_MAX, "w") as f:
            f.write(str(need))

    def restore(self):
        if self.raised is None:
            return
        with open(CT_MAX, "w") as f:
            f.write(str(self.old))
        self.raised = None


class Renewer(threading.Thread):
    """kvelectd's part: every RETRY seconds, RenewGrant of every Service."""

    def __init__(self, sock, keys):
        super().__init__(daemon=True)
        self.conn, self.keys, self.stop_ev = KvnetClient(sock, timeout=120), keys, threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            dl = mono_usec() + int((RENEW_DEADLINE - MARGIN) * 1e6)
            try:
                benchlib.pipeline(self.conn, (("RenewGrant", "st", (k, dl)) for k in self.keys),
                                  time.monotonic() + 120)
            except (OverLimit, OSError):
                pass
            self.stop_ev.wait(RETRY)


class LagProbe(threading.Thread):
    """RenewGrant of one Service every 10 ms; keeps (sent, round trip)."""

    def __init__(self, sock, key):
        super().__init__(daemon=True)
        self.conn, self.key, self.stop_ev, self.samples = KvnetClient(sock, timeout=300), key, threading.Event(), []

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                self.conn.renew(self.key, RENEW_DEADLINE - MARGIN)
            except DBusError:
                pass  # fenced meanwhile (counted from the log): the wait still counts
            except OSError:
                return
            finally:
                self.samples.append((t0, time.monotonic() - t0))
            self.stop_ev.wait(0.01)

    def worst(self, start, end):
        return max((rtt for t0, rtt in self.samples if t0 + rtt >= start and t0 <= end), default=None)


def count(ns):
    return int(ns.run("cat", "/proc/sys/net/netfilter/nf_conntrack_count").stdout)


class ThreadCpu:
    """CPU time (ns, /proc/PID/task/TID/schedstat) of kvnetd's event-loop
    thread (TID = PID) and of its conntrack worker (named kvnetd-ct)."""

    def __init__(self, pid):
        self.pid, self.worker = pid, None
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "kvnetd-ct":
                    self.worker = int(tid)

    def _ns(self, tid):
        if tid is None:
            return 0
        with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])

    def sample(self):
        return self._ns(self.pid), self._ns(self.worker)


def main():
    ap = benchlib.common_args(argparse.ArgumentParser(description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--sizes", help="conntrack entries, comma-separated (default 0,100000,1000000)")
    ap.add_argument("--limit", type=float, default=60, help="seconds for one change (default 60)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1000, 10000, 100000] if args.quick else
                                                                          [1000, 10000, 100000, 1000000])
    tbl = Table(f"One change on a node with many conntrack entries ({SERVICES} egress Services held, renewed "
                "every 2 s with deadline +9.5 s)",
                ["conntrack entries", "filled in", "SetEgress round trip",
                 "event-loop CPU (change until entries gone)", "worker CPU", "old pod's entries gone after",
                 "renewal lag (longest renewal wait)", "fences", "entries deleted"])
    ctmax = CtMax()
    need = max(sizes) + max(sizes) // 10 + 10000
    if need > ctmax.old:
        ctmax.ensure(need)
        tbl.note(f"nf_conntrack_max (global) was {ctmax.old:,}: raised to {need:,} for this run and restored "
                 "on exit")
    else:
        tbl.note(f"nf_conntrack_max (global) is {ctmax.old:,}: left as it is")
    try:
        with netns.Topology("kvbc") as t:
            node, lan = t.netns("node"), t.netns("lan")
            t.veth(node, "eth1", lan, "eth0")
            node.addr("eth1", "192.168.0.240/24")
            lan.addr("eth0", "192.168.0.250/24")
            k = Kvnetd(node, extra_args=("--vip-range", "192.168.0.0/23", "--reconcile-interval", "30s",
                                        "--log-level", "info")).start()
            keys = [f"bench/s{i}" for i in range(SERVICES)]
            setup = KvnetClient(k.socket, timeout=60)
            dl = mono_usec() + int((RENEW_DEADLINE - MARGIN) * 1e6)
            calls = [("GrantVip", "ssst", (keys[i], vip(i), "eth1", dl)) for i in range(SERVICES)]
            calls.append(("GrantVip", "ssst", ("bench/probe", "192.168.0.99", "eth1", dl)))
            calls += [("SetEgress", "sssasa(sq)asasas", (keys[i], vip(i), "", [pod(i)], [], [], [], EXCLUDED))
                      for i in range(SERVICES)]
            errs = benchlib.pipeline(setup, calls, time.monotonic() + 120)
            if errs:
                raise RuntimeError(f"setting up {SERVICES} Services failed: {errs[:3]}")
            renewer = Renewer(k.socket, keys)
            renewer.start()
            probe = LagProbe(k.socket, "bench/probe")
            probe.start()
            cpu = ThreadCpu(k.proc.pid)
            # The loop's CPU with the probe and the renewals alone, for 2 s.
            time.sleep(1)
            b0, _ = cpu.sample()
            time.sleep(2)
            idle = (cpu.sample()[0] - b0) / 2e9  # loop CPU seconds per second
            tbl.note(f"the event-loop thread's CPU while idle but for the probe and the renewals: "
                     f"{idle * 1000:.1f} ms per second; the CPU figures include it")
            filled, over, fills, results = 0, None, [], []
            for j, size in enumerate(sizes):
                if over:
                    tbl.add(f"{size:,}", "-", f"skipped ({over})", "-", "-", "-", "-", "-", "-")
                    continue
                fill_s = None
                if size > filled:
                    # Another destination for each fill: no tuple repeats.
                    out = node.run(tool("ctfill"), str(size - filled), pod(0), "4096", f"198.51.100.{j + 1}",
                                   timeout=600).stdout.split()
                    fill_s = float(out[5])
                    fills.append(size - filled)
                    filled = size
                have = count(node)
                fences_before = k.read_log().count("removing its VIPs and egress")
                time.sleep(0.5)
                loop0, worker0 = cpu.sample()
                t0 = time.monotonic()
                try:
                    rtt, err = benchlib.call_timed(setup, "SetEgress", "sssasa(sq)asasas",
                                                   (keys[j], vip(j), "", [pod(j, POD_NEW)], [], [], [], EXCLUDED),
                                                   args.limit)
                except OverLimit:
                    rtt, err, over = None, None, f"> {args.limit:g} s at {size:,}"
                t1 = time.monotonic()
                # kvnetd may delete the old pod's entries after it answers:
                # wait until they are gone (their number follows from how
                # ctfill spreads entries over sources), and measure the lag
                # over all of it.
                expected = sum((c - j + 4095) // 4096 for c in fills if c > j)
                gone = None
                while time.monotonic() - t0 < args.limit:
                    if have - count(node) >= expected:
                        gone = time.monotonic() - t0
                        break
                    time.sleep(0.01)
                loop1, worker1 = cpu.sample()
                time.sleep(RETRY + 1)  # the renewals queued meanwhile, and a fence if one comes
                lag = probe.worst(t0, time.monotonic())
                fences = k.read_log().count("removing its VIPs and egress") - fences_before
                deleted = have - count(node)
                if not over:
                    results.append((have, (loop1 - loop0) / 1e9, fences, lag))
                tbl.add(f"{have:,}", "-" if fill_s is None else f"{fill_s:.1f} s",
                        over or (ms(rtt) + (f" ({err})" if err else "")),
                        ms((loop1 - loop0) / 1e9), ms((worker1 - worker0) / 1e9),
                        "-" if expected == 0 else ms(gone) if gone is not None else f"not within {args.limit:g} s",
                        ms(lag), str(fences), f"{deleted:,} of {expected:,}")
            renewer.stop_ev.set()
            probe.stop_ev.set()
            k.stop()
            # Issue 10's goal, stated against this run, never tuned.
            big = [r for r in results if r[0] >= 990_000]
            if big:
                have, loop_s, fences, lag = big[-1]
                verdict = "met" if loop_s <= 0.05 and fences == 0 else "missed"
                tbl.note(f"goal, a change on a node with 10^6 conntrack entries <= 50 ms of event-loop time and no "
                         f"fence: {verdict} ({ms(loop_s)} of event-loop CPU at {have:,} entries, probe included; "
                         f"{fences} fences; longest renewal wait {ms(lag)})")
            else:
                tbl.note("goal, a change on a node with 10^6 conntrack entries <= 50 ms of event-loop time and no "
                         "fence: not measured in this run")
    finally:
        ctmax.restore()
    benchlib.write_markdown(args.out, [tbl])


if __name__ == "__main__":
    main()
