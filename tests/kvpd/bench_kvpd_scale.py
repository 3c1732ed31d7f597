#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark (not a test, not in the pass/fail suite): kvpd at cluster scale.

One node (tests/cluster's harness: the test API server, the real kvnetd, kvelectd and kvpd in a node
namespace) with 20 egress Services whose one pod runs on this node, in a cluster that holds N other
Services, each with an EndpointSlice of 3 endpoints on other nodes. For each N (a curve: 100, 1,000,
10,000 by default) and each kvpd binary given, kvpd is started cold and the script prints:

  list s         a paged list (500 per page) of every Service and EndpointSlice by this script: the
                 time to list the cluster, the reference for start-to-programmed
  synced s       kvpd's start to its "all watches synced"
  programmed s   kvpd's start to kvnetd holding all 20 Services (ListEgress)
  cpu s          kvpd's CPU time (user + system) at programmed
  rss MiB        kvpd's VmRSS, 2 s after programmed
  idle cpu %     kvpd's CPU at rest (a kvpd with the lag probe wakes 100 times a second)
  change ms      kvpd CPU per unrelated EndpointSlice change (PUTs at about 20/s), less the idle rate
  cidr ms        kvpd CPU for a cluster-network change (a Node with new pod CIDRs joins), less the idle rate
  lag ms         the event loop's longest lag kvpd logged (a 10 ms timer's lateness, wall clock: on a loaded
                 machine it includes waiting for a CPU; kvpd with the probe only)
  busy ms        the most CPU kvpd used between two ticks of that timer: its longest callback stretch

  python3 tests/kvpd/bench_kvpd_scale.py --build-dir build-rel [--kvpd NAME=PATH ...] [--sizes 100,1000]
Run as root (network namespaces). Standard library only.
"""
import argparse
import http.client
import json
import os
import re
import threading
import time

import cluster
from dbus_p2p import Connection

NET_PATH, NET_IF = "/io/kvegress/Net1", "io.kvegress.Net1"
N_EGRESS = 20
BENCH_NS = "bench"
# 20 egress VIPs: wider than the harness's /29.
cluster.VIP_RANGE4 = "192.168.0.192/26"
EGRESS_VIPS = ["192.168.0.%d" % i for i in range(200, 200 + N_EGRESS)]


def clk_tck():
    return os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck()


def proc_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class Api:
    """Plain HTTPS calls to the test API server, one connection per thread."""

    def __init__(self, c):
        self.c = c
        self.local = threading.local()

    def conn(self):
        if not getattr(self.local, "conn", None):
            host = self.c.api_url.split("//", 1)[1]
            h, p = host.rsplit(":", 1)
            self.local.conn = cluster_conn(self.c, h, int(p))
        return self.local.conn

    def call(self, method, path, body=None, ctype="application/json"):
        hdrs = {"Authorization": "Bearer " + self.c.admin_token, "Content-Type": ctype}
        for attempt in range(3):
            try:
                conn = self.conn()
                conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.local.conn = None
                if attempt == 2:
                    raise
        return 0, b""


def cluster_conn(c, host, port):
    """A connection made from inside the API server's namespace (the harness's own way in)."""
    import socket

    class Conn(http.client.HTTPSConnection):
        def connect(conn):  # noqa: N805
            s = cluster.ns_socket(c.api_ns, socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect((cluster.API_IP, cluster.API_PORT))
            conn.sock = c.ssl_ctx.wrap_socket(s, server_hostname=cluster.API_IP)
    return Conn(host, port, context=c.ssl_ctx, timeout=60)


def svc_obj(i):
    name = "svc-%05d" % i
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": BENCH_NS,
                         "labels": {"app": name, "app.kubernetes.io/part-of": "bench", "tier": "backend"},
                         "annotations": {"example.com/owner": "team-%d" % (i % 17),
                                         "example.com/description": "an ordinary ClusterIP Service, %d" % i}},
            "spec": {"type": "ClusterIP", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                               {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}}


def slice_obj(i, gen=0):
    name = "svc-%05d" % i
    eps = []
    for k in range(3):
        node = "other-%d" % ((i + k) % 50)
        eps.append({"addresses": ["10.%d.%d.%d" % (100 + (i >> 16) % 100, (i >> 8) & 255, (i * 3 + k) & 255)],
                    "nodeName": node, "zone": "z%d" % (k % 3),
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "targetRef": {"kind": "Pod", "namespace": BENCH_NS, "name": "%s-%d-%d" % (name, k, gen),
                                  "uid": "00000000-0000-0000-%04d-%012d" % (k, i)}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name + "-abcde", "namespace": BENCH_NS,
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "metrics", "port": 9090, "protocol": "TCP"}],
            "endpoints": eps}


def fill(api, start, end, threads=4):
    """Creates Services and EndpointSlices start..end-1 in the bench namespace."""
    errors = []

    def work(k):
        for i in range(start + k, end, threads):
            for path, obj in (("/api/v1/namespaces/%s/services" % BENCH_NS, svc_obj(i)),
                              ("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % BENCH_NS, slice_obj(i))):
                st, data = api.call("POST", path, obj)
                if st not in (200, 201, 409):
                    errors.append((st, data[:200]))
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError("fill failed: %s" % errors[:3])


def list_time(api):
    t = time.monotonic()
    n = 0
    for path in ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"):
        cont = ""
        while True:
            q = "?limit=500" + ("&continue=" + cont if cont else "")
            st, data = api.call("GET", path + q)
            if st != 200:
                raise RuntimeError("list %s: HTTP %d" % (path, st))
            lst = json.loads(data)
            n += len(lst.get("items") or [])
            cont = lst.get("metadata", {}).get("continue", "")
            if not cont:
                break
    return time.monotonic() - t, n


def egress_keys(node, tries=5):
    """kvnetd's Services; a busy machine may keep it from answering at once."""
    for attempt in range(tries):
        try:
            with Connection(node._paths()["kvnetd_sock"], timeout=30) as c:
                return {e[0] for e in c.call(NET_PATH, NET_IF, "ListEgress")[0]}
        except (OSError, TimeoutError):
            if attempt == tries - 1:
                raise
            time.sleep(1)
    return set()


def log_since(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def measure(c, api, node, name, binary, n_cluster, args):
    want = {"default/eg-%02d" % i for i in range(N_EGRESS)}
    p = node.procs.get("kvpd")
    if p and p.alive():
        p.stop(timeout=60)  # kvpd removes what it programmed: kvnetd starts the next run empty
    t = time.monotonic()
    while egress_keys(node) and time.monotonic() - t < 30:
        time.sleep(0.2)
    c.binaries["kvpd"] = binary
    log = os.path.join(node.dir, "kvpd.log")
    off = os.path.getsize(log) if os.path.exists(log) else 0
    t0 = time.monotonic()
    proc = node.start_daemon("kvpd")
    synced = programmed = None
    while time.monotonic() - t0 < args.timeout:
        if not proc.alive():
            raise RuntimeError("kvpd exited:\n" + log_since(log, off)[-3000:])
        if synced is None and "all watches synced" in log_since(log, off):
            synced = time.monotonic() - t0
        if want <= egress_keys(node):
            programmed = time.monotonic() - t0
            break
        time.sleep(0.05)
    cpu = proc_cpu(proc.pid)
    if synced is None and "all watches synced" in log_since(log, off):
        synced = programmed
    time.sleep(2)
    rss = proc_rss_mib(proc.pid)

    # kvpd's CPU at rest (its lag probe wakes it 100 times a second), subtracted from what follows.
    c0, w0 = proc_cpu(proc.pid), time.monotonic()
    time.sleep(3)
    idle = (proc_cpu(proc.pid) - c0) / (time.monotonic() - w0)

    # Unrelated EndpointSlice changes at about 20/s.
    n_changes = min(args.changes, n_cluster)
    c0, w0 = proc_cpu(proc.pid), time.monotonic()
    for k in range(n_changes):
        i = (k * 7919) % n_cluster
        st, _ = api.call("PUT", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/svc-%05d-abcde"
                         % (BENCH_NS, i), slice_obj(i, gen=int(time.time() * 1000) + k))
        if st != 200:
            raise RuntimeError("PUT slice: HTTP %d" % st)
        time.sleep(0.05)
    time.sleep(1.5)
    change_ms = max(0.0, proc_cpu(proc.pid) - c0 - idle * (time.monotonic() - w0)) * 1000 / max(n_changes, 1)

    # A cluster-network change: a Node with new pod CIDRs joins (then leaves, so the next run starts alike).
    c0, w0 = proc_cpu(proc.pid), time.monotonic()
    node_name = "joiner-%d" % int(time.time() * 1000)
    k = int(time.time()) % 200
    st, _ = api.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                               "metadata": {"name": node_name},
                                               "spec": {"podCIDRs": ["10.250.%d.0/24" % k,
                                                                     "fd00:250:%x::/64" % k]}})
    if st not in (200, 201):
        raise RuntimeError("POST node: HTTP %d" % st)
    time.sleep(3)
    cidr_ms = max(0.0, proc_cpu(proc.pid) - c0 - idle * (time.monotonic() - w0)) * 1000
    api.call("DELETE", "/api/v1/nodes/" + node_name)
    time.sleep(1)
    lost = want - egress_keys(node)
    text = log_since(log, off)
    lags = [float(x) for x in re.findall(r"event loop lag: max ([0-9.]+) ms", text)]
    lag = max(lags) if lags else None
    busies = [float(x) for x in re.findall(r"longest busy stretch ([0-9.]+) ms", text)]
    busy = max(busies) if busies else None
    proc.stop(timeout=60)  # not running while the next fill goes on
    return {"kvpd": name, "cluster services": n_cluster, "programmed s": programmed, "synced s": synced,
            "cpu s": cpu, "rss MiB": rss, "idle cpu %": idle * 100, "change ms": change_ms, "cidr ms": cidr_ms, "lag ms": lag, "busy ms": busy,
            "lost after changes": len(lost)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True, help="kvnetd, kvelectd (and kvpd) from here")
    ap.add_argument("--kvpd", action="append", default=[], help="NAME=PATH of a kvpd to measure (repeatable)")
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--changes", type=int, default=100, help="unrelated EndpointSlice changes per run")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    bd = os.path.abspath(args.build_dir)
    kvpds = [kv.split("=", 1) for kv in args.kvpd] or [["this", os.path.join(bd, "kvpd", "kvpd")]]
    binaries = {d: os.path.join(bd, d, d) for d in ("kvnetd", "kvelectd", "kvpd")}
    binaries["kvpd"] = kvpds[0][1]
    sizes = [int(x) for x in args.sizes.split(",")]

    cluster.install_signal_handlers()
    c = cluster.Cluster(binaries=binaries, nodes=1, lease=(15, 10, 2), log=lambda m: print("# " + m, flush=True))
    rows = []
    try:
        c.start()
        api = Api(c)
        node = c.nodes[0]
        st, _ = api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": BENCH_NS}})
        # One pod address per egress Service (kvnetd maps a pod to one Service): slices written directly,
        # pointing at addresses of this node's pod network.
        objs = []
        for i in range(N_EGRESS):
            name = "eg-%02d" % i
            objs.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": name, "namespace": "default",
                                      "annotations": {"kube-vip.io/loadbalancerIPs": EGRESS_VIPS[i],
                                                      "kube-vip.io/egress": "true"}},
                         "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                  "selector": {"app": name}, "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                                  "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}})
            objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                         "metadata": {"name": name + "-v4", "namespace": "default",
                                      "labels": {"kubernetes.io/service-name": name}},
                         "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                         "endpoints": [{"addresses": ["10.244.1.%d" % (100 + i)], "nodeName": node.name,
                                        "conditions": {"ready": True, "serving": True, "terminating": False},
                                        "targetRef": {"kind": "Pod", "namespace": "default", "name": name}}]})
        c.apply(*objs)
        have = 0
        for n in sizes:
            t = time.monotonic()
            fill(api, have, n)
            print("# filled to %d Services + %d EndpointSlices in %.1f s" % (n, n, time.monotonic() - t), flush=True)
            have = n
            lt, n_listed = list_time(api)
            for name, path in kvpds:
                r = measure(c, api, node, name, path, n, args)
                r["list s"] = lt
                rows.append(r)
                print("# " + json.dumps(r), flush=True)
    finally:
        c.close()

    cols = ["kvpd", "cluster services", "list s", "synced s", "programmed s", "cpu s", "rss MiB", "idle cpu %",
            "change ms",
            "cidr ms", "lag ms", "busy ms", "lost after changes"]
    print()
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        out = []
        for k in cols:
            v = r.get(k)
            out.append("-" if v is None else ("%.2f" % v if isinstance(v, float) else str(v)))
        print(" | ".join(out))


if __name__ == "__main__":
    main()
