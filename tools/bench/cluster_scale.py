#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kvpd, kvelectd and kvnetd on one node of the simulated cluster
(tests/cluster/), against the test API server holding many Services.

The API server is filled before the daemons start: 10,000 Services and
10,000 EndpointSlices (--quick: 1,000); 1,000 of them (--quick: 100) are
egress LoadBalancer Services (externalTrafficPolicy Local, one VIP from
192.168.16.0/20) whose slice has one ready endpoint on this node; the
others are ClusterIP Services whose slice has two endpoints on other nodes.
Lease timings are kube-vip's defaults (15/10/2 s); the daemons run the
release build, as their own users, at log level info.

Figures:
  - time to list them once (one GET of each kind, from the API server's
    network), the reference of issue 10's goal "start to programmed within
    2 x the time to list";
  - time to converge, from starting the daemons until every egress VIP is
    bound on the node and kvnetd holds every egress policy (ListEgress);
  - CPU each daemon used until then, and per minute at rest afterwards;
  - RSS of each daemon at rest (the goals are judged on it), and its PSS
    (smaps_rollup): the three share the pages of libcurl, openssl,
    libsystemd and jansson, which RSS counts once per daemon;
  - event-loop lag, the worst since start: kvnetd's and kvelectd's
    kvegress_event_loop_lag_max_seconds (GetMetrics: how late a 1 s timer
    fired); kvpd's from its log (at debug level, every 10 s: how late a
    10 ms timer fired, and the longest stretch of CPU between two ticks);
  - fences: kvnetd's own count (kvegress_fences_total, GetMetrics), else
    its fence log lines (MESSAGE_ID of a fence); must be 0.

    tools/bench/cluster_scale.py [--quick] [--services N] [--egress M] [--limit S] [--out FILE]"""

import argparse
import copy
import http.client
import ipaddress
import json
import os
import re
import ssl
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import Table, mib  # noqa: E402

import cluster as kc  # noqa: E402
from dbus_p2p import Connection  # noqa: E402
from netns import ns_socket  # noqa: E402

VIP_NET = ipaddress.IPv4Network("192.168.16.0/20")
# kvnetd's fence lines carry this MESSAGE_ID (shared/catalog.h,
# KVEGRESS_MESSAGE_VIP_FENCED); their wording has changed before, and a
# count of a wording that no longer exists read 0 fences for a run that had
# thousands.
FENCE_ID = "MESSAGE_ID=22a9ea33bea143ccb158fddc7503e6a2"
DAEMONS = ("kvnetd", "kvelectd", "kvpd")


class Api:
    """One kept-alive HTTPS connection into the API server's namespace."""

    def __init__(self, c):
        self.c = c
        ctx = ssl.create_default_context(cafile=os.path.join(c.api_dir, "ca.crt"))

        class Conn(http.client.HTTPSConnection):
            def connect(conn):  # noqa: N805 - the connection
                s = ns_socket(c.api_ns, kc.socket.AF_INET, kc.socket.SOCK_STREAM)
                s.settimeout(120)
                # Headers and body go in two writes: without this, each request
                # waits for the server's delayed ACK (about 40 ms).
                s.setsockopt(kc.socket.IPPROTO_TCP, kc.socket.TCP_NODELAY, 1)
                s.connect((kc.API_IP, kc.API_PORT))
                conn.sock = ctx.wrap_socket(s, server_hostname=kc.API_IP)

        self.conn = Conn(kc.API_IP, kc.API_PORT, context=ctx, timeout=120)
        self.headers = {"Authorization": f"Bearer {c.admin_token}", "Accept": "application/json",
                        "Content-Type": "application/json"}

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=self.headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return raw


def objects(n_services, n_egress):
    """(Service, EndpointSlice) pairs; the first n_egress are egress Services on node1."""
    for i in range(n_services):
        if i < n_egress:
            name = f"egress-{i}"
            vip = str(VIP_NET.network_address + 1 + i)
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": "default",
                                "annotations": {"kube-vip.io/egress": "true", "kube-vip.io/loadbalancerIPs": vip}},
                   "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": name},
                            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}
            eps = [{"addresses": [f"10.244.{1 + i // 250}.{2 + i % 250}"], "nodeName": "node1",
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": f"{name}-pod"}}]
        else:
            name = f"plain-{i}"
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": "default"},
                   "spec": {"type": "ClusterIP", "selector": {"app": name},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
            eps = [{"addresses": [f"10.245.{(i >> 8) & 255}.{i & 255}"], "nodeName": node,
                    "conditions": {"ready": True, "serving": True, "terminating": False}}
                   for node in ("node-a", "node-b")]
            eps[1]["addresses"] = [f"10.246.{(i >> 8) & 255}.{i & 255}"]
        sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{name}-abcde", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": name,
                                      "endpointslice.kubernetes.io/managed-by": "bench"}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
              "endpoints": eps}
        yield svc, sl


def preload(c, n_services, n_egress):
    """Fills the API server through its state file: one Service and one
    EndpointSlice of each sort are created through the API (so they carry
    the server's defaults), the server is stopped (it saves its state),
    the state is written back with every object derived from those, and the
    server is started again on it. Creating 20,000 objects one by one
    through the Python server takes minutes; this takes seconds."""
    api = Api(c)
    made = {}
    for svc, sl in objects(n_egress + 1, n_egress):
        if svc["metadata"]["name"] in ("egress-0", f"plain-{n_egress}"):
            made[svc["metadata"]["name"]] = (
                json.loads(api.request("POST", "/api/v1/namespaces/default/services", svc)),
                json.loads(api.request("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", sl)))
    api.conn.close()
    c.apiserver.stop()
    path = os.path.join(c.api_dir, "state.json")
    with open(path) as f:
        st = json.load(f)
    svc_key = next(k for k, v in st["objects"].items() if any(o["metadata"]["name"] == "egress-0" and
                                                               o.get("spec", {}).get("type") for o in v))
    sl_key = next(k for k, v in st["objects"].items() if any("addressType" in o for o in v))
    rv = int(st["rv"])
    svcs, slices = [], []
    for i, (svc, sl) in enumerate(objects(n_services, n_egress)):
        tsvc, tsl = made["egress-0" if i < n_egress else f"plain-{n_egress}"]
        o = copy.deepcopy(tsvc)
        o["metadata"].update(svc["metadata"])
        o["metadata"]["uid"] = str(uuid.uuid4())
        o["metadata"]["resourceVersion"] = str(rv + 2 * i + 1)
        o["spec"]["selector"] = svc["spec"]["selector"]
        ip_ = str(ipaddress.IPv4Address("10.100.0.0") + i)
        o["spec"]["clusterIP"], o["spec"]["clusterIPs"] = ip_, [ip_]
        if i < n_egress:
            o["spec"]["ports"][0]["nodePort"] = 30000 + i
            o["spec"]["healthCheckNodePort"] = 30000 + n_egress + i
        svcs.append(o)
        o = copy.deepcopy(tsl)
        o["metadata"].update(sl["metadata"])
        o["metadata"]["uid"] = str(uuid.uuid4())
        o["metadata"]["resourceVersion"] = str(rv + 2 * i + 2)
        o["endpoints"] = sl["endpoints"]
        slices.append(o)
    st["objects"][svc_key] = [o for o in st["objects"][svc_key] if o["metadata"]["namespace"] != "default" or
                              o["metadata"]["name"] == "kubernetes"] + svcs
    st["objects"][sl_key] = [o for o in st["objects"][sl_key] if o["metadata"]["namespace"] != "default" or
                             not o["metadata"]["name"].startswith(("egress-", "plain-"))] + slices
    st["rv"] = rv + 2 * n_services + 1
    with open(path, "w") as f:
        json.dump(st, f, separators=(",", ":"))
    c.apiserver.args.remove("--reset")  # it loads the state written above
    c.apiserver.ready_timeout = 120
    c.apiserver.start()


def log_level_info(node_cls):
    """The harness runs the daemons at debug; production (and this) at info."""
    orig = node_cls.daemon_cmd

    def daemon_cmd(self, which):
        cmd = orig(self, which)
        return [("info" if i > 0 and cmd[i - 1] == "--log-level" else a) for i, a in enumerate(cmd)]

    node_cls.daemon_cmd = daemon_cmd


LAG = re.compile(r"event loop lag: max [\d.]+ ms in the last [^,]*, max ([\d.]+) ms since start; "
                 r"longest busy stretch [\d.]+ ms of CPU, ([\d.]+) ms since start")


def loop_lag(log_path):
    """The last event-loop lag report a daemon logged (kvpd logs one every
    10 s at debug level), or says that it logs none."""
    last = None
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                m = LAG.search(line)
                if m:
                    last = m
    except OSError:
        pass
    if not last:
        return "not measured (not exposed)"
    return f"{float(last.group(1)):,.0f} ms; {float(last.group(2)):,.0f} ms CPU"


def metrics_lag(node, daemon):
    """The worst event-loop lag since start a daemon exports
    (kvegress_event_loop_lag_max_seconds, GetMetrics on its socket), or None."""
    sock, path, iface = {
        "kvnetd": ("kvnetd_sock", "/io/kvegress/Net1", "io.kvegress.Net1"),
        "kvelectd": ("kvelectd_sock", "/io/kvegress/Elect1", "io.kvegress.Elect1"),
    }[daemon]
    try:
        with Connection(node._paths()[sock], timeout=20) as conn:
            text = conn.call(path, iface, "GetMetrics")[0]
    except (OSError, Exception):  # noqa: BLE001 - a busy or dead daemon: not measured
        return None
    for line in text.splitlines():
        if line.startswith("kvegress_event_loop_lag_max_seconds"):
            return f"{float(line.split()[-1]) * 1000:,.0f} ms"
    return None


def node_state(c, node, n_egress):
    """(VIPs bound, egress policies kvnetd holds with a pod)."""
    vips = sum(1 for a in node.addresses() if ":" not in a and ipaddress.IPv4Address(a) in VIP_NET)
    try:
        with Connection(node._paths()["kvnetd_sock"], timeout=20) as conn:
            eg = conn.call("/io/kvegress/Net1", "io.kvegress.Net1", "ListEgress")[0]
        programmed = sum(1 for e in eg if e[3])
    except (OSError, Exception):  # noqa: BLE001 - a busy or dead kvnetd counts as not there yet
        programmed = -1
    return vips, programmed


def kvnetd_fences(node):
    """kvnetd's fence counter (kvegress_fences_total: Services fenced), or None."""
    try:
        with Connection(node._paths()["kvnetd_sock"], timeout=20) as conn:
            text = conn.call("/io/kvegress/Net1", "io.kvegress.Net1", "GetMetrics")[0]
    except (OSError, Exception):  # noqa: BLE001 - a busy or dead kvnetd: the log is read instead
        return None
    for line in text.splitlines():
        if line.startswith("kvegress_fences_total "):
            return int(float(line.split()[1]))
    return None


def main():
    ap = benchlib.common_args(argparse.ArgumentParser(description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--services", type=int)
    ap.add_argument("--egress", type=int)
    ap.add_argument("--limit", type=float, help="seconds to converge (default 240; --quick 120)")
    ap.add_argument("--rest", type=float, help="seconds at rest to sample CPU (default 60; --quick 20)")
    args = ap.parse_args()
    n_services = args.services or (1000 if args.quick else 10000)
    n_egress = args.egress or (100 if args.quick else 1000)
    limit = args.limit or (120 if args.quick else 240)
    rest = args.rest or (20 if args.quick else 60)

    log_level_info(kc.Node)
    kc.install_signal_handlers()
    tbl = Table(f"The three daemons on one node, API server holding {n_services:,} Services and {n_services:,} "
                f"EndpointSlices, {n_egress:,} egress with endpoints on this node",
                ["figure", "kvnetd", "kvelectd", "kvpd", "together"])
    # Room for the egress VIPs: kvnetd refuses a VIP outside its ranges (the
    # default range, a /29, would hold 6 of them).
    with kc.Cluster(build_dir=benchlib.BUILD, nodes=1, daemons=(), lease=(15, 10, 2),
                    vip_ranges=(str(VIP_NET), kc.VIP_RANGE6)) as c:
        t0 = time.monotonic()
        preload(c, n_services, n_egress)
        load_s = time.monotonic() - t0
        api = Api(c)
        t0 = time.monotonic()
        api.request("GET", "/api/v1/services")
        api.request("GET", "/apis/discovery.k8s.io/v1/endpointslices")
        list_s = time.monotonic() - t0
        print(f"loaded {2 * n_services:,} objects in {load_s:.0f} s; one list of each kind took {list_s:.2f} s",
              flush=True)

        c.daemons = DAEMONS
        c._install_binaries()
        node = c.nodes[0]
        t0 = time.monotonic()
        node.start_daemons()
        pids = {d: node.procs[d].pid for d in DAEMONS}
        converged, state = None, (0, 0)
        while time.monotonic() - t0 < limit:
            state = node_state(c, node, n_egress)
            if state[0] >= n_egress and state[1] >= n_egress:
                converged = time.monotonic() - t0
                break
            if not all(node.procs[d].alive() for d in DAEMONS):
                break
            # Fine steps at first: a start of a second or two is measured,
            # not rounded up to the poll.
            time.sleep(0.1 if time.monotonic() - t0 < 15 else 1)
        cpu_conv = {d: benchlib.cpu_seconds(pids[d]) for d in DAEMONS}
        fences_conv = kvnetd_fences(node)
        alive = {d: node.procs[d].alive() for d in DAEMONS}
        c0 = dict(cpu_conv)
        time.sleep(rest)
        c1 = {d: benchlib.cpu_seconds(pids[d]) for d in DAEMONS}
        rss = {d: benchlib.rss_kib(pids[d]) for d in DAEMONS}
        exported_lag = {d: metrics_lag(node, d) for d in ("kvnetd", "kvelectd")}
        pss = {d: benchlib.pss_kib(pids[d]) for d in DAEMONS}
        end_state = node_state(c, node, n_egress)
        with open(os.path.join(node.dir, "kvnetd.log"), errors="replace") as f:
            lines = [line for line in f if FENCE_ID in line]
        counted = kvnetd_fences(node)
        fences = counted if counted is not None else len(lines)
        expired = sum(1 for line in lines if "expired without renewal" in line)

        def per_min(d):
            if c0[d] is None or c1[d] is None:
                return "-"
            return f"{(c1[d] - c0[d]) * 60 / rest:.1f} s"

        def total(vals):
            vals = [v for v in vals if v is not None]
            return sum(vals) if vals else None

        if converged is not None:
            conv = f"{converged:.1f} s ({converged / list_s:.0f} x the list time)"
        else:
            conv = (f"> {limit:g} s: {state[0]:,} of {n_egress:,} VIPs bound, "
                    f"{max(state[1], 0):,} policies in kvnetd" + ("" if all(alive.values()) else
                                                                 f"; exited: {[d for d in DAEMONS if not alive[d]]}"))
        tbl.add("time to converge (daemons started -> every VIP bound and programmed)", "-", "-", "-", conv)
        tbl.add("CPU used until then" if converged is not None else f"CPU used in the first {limit:g} s",
                *[f"{cpu_conv[d]:.1f} s" if cpu_conv[d] is not None else "-" for d in DAEMONS],
                f"{total(cpu_conv.values()) or 0:.1f} s")
        rest_label = "at rest" if converged is not None else "not at rest (not converged)"
        tbl.add(f"CPU per minute {rest_label} ({rest:g} s sampled)", *[per_min(d) for d in DAEMONS], "-")
        tbl.add(f"RSS {rest_label}", *[mib(rss[d]) for d in DAEMONS], mib(total(rss.values())))
        tbl.add(f"PSS {rest_label} (shared library pages divided among the processes mapping them)",
                *[mib(pss[d]) for d in DAEMONS], mib(total(pss.values())))
        tbl.add("event-loop lag, worst since start (timer lateness; kvpd: longest CPU stretch too)",
                *[exported_lag.get(d) or loop_lag(os.path.join(node.dir, f"{d}.log")) for d in DAEMONS], "-")
        tbl.add("fences (kvnetd's count, whole run)",
                f"{fences} ({expired} of {len(lines)} VIP fence lines: grant expired)" if fences else "0", "-",
                "-", "must be 0")
        tbl.note(f"API server filled in {load_s:.0f} s before the daemons started; listing every Service and every "
                 f"EndpointSlice once took {list_s:.2f} s")
        tbl.note(f"after the rest period: {end_state[0]:,} VIPs bound, {max(end_state[1], 0):,} policies in kvnetd")
        if counted is not None and fences_conv is not None:
            tbl.note(f"fences until {'converged' if converged is not None else 'the limit'}: {fences_conv:,}; "
                     f"during the {rest:g} s after: {counted - fences_conv:,}")
        together = total(rss.values())
        if together is not None:
            verdict = "met" if together <= 64 * 1024 else "missed"
            tbl.note(f"goal, the three daemons <= 64 MiB RSS together: {verdict} ({mib(together)}"
                     + (")" if converged is not None else "; not converged, so not the final figure)"))
        verdict = "met" if converged is not None and converged <= 2 * list_s else "missed"
        tbl.note(f"goal, start to programmed within 2 x the list time ({2 * list_s:.1f} s): {verdict}")
        kvpd_rss = rss.get("kvpd")
        if kvpd_rss is not None:
            tbl.note(f"goal, kvpd <= 32 MiB: {'met' if kvpd_rss <= 32 * 1024 else 'missed'} ({mib(kvpd_rss)})")
        held = "" if end_state[0] else "; but no VIP was ever held to fence"
        tbl.note(f"goal, no fence: {'met' if fences == 0 else 'missed'} ({fences}{held})")
    benchlib.write_markdown(args.out, [tbl])


if __name__ == "__main__":
    main()
