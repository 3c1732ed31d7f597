#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kvnetd at N Services, over its real socket, against kube-vip's shape
written with `nft -f`, and new flows per second through kvnetd's ruleset.

For each N, in fresh namespaces (tools/bench/flows.py draws them), kvnetd
(the release build, as user kvnetd with CAP_NET_ADMIN and CAP_NET_RAW only,
reconcile every 30 s as by default) gets N Services, each with one VIP
(100.64.0.0/10, VIP i bound on the router's veth vip<i % 128>: see
VIP_IFACES), one pod (10.128.0.0 + i) and the default exclusions
(10.0.0.0/16, 10.96.0.0/12):

  - cold: N GrantVip, then N SetEgress, 64 calls in flight on one
    connection; reference: `nft -f` of the table kvnetd ended with, loaded
    into an empty namespace (the same ruleset, written by the nft CLI);
    the nft transactions kvnetd committed for them (its GetMetrics counter);
  - all in flight: every Service's pod replaced, N SetEgress sent at once as
    kvpd sends a replay (kvpd keeps one call per Service in flight and no
    limit per connection), and the transactions that took; then back to the
    first pods (not timed);
  - one change: SetEgress of one Service with its pod replaced (median of 3),
    and the nft transactions it committed (kvnetd's GetMetrics counter);
  - one removal: RemoveService (median of 3);
  - kvnetd's RSS after the cold start;
  - new flows per second from 16 of the N pods (or all, if fewer) through
    the router holding kvnetd's ruleset, beside no ruleset and one SNAT rule
    (once kvnetd's conntrack worker is idle), and the same router with
    accept_local=1 on its pod side, which skips the kernel's local-source
    check (a walk of about N/256 addresses per forwarded packet: see
    AcceptLocal), to tell the ruleset's cost from the addresses'.

kube-vip's shape, in another namespace (N <= 1,024: at most 1,024 base
chains on one hook): table ip kube_vip_v4, one base chain per Service at
postrouting/srcnat holding `ip saddr { POD } ip daddr != RANGE ...
snat to VIP`. Cold is one `nft -f` of all chains (kube-vip itself commits
at least twice per Service); a change deletes and re-adds the chain with
the new pod in one `nft -f` (kube-vip: three commits or more); a removal
deletes the chain. Times include starting the nft process, as kvnetd's
include the client round trip.

    tools/bench/kvnetd_scale.py [--sizes 1,100,1000] [--quick] [--out FILE]"""

import argparse
import ipaddress
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import OverLimit, Table, median, mib, ms  # noqa: E402
from flows import FlowTopology, Reference, fmt_rate, interleaved, references  # noqa: E402

import netns  # noqa: E402
from kvnet import KvnetClient, Kvnetd, mono_usec  # noqa: E402

os.environ.setdefault("KVEGRESS_BUILD_DIR", benchlib.BUILD)  # kvnet.py runs this build's kvnetd

VIP_BASE = int(ipaddress.IPv4Address("100.64.0.1"))
POD_BASE = int(ipaddress.IPv4Address("10.128.0.0"))
POD_NEW = int(ipaddress.IPv4Address("10.192.0.0"))
POD_ALT = int(ipaddress.IPv4Address("10.160.0.0"))
EXCLUDED = ["10.0.0.0/16", "10.96.0.0/12"]
KUBEVIP_MAX = 1024
# The VIPs are spread over this many veth interfaces of the router (VIP i
# on vip<i % VIP_IFACES>): the kernel adds an address in O(addresses on its
# interface) (IPv4 inet_rtm_newaddr, fib_sync_up), so 65,536 VIPs on one
# interface take longer than the step limit to bind (on 32: 49 s at load 3,
# 746 us per GrantVip against 170 us at 1,000; 128 leave room for a loaded
# machine).
VIP_IFACES = 128


def vip(i):
    return str(ipaddress.IPv4Address(VIP_BASE + i))


def pod(i, base=POD_BASE):
    return str(ipaddress.IPv4Address(base + i))


def key(i):
    return f"bench/s{i}"


def vip_iface(i):
    return f"vip{i % VIP_IFACES}"


def set_egress_args(i, p):
    return (key(i), vip(i), "", [p], [], [], [], EXCLUDED)


class Point:
    """One size's figures; None = not measured."""

    def __init__(self, n):
        self.n = n
        self.f = {}
        self.over = None  # the text printed for what could not be measured

    def __getitem__(self, k):
        return self.f.get(k)


def kvnetd_point(n, args):
    p = Point(n)
    try:
        return _kvnetd_point(p, n, args)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        # kvnetd died or a command failed: say so in the table, go on.
        p.over = f"failed: {str(e).splitlines()[0][:200]}"
        return p


def _kvnetd_point(p, n, args):
    lim = args.limit
    with netns.Topology("kvbk") as t:
        ft = FlowTopology(t)
        peers = t.netns("vips")
        names = [f"vip{j}" for j in range(VIP_IFACES)]
        netns.ip_batch(ft.router.name, [f"link add {x} type veth peer name {x} netns {peers.name}" for x in names] +
                       [f"link set {x} up" for x in names])
        netns.ip_batch(peers.name, [f"link set {x} up" for x in names])
        ifaces = [a for x in names for a in ("--interface", x)]
        k = Kvnetd(ft.router, extra_args=("--vip-range", "100.64.0.0/10", "--reconcile-interval", "30s",
                                          "--log-level", "info", *ifaces)).start()
        conn = KvnetClient(k.socket, timeout=lim)
        try:
            t0 = time.monotonic()
            deadline_usec = mono_usec() + 299 * 1000000
            try:
                errs = benchlib.pipeline(conn, (("GrantVip", "ssst", (key(i), vip(i), vip_iface(i), deadline_usec))
                                                for i in range(n)), t0 + lim)
            except OverLimit:
                p.over = f"grants > {lim:g} s"
                return p
            if errs:
                p.over = "over cap" if any("LimitExceeded" in (e[1] or "") for e in errs) else f"refused: {errs[0]}"
                p.f["refused"] = errs[0]
                return p
            p.f["grant"] = time.monotonic() - t0
            tx0 = benchlib.kvnetd_transactions(conn)
            cpu0 = (time.process_time(), benchlib.cpu_seconds(k.proc.pid),
                    benchlib.thread_cpu_seconds(k.proc.pid, "kvnetd-ct"))
            t1 = time.monotonic()
            try:
                errs = benchlib.pipeline(conn, (("SetEgress", "sssasa(sq)asasas", set_egress_args(i, pod(i)))
                                                for i in range(n)), t1 + lim)
            except OverLimit:
                p.over = f"SetEgress of {n:,} > {lim:g} s"
                return p
            if errs:
                p.over = "over cap" if any("LimitExceeded" in (e[1] or "") for e in errs) else f"refused: {errs[0]}"
                p.f["refused"] = errs[0]
                return p
            p.f["cold"] = time.monotonic() - t1
            # Who the cold time is: this client's CPU and kvnetd's.
            cpu1 = (time.process_time(), benchlib.cpu_seconds(k.proc.pid),
                    benchlib.thread_cpu_seconds(k.proc.pid, "kvnetd-ct"))
            p.f["cold_cpu_client"] = cpu1[0] - cpu0[0]
            p.f["cold_cpu_kvnetd"] = cpu1[1] - cpu0[1] if None not in (cpu0[1], cpu1[1]) else None
            p.f["cold_cpu_ct"] = cpu1[2] - cpu0[2] if None not in (cpu0[2], cpu1[2]) else None
            p.f["rss"] = benchlib.rss_kib(k.proc.pid)
            tx1 = benchlib.kvnetd_transactions(conn)
            p.f["cold_tx"] = tx1 - tx0 if tx0 is not None and tx1 is not None else None

            # Every Service changed at once, as kvpd's replay sends them.
            t1 = time.monotonic()
            try:
                errs = benchlib.pipeline(conn, (("SetEgress", "sssasa(sq)asasas", set_egress_args(i, pod(i, POD_ALT)))
                                                for i in range(n)), t1 + lim, window=n)
            except OverLimit:
                p.over = f"SetEgress of {n:,} at once > {lim:g} s"
                return p
            if errs:
                p.over = f"refused: {errs[0]}"
                return p
            p.f["burst"] = time.monotonic() - t1
            tx2 = benchlib.kvnetd_transactions(conn)
            p.f["burst_tx"] = tx2 - tx1 if tx1 is not None and tx2 is not None else None
            try:
                errs = benchlib.pipeline(conn, (("SetEgress", "sssasa(sq)asasas", set_egress_args(i, pod(i)))
                                                for i in range(n)), time.monotonic() + lim)
            except OverLimit:
                p.over = f"SetEgress of {n:,} back > {lim:g} s"
                return p

            # The same ruleset loaded by the nft CLI into an empty namespace.
            dump = ft.router.run("nft", "list", "table", "inet", "kvegress", timeout=lim).stdout
            scratch = t.netns("nftref")
            t2 = time.monotonic()
            scratch.run("nft", "-f", "-", input=dump, timeout=lim)
            p.f["nft_same"] = time.monotonic() - t2

            # One change (a pod replaced), three times, on Services spread over N.
            changes, txs = [], []
            for j, i in enumerate(sorted({n // 2, n - 1, 0})[:3]):
                # kvnetd's own count: `nft monitor` in a namespace holding
                # 10,000 chains did not echo its marker within 120 s.
                before = benchlib.kvnetd_transactions(conn)
                try:
                    dt, err = benchlib.call_timed(conn, "SetEgress", "sssasa(sq)asasas",
                                                  set_egress_args(i, pod(i, POD_NEW)), lim)
                except OverLimit:
                    p.over = f"change > {lim:g} s"
                    return p
                after = benchlib.kvnetd_transactions(conn)
                txs.append(after - before if None not in (before, after) else 0)
                if err:
                    p.over = f"change refused: {err}"
                    return p
                changes.append(dt)
            p.f["change"] = median(changes)
            p.f["tx"] = max(txs)

            # kvnetd idle first: the changes above queued conntrack deletions
            # for every pod they moved (kvnetd's worker thread, one filtered
            # dump each), which would take a core from the flows.
            t3 = time.monotonic()
            while (benchlib.kvnetd_metric(conn, "kvegress_conntrack_pods_pending") or 0) > 0:
                if time.monotonic() - t3 > lim:
                    p.over = f"conntrack deletions pending > {lim:g} s"
                    return p
                time.sleep(0.5)
            p.f["ct_wait"] = time.monotonic() - t3

            # New flows through this ruleset, from pods of Services spread over N.
            srcs = sorted({pod(i) for i in range(0, n, max(1, n // 16))} - {pod(i) for i in {n // 2, n - 1, 0}})
            if not srcs:
                srcs = [pod(i, POD_NEW) for i in {0}]
            (p.f["flows"], p.f["snat_share"]), (p.f["flows_al"], _), (p.f["flows_ref"], _) = interleaved(
                [(ft, srcs), (AcceptLocal(ft), srcs), args.ref.run()], args.flows, args.reps)

            removals = []
            for i in sorted({n // 2, n - 1, 0}):
                try:
                    dt, err = benchlib.call_timed(conn, "RemoveService", "s", (key(i),), lim)
                except OverLimit:
                    p.over = f"removal > {lim:g} s"
                    return p
                removals.append(dt)
            p.f["remove"] = median(removals)
            p.f["rss_end"] = benchlib.rss_kib(k.proc.pid)
            fences = k.read_log().count("removing its VIPs and egress")
            p.f["fences"] = fences
        finally:
            conn.close()
            k.stop()
    return p


class AcceptLocal:
    """The same router with accept_local on its pod side: the kernel then
    skips its check that a forwarded packet's source is not one of the
    namespace's own addresses (fib_validate_source -> inet_lookup_ifaddr_rcu,
    a hash of 256 buckets per namespace: with 65,536 VIPs bound, a walk of
    about 256 addresses per forwarded packet). What is left is the
    ruleset's cost."""

    def __init__(self, ft):
        self.ft = ft

    def once(self, srcs, flows):
        self.ft.router.sysctl("net.ipv4.conf.eth0.accept_local", 1)
        try:
            return self.ft.once(srcs, flows)
        finally:
            self.ft.router.sysctl("net.ipv4.conf.eth0.accept_local", 0)


def kubevip_chain(i, p):
    uid = f"00000000-0000-4000-8000-{i:012d}"
    return (f"kube_vip_snat_{uid}",
            f"ip saddr {{ {p} }} ip daddr != 10.0.0.0-10.0.255.255 ip daddr != 10.96.0.0-10.111.255.255 "
            f"snat to {vip(i)}")


def kubevip_point(n, limit):
    """Returns {cold, change, remove} in seconds, or a string."""
    if n > KUBEVIP_MAX:
        return "n/a (1,024 base chains per hook)"
    try:
        return _kubevip_point(n, limit)
    except subprocess.TimeoutExpired:
        return f"> {limit:g} s"


def _kubevip_point(n, limit):
    out = {}
    hook = "{ type nat hook postrouting priority srcnat; policy accept; }"
    with netns.Topology("kvbv") as t:
        ns = t.netns("kubevip")
        lines = ["add table ip kube_vip_v4"]
        for i in range(n):
            chain, rule = kubevip_chain(i, pod(i))
            lines += [f"add chain ip kube_vip_v4 {chain} {hook}", f"add rule ip kube_vip_v4 {chain} {rule}"]
        t0 = time.monotonic()
        ns.run("nft", "-f", "-", input="\n".join(lines) + "\n", timeout=limit)
        out["cold"] = time.monotonic() - t0
        changes, removals = [], []
        for i in sorted({n // 2, n - 1, 0}):
            chain, rule = kubevip_chain(i, pod(i, POD_NEW))
            script = (f"delete chain ip kube_vip_v4 {chain}\nadd chain ip kube_vip_v4 {chain} {hook}\n"
                      f"add rule ip kube_vip_v4 {chain} {rule}\n")
            t0 = time.monotonic()
            ns.run("nft", "-f", "-", input=script, timeout=limit)
            changes.append(time.monotonic() - t0)
        for i in sorted({n // 2, n - 1, 0}):
            chain, _ = kubevip_chain(i, pod(i))
            t0 = time.monotonic()
            ns.run("nft", "delete", "chain", "ip", "kube_vip_v4", chain, timeout=limit)
            removals.append(time.monotonic() - t0)
        out["change"], out["remove"] = median(changes), median(removals)
    return out


def goals(prog, flows_t, points, sizes):
    """Issue 10's goals against this run's figures, stated, never tuned."""
    top = max(sizes)
    measured = [p for p in points if p["change"] is not None]
    if measured:
        worst = max(measured, key=lambda p: p["change"])
        reach = max(p.n for p in measured)
        verdict = "met" if worst["change"] <= 0.005 and reach >= top else "missed"
        prog.note(f"goal, one change <= 5 ms at every N up to {top:,}: {verdict}; slowest {ms(worst['change'])} "
                  f"at N={worst.n:,} ({worst['change'] / 0.005:.1f} x the goal), measured up to N={reach:,}")
    cold = [p for p in points if p["cold"] is not None and p["nft_same"]]
    if cold:
        worst = max(cold, key=lambda p: p["cold"] / p["nft_same"])
        reach = max(p.n for p in cold)
        verdict = "met" if worst["cold"] <= worst["nft_same"] and reach >= top else "missed"
        prog.note(f"goal, N from cold no slower than `nft -f` of the same ruleset: {verdict}; worst "
                  f"{worst['cold'] / worst['nft_same']:.1f} x at N={worst.n:,}, measured up to N={reach:,}")
    burst = [p for p in points if p["burst"] is not None and p["nft_same"]]
    if burst:
        worst = max(burst, key=lambda p: p["burst"] / p["nft_same"])
        prog.note(f"the same goal for N SetEgress sent at once (as kvpd's replay): worst "
                  f"{worst['burst'] / worst['nft_same']:.1f} x at N={worst.n:,}, measured up to "
                  f"N={max(p.n for p in burst):,}")
    grants = [p for p in points if p["grant"] is not None and p.n >= 100]
    for p in grants:
        prog.note(f"N={p.n:,}: one GrantVip took {p['grant'] / p.n * 1e6:,.0f} us on average")
    mem = [p for p in points if p["rss"] is not None]
    if len(mem) >= 2 and mem[-1].n > mem[0].n:
        per = (mem[-1]["rss"] - mem[0]["rss"]) * 1024 / (mem[-1].n - mem[0].n)
        prog.note(f"kvnetd memory per Service (RSS growth from N={mem[0].n:,} to N={mem[-1].n:,}): "
                  f"about {per:,.0f} bytes")
    fl = [p for p in points if p["flows_ratio"] is not None]
    if fl:
        last = max(fl, key=lambda p: p.n)
        verdict = "met" if last.n >= top and last["flows_ratio"] >= 0.9 else "missed"
        flows_t.note(f"goal, new-flow rate at {top:,} Services >= 0.9 x one rule: {verdict}; largest N measured "
                     f"{last.n:,}: {last['flows_ratio']:.2f} x")
        if last["flows_al"] is not None and last["flows_ref"]:
            flows_t.note(f"at N={last.n:,} with accept_local=1 (the ruleset without the kernel's local-source "
                         f"lookup among the {last.n:,} VIPs): {last['flows_al'] / last['flows_ref']:.2f} x one rule")


def main():
    ap = benchlib.common_args(argparse.ArgumentParser(description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--sizes", help="comma-separated N (default 1,100,1000,10000,65536; --quick: 1,100)")
    ap.add_argument("--limit", type=float, default=120, help="seconds per point (default 120)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1, 100] if args.quick else
                                                                          [1, 100, 1000, 10000, 65536])
    args.flows = 50000 if args.quick else 100000
    args.reps = 5
    args.ref = Reference()
    try:
        run_sizes(args, sizes)
    finally:
        args.ref.close()


def run_sizes(args, sizes):
    cap = benchlib.caps()
    cap_n = min(cap.get("SERVICES", 1 << 30), cap.get("VIPS", 1 << 30), cap.get("PODS_TOTAL", 1 << 30))
    bare, one, share = references(args.ref, args.flows, args.reps)
    flows_t = Table(f"New UDP flows per second through the router (median of {args.reps} runs of "
                    f"{args.flows:,} flows, each ruleset measured in turn with a one-rule router; one core "
                    "forwards)",
                    ["router ruleset", "new flows/s", "vs one SNAT rule (runs interleaved)", "SNATed at the sink",
                     "accept_local=1: new flows/s (vs one rule)"])
    flows_t.add("none (no NAT, no conntrack)", fmt_rate(bare), f"{bare / one:.2f}" if one else "-", "0 %", "-")
    flows_t.add("one SNAT rule", fmt_rate(one), "1.00", f"{share:.0%}", "-")

    prog = Table(f"Programming N Services: kvnetd over its socket vs `nft -f` (the VIPs spread over {VIP_IFACES} veth "
                 "interfaces)",
                 ["N", "kvnetd: N GrantVip", "kvnetd: N SetEgress (cold)", "nft transactions (cold)",
                  "kvnetd: N SetEgress at once", "nft transactions (at once)", "`nft -f` of kvnetd's ruleset",
                  "kube-vip shape: cold `nft -f`", "kvnetd: one change", "kube-vip shape: one change",
                  "nft transactions per kvnetd change", "kvnetd: one removal", "kube-vip shape: one removal",
                  "kvnetd RSS after cold"])
    skip = None
    points = []
    for n in sizes:
        kv = kubevip_point(n, args.limit)
        kvs = (lambda k: ms(kv[k])) if isinstance(kv, dict) else (lambda k: kv)
        if skip:
            why = skip if skip == "over cap" else f"skipped ({skip})"
            prog.add(f"{n:,}", why, "-", "-", "-", "-", "-", kvs("cold"), "-", kvs("change"), "-", "-", kvs("remove"),
                     "-")
            flows_t.add(f"kvnetd, {n:,} Services", "skipped", "-", "-", "-")
            continue
        p = kvnetd_point(n, args)
        points.append(p)
        num = (lambda k: "-" if p[k] is None else f"{p[k]:,}")
        cells = [ms(p["grant"]), ms(p["cold"]), num("cold_tx"), ms(p["burst"]), num("burst_tx"), ms(p["nft_same"]),
                 kvs("cold"), ms(p["change"]), kvs("change"), num("tx"), ms(p["remove"]), kvs("remove"),
                 mib(p["rss"])]
        kv_cols = (6, 8, 11)  # kube-vip's cells, never "not measured" for kvnetd's reason
        if p.over:
            text = p.over
            if p.over == "over cap":
                text = f"over cap: {p['refused'][2] or p['refused'][1]}"
            elif n > cap_n:
                text += f" (cap today {cap_n:,})"
            # The first kvnetd cell not measured says why.
            idx = next(i for i, c in enumerate(cells) if c == "-" and i not in kv_cols)
            cells[idx] = text
            skip = "over cap" if p.over == "over cap" else f"N={n:,}: {p.over}"
        prog.add(f"{n:,}", *cells)
        if p["flows"] is not None:
            one_now = p["flows_ref"]
            p.f["flows_ratio"] = p["flows"] / one_now if one_now else None
            flows_t.add(f"kvnetd, {n:,} Services", fmt_rate(p["flows"]),
                        f"{p['flows'] / one_now:.2f} (rule: {fmt_rate(one_now)})" if one_now else "-",
                        f"{p['snat_share']:.0%}",
                        f"{fmt_rate(p['flows_al'])} ({p['flows_al'] / one_now:.2f})" if one_now else "-")
        else:
            flows_t.add(f"kvnetd, {n:,} Services", "not measured", "-", "-", "-")
        if p["cold_cpu_kvnetd"] is not None:
            ct = (f" (its conntrack worker {ms(p['cold_cpu_ct'])}: a dump of the conntrack table per pod mapped)"
                  if p["cold_cpu_ct"] is not None else "")
            prog.note(f"N={n:,}: CPU during the cold SetEgress ({ms(p['cold'])}): this client (Python) "
                      f"{ms(p['cold_cpu_client'])}, kvnetd {ms(p['cold_cpu_kvnetd'])}{ct}")
        if p["ct_wait"] is not None and p["ct_wait"] >= 1:
            flows_t.note(f"N={n:,}: kvnetd's conntrack worker finished the deletions the changes queued "
                         f"{p['ct_wait']:.0f} s after the last change; flows measured after it")
        if p["fences"]:
            prog.note(f"N={n:,}: kvnetd fenced {p['fences']} Services during the run")
    goals(prog, flows_t, points, sizes)
    prog.note(f"caps in shared/kvnetd-bus.h of this checkout: services {cap.get('SERVICES'):,}, VIPs "
              f"{cap.get('VIPS'):,}, pods {cap.get('PODS_TOTAL'):,}")
    prog.note(f"time limit {args.limit:g} s per step; a step over it ends the series (later sizes skipped)")
    benchlib.write_markdown(args.out, [prog, flows_t])


if __name__ == "__main__":
    main()
