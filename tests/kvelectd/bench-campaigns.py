#!/usr/bin/env python3
"""Benchmark: 1,000 campaigns in one kvelectd against the test API server, with kube-vip's default timings
(15/10/2 s). Prints a table of API request rates per node, measured by the server (GET /_kvtest/stats,
counted per node token), next to the expected figures:

  holder      1,000 leases held: renewals only, expected leases/retryPeriod = 500 req/s
  watcher     same 1,000 campaigns, holds none: expected ~0 req/s beyond its watches
  poller      same, with --no-watch (client-go's polling, the reference): expected
              leases / (retryPeriod * 1.6 mean jitter) = ~312 req/s

Usage: tests/kvelectd/bench-campaigns.py [--leases N] [--window SEC] [--namespaces N]
(KVEGRESS_BUILD_DIR names the build with kvelectd and kvelect-client; PYTHONPATH=tests/lib.)"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from electharness import Cluster  # noqa: E402


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def by_user(api):
    return api.stats()["by_user"]


def measure(cluster, nodes, window):
    api = cluster.api
    before = by_user(api)
    cpu0 = {n.name: cpu_seconds(n.proc.pid) for n in nodes}
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    after = by_user(api)
    out = {}
    for n in nodes:
        reqs = after.get(n.name, 0) - before.get(n.name, 0)
        out[n.name] = (reqs / dt, (cpu_seconds(n.proc.pid) - cpu0[n.name]) / dt * 100, rss_kib(n.proc.pid))
    return out


def count_leading(node, leases):
    lst = node.list(timeout=30)
    return sum(1 for l in leases if lst.get(l, {}).get("leading"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--leases", type=int, default=1000)
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--namespaces", type=int, default=10)
    args = p.parse_args()

    durations = ("15s", "10s", "2s")
    retry = 2.0
    c = Cluster()
    try:
        namespaces = ["bench-%d" % i for i in range(args.namespaces)]
        for ns in namespaces:
            c.api.namespace(ns)
        leases = [(namespaces[i % len(namespaces)], "kubevip-svc-%d" % i) for i in range(args.leases)]

        holder = c.node("holder", durations=durations, log_level="info")
        t0 = time.monotonic()
        holder.campaign_many(leases)
        while count_leading(holder, leases) < len(leases):
            if time.monotonic() - t0 > 120:
                raise SystemExit("holder did not take all leases in 120 s")
            time.sleep(0.2)
        acquire_s = time.monotonic() - t0
        print("holder took %d leases in %.2f s (%d namespaces, one watch each)" % (
            len(leases), acquire_s, len(namespaces)), flush=True)
        time.sleep(3)

        def losses():
            return sum(1 for ln in holder.logtext().splitlines() if ": not leading" in ln)

        def renew_rtt(since):
            """Round trips of the holder's renewals from its Renewed signals: the signal's time minus the
            send time (deadline - renewDeadline)."""
            with holder.cond:
                sigs = holder.signals[since:]
            rtts = sorted((s["t"] - (s["deadline"] - 10_000_000)) / 1e3 for s in sigs if s["signal"] == "Renewed")
            if not rtts:
                return "no renewals"
            return "renew round trip: n=%d median %.1f ms, p99 %.1f ms, max %.1f ms" % (
                len(rtts), rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.99)], rtts[-1])

        phases = []
        mark = holder.mark()
        rates = measure(c, [holder], args.window)
        phases.append(("holder alone", rates["holder"][0], losses(), renew_rtt(mark)))

        watcher = c.node("watcher", durations=durations, log_level="info")
        watcher.campaign_many(leases)
        time.sleep(3)
        mark = holder.mark()
        r = measure(c, [holder, watcher], args.window)
        rates["watcher"] = r["watcher"]
        phases.append(("holder + watcher", r["holder"][0], losses(), renew_rtt(mark)))

        poller = c.node("poller", durations=durations, log_level="info", args=["--no-watch"])
        poller.campaign_many(leases)
        time.sleep(5)
        mark = holder.mark()
        r = measure(c, [holder, watcher, poller], args.window)
        rates["poller"] = r["poller"]
        phases.append(("holder + watcher + poller", r["holder"][0], losses(), renew_rtt(mark)))

        n = len(leases)
        expected = {
            "holder": n / retry,
            "watcher": 0.0,
            "poller": n / (retry * (1 + 1.2 / 2)),
        }
        role = {"holder": "holds all (renews)", "watcher": "holds none, watches",
                "poller": "holds none, polls (--no-watch)"}
        print()
        print("%d campaigns per node, leaseDuration/renewDeadline/retryPeriod = 15/10/2 s, window %.0f s" % (
            n, args.window))
        print("%-8s %-32s %10s %10s %8s %9s" % ("node", "role", "req/s", "expected", "CPU %", "RSS MiB"))
        for name in ("holder", "watcher", "poller"):
            rr, cpu, rss = rates[name]
            print("%-8s %-32s %10.1f %10.1f %8.1f %9.1f" % (name, role[name], rr, expected[name], cpu,
                                                       rss / 1024))
        print("(expected: holder leases/retryPeriod, an upper bound: the next renewal starts retryPeriod after"
              " the previous one completes; poller leases/(retryPeriod x 1.6 mean jitter))")
        print()
        print("%-28s %12s %8s  %s" % ("phase", "holder req/s", "losses", "holder's renewals"))
        for name, rr, lost, rtt in phases:
            print("%-28s %12.1f %8d  %s" % (name, rr, lost, rtt))
        print()
        stats = c.api.stats()
        print("holder leads %d/%d at the end; server totals by verb: %s; open watches: %s" % (
            count_leading(holder, leases), n,
            {k: v for k, v in sorted(stats["by_verb_resource"].items())}, stats.get("open_watches")))
    finally:
        c.close()


if __name__ == "__main__":
    main()
