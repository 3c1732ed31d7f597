# SPDX-License-Identifier: Apache-2.0
"""A storm of faults on the simulated cluster (cluster.py), with invariants checked throughout (issue #11 item 3).

The pieces are usable on their own:

  Workload        egress Services and their endpoints in namespace "storm", changed at random through the API:
                  endpoints added, moved and removed (kvpd reads EndpointSlices only, so a pod here is an endpoint
                  in a slice, with no namespace of its own), annotations edited (ports, denied networks, egress
                  off and on, a new VIP), Services deleted and created.
  kernel_view()   what one node's kernel holds: the VIPs on its service interface, and from `table inet kvegress`
                  each service's pods (element comments in its class's sets), the VIPs they map to, its ports.
  desired_state() what every node should hold, from the API's Services and EndpointSlices.
  diff()          the differences between the two (empty when converged).
  Sampler         a thread asserting, all the time: no VIP on two nodes at once (from AddrWatcher's rtnetlink
                  events, so no sample can miss it); no pod SNATed to a VIP its node does not hold (each node's
                  table read every ~0.5 s, judged against the address events around the read); no daemon exited by
                  itself; no daemon stuck (kvctl status must reach every daemon that is not stopped on purpose).
  Faults          the injectors: SIGKILL of a daemon (restarted after a random delay, as systemd does), SIGSTOP
                  for longer than renewDeadline, the API server restarted, every connection to it cut, its
                  history compacted (watches get 410), a node cut off from it for longer than the lease, kvnetd's
                  table deleted, the whole ruleset flushed (the CNI puts its own rules back), a VIP removed.
  Storm           rounds: one to three faults at once while the workload changes things, then the faults healed,
                  the workload paused, and the time until every node equals the desired state measured against a
                  bound. One seed decides every round (printed; KVEGRESS_STORM_SEED repeats it).

Standard library only.
"""
import collections
import ipaddress
import json
import os
import random
import signal
import subprocess
import threading
import time

from cluster import API_IP, SERVICE_IF
from netns import run

NS = "storm"
SVC_API = "/api/v1/namespaces/%s/services" % NS
SLICE_API = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS
EGRESS, LBIPS, IPV6 = "kube-vip.io/egress", "kube-vip.io/loadbalancerIPs", "kube-vip.io/egress-ipv6"
PORTS, DENIED = "kube-vip.io/egress-destination-ports", "kube-vip.io/egress-denied-networks"
PORT_CHOICES = [None, "tcp:8080", "tcp:8080,udp:5060", "udp:53", "tcp:443,tcp:80"]
DENIED_CHOICES = [None, "172.18.0.0/24", "198.51.100.0/25", "172.18.0.0/24,203.0.113.0/24"]
DAEMONS = ("kvnetd", "kvelectd", "kvpd")
FAULT_KINDS = ("kill", "stop", "api_restart", "watch_cut", "compact", "partition", "nft_delete_table",
               "nft_flush", "vip_remove")


def utc(t):
    """A time as the daemons' log lines show it (KVEGRESS_LOG_TIME=1)."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) + ".%03d" % (int(t * 1000) % 1000)


class ApiError(RuntimeError):
    pass


def api(c, method, path, body=None, ctype="application/json", ok=(200, 201)):
    try:
        st, obj = c.api(method, path, body, timeout=5, ctype=ctype)
    except (OSError, ValueError) as e:  # refused, reset, timeout, a truncated answer
        raise ApiError("%s %s: %s" % (method, path, e)) from None
    if st not in ok:
        raise ApiError("%s %s: HTTP %s %s" % (method, path, st, obj))
    return st, obj


# ---------------------------------------------------------------------------------------------- workload
class Workload:
    """The storm's Services. Each has one IPv4 VIP (one in dual_every also an IPv6 one, with egress-ipv6), and
    zero to three endpoints, each on a node. Every change is written to the API; what the API holds is the truth
    (desired_state() reads it back), so a write that fails only leaves the model marked for a re-read."""

    def __init__(self, c, n_services=32, dual_every=5, say=print):
        self.c, self.say = c, say
        self.lock = threading.Lock()
        nets = [ipaddress.ip_network(r) for r in c.vip_ranges]
        # Free addresses are used in turn (FIFO), so one freed is reused as late as possible, and only once no
        # node holds it any more (reusing it at once would put one VIP on the old and the new holder).
        self.free4 = collections.deque(str(a) for n in nets if n.version == 4 for a in n.hosts())
        self.free6 = collections.deque(str(a) for n in nets if n.version == 6 for a in list(n.hosts())[:256])
        self.free_pod = {n.name: collections.deque(range(100, 250)) for n in c.nodes}
        self.services = {}
        self.n_services, self.dual_every = n_services, dual_every
        self.serial = 0
        self.ops = collections.Counter()
        self.failed_ops = 0

    # ---------------------------------------------------------------- addresses
    def _take(self, pool):
        for _ in range(len(pool)):
            a = pool.popleft()
            if not self.c.addr_watch.holders(a):
                return a
            pool.append(a)
        raise RuntimeError("no free VIP")

    def _pod(self, node_name):
        x = self.free_pod[node_name].popleft()
        n = self.c.node(node_name).n
        return {"node": node_name, "ip4": "10.244.%d.%d" % (n, x), "ip6": "fd00:10:244:%d::%x" % (n, x), "x": x}

    def _free_pod(self, ep):
        self.free_pod[ep["node"]].append(ep["x"])

    # ---------------------------------------------------------------- API writes
    def _svc_obj(self, name, s):
        fams = ["IPv4", "IPv6"] if s["dual"] else ["IPv4"]
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS, "annotations": dict(s["ann"])},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": name},
                         "ipFamilies": fams, "ipFamilyPolicy": "RequireDualStack" if s["dual"] else "SingleStack",
                         "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}

    def _write_slices(self, name, s):
        for fam in (("IPv4", "IPv6") if s["dual"] else ("IPv4",)):
            key = "ip4" if fam == "IPv4" else "ip6"
            obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "%s-%s" % (name, "v4" if fam == "IPv4" else "v6"), "namespace": NS,
                                "labels": {"kubernetes.io/service-name": name,
                                           "endpointslice.kubernetes.io/managed-by": "kvc-storm"}},
                   "addressType": fam, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                   "endpoints": [{"addresses": [ep[key]], "nodeName": ep["node"],
                                  "conditions": {"ready": True, "serving": True, "terminating": False},
                                  "targetRef": {"kind": "Pod", "namespace": NS, "name": pod}}
                                 for pod, ep in sorted(s["eps"].items())]}
            path = "%s/%s" % (SLICE_API, obj["metadata"]["name"])
            st, _ = api(self.c, "PUT", path, obj, ok=(200, 201, 404))
            if st == 404:
                api(self.c, "POST", SLICE_API, obj)

    def _patch_ann(self, name, changes):
        api(self.c, "PATCH", "%s/%s" % (SVC_API, name), {"metadata": {"annotations": changes}},
            ctype="application/merge-patch+json")

    # ---------------------------------------------------------------- set-up
    def setup(self, rng):
        api(self.c, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": NS}}, ok=(200, 201, 409))
        for _ in range(self.n_services):
            self.create_service(rng)

    def create_service(self, rng):
        self.serial += 1
        name = "s%03d" % self.serial
        dual = self.serial % self.dual_every == 0
        vips = [self._take(self.free4)] + ([self._take(self.free6)] if dual else [])
        ann = {EGRESS: "true", LBIPS: ",".join(vips)}
        if dual:
            ann[IPV6] = "true"
        p = rng.choice(PORT_CHOICES)
        if p:
            ann[PORTS] = p
        s = {"dual": dual, "ann": ann, "eps": {}, "pod_serial": 0}
        for _ in range(rng.randint(1, 2)):
            s["pod_serial"] += 1
            s["eps"]["%s-%d" % (name, s["pod_serial"])] = self._pod(rng.choice(self.c.nodes).name)
        with self.lock:
            self.services[name] = s
        api(self.c, "POST", SVC_API, self._svc_obj(name, s))
        self._write_slices(name, s)
        return name

    # ---------------------------------------------------------------- changes
    OPS = (("add_pod", 3), ("delete_pod", 2), ("move_pod", 4), ("ports", 2), ("denied", 1), ("egress", 1),
           ("new_vip", 1), ("replace_service", 1))

    def step(self, rng):
        """One random change; returns its description (or raises ApiError: the API refused or is away)."""
        op = rng.choices([o for o, _ in self.OPS], [w for _, w in self.OPS])[0]
        name = rng.choice(sorted(self.services))
        s = self.services[name]
        try:
            if s.get("dirty"):
                self.resync(name)
            what = getattr(self, "_op_" + op)(rng, name, s)
        except ApiError:
            self.failed_ops += 1
            s["dirty"] = True
            raise
        self.ops[op] += 1
        return what

    def _op_add_pod(self, rng, name, s):
        if len(s["eps"]) >= 3:
            return self._op_delete_pod(rng, name, s)
        s["pod_serial"] += 1
        pod = "%s-%d" % (name, s["pod_serial"])
        s["eps"][pod] = self._pod(rng.choice(self.c.nodes).name)
        self._write_slices(name, s)
        return "pod %s/%s on %s" % (NS, pod, s["eps"][pod]["node"])

    def _op_delete_pod(self, rng, name, s):
        if not s["eps"]:
            return self._op_add_pod(rng, name, s)
        pod = rng.choice(sorted(s["eps"]))
        ep = s["eps"].pop(pod)
        self._write_slices(name, s)
        self._free_pod(ep)
        return "pod %s/%s deleted" % (NS, pod)

    def _op_move_pod(self, rng, name, s):
        if not s["eps"]:
            return self._op_add_pod(rng, name, s)
        pod = rng.choice(sorted(s["eps"]))
        old = s["eps"].pop(pod)
        to = rng.choice([n.name for n in self.c.nodes if n.name != old["node"]])
        s["pod_serial"] += 1
        new = "%s-%d" % (name, s["pod_serial"])
        s["eps"][new] = self._pod(to)
        self._write_slices(name, s)
        self._free_pod(old)
        return "pod %s/%s moved %s -> %s" % (NS, pod, old["node"], to)

    def _op_ports(self, rng, name, s):
        v = rng.choice([p for p in PORT_CHOICES if p != s["ann"].get(PORTS)])
        self._patch_ann(name, {PORTS: v})
        if v:
            s["ann"][PORTS] = v
        else:
            s["ann"].pop(PORTS, None)
        return "%s ports %s" % (name, v)

    def _op_denied(self, rng, name, s):
        v = rng.choice([p for p in DENIED_CHOICES if p != s["ann"].get(DENIED)])
        self._patch_ann(name, {DENIED: v})
        if v:
            s["ann"][DENIED] = v
        else:
            s["ann"].pop(DENIED, None)
        return "%s denied %s" % (name, v)

    def _op_egress(self, rng, name, s):
        on = s["ann"].get(EGRESS) != "true"
        self._patch_ann(name, {EGRESS: "true" if on else None})
        if on:
            s["ann"][EGRESS] = "true"
        else:
            s["ann"].pop(EGRESS, None)
        return "%s egress %s" % (name, "on" if on else "off")

    def _op_new_vip(self, rng, name, s):
        vips = s["ann"][LBIPS].split(",")
        new = self._take(self.free4)
        self._patch_ann(name, {LBIPS: ",".join([new] + vips[1:])})
        s["ann"][LBIPS] = ",".join([new] + vips[1:])
        self.free4.append(vips[0])
        return "%s VIP %s -> %s" % (name, vips[0], new)

    def _op_replace_service(self, rng, name, s):
        api(self.c, "DELETE", "%s/%s" % (SVC_API, name), ok=(200, 202, 404))
        for fam in ("v4", "v6"):
            api(self.c, "DELETE", "%s/%s-%s" % (SLICE_API, name, fam), ok=(200, 202, 404))
        with self.lock:
            del self.services[name]
        for a in s["ann"][LBIPS].split(","):
            (self.free6 if ":" in a else self.free4).append(a)
        for ep in s["eps"].values():
            self._free_pod(ep)
        new = self.create_service(rng)
        return "%s deleted, %s created" % (name, new)

    def resync(self, name):
        """Reads a Service and its slices back after a write whose outcome is unknown (the API went away)."""
        s = self.services[name]
        st, obj = api(self.c, "GET", "%s/%s" % (SVC_API, name), ok=(200, 404))
        if st == 404:
            api(self.c, "POST", SVC_API, self._svc_obj(name, s))
        else:
            ann = obj["metadata"].get("annotations") or {}
            s["ann"] = {k: v for k, v in ann.items() if k in (EGRESS, LBIPS, IPV6, PORTS, DENIED)}
        self._write_slices(name, s)  # the model's endpoints are the ones wanted
        s["dirty"] = False


# ---------------------------------------------------------------------------------------------- the oracle
def desired_state(c):
    """{service key: {"vips": set, "eps": {node: set of addresses}, "ports": set of (proto, port)}} for every
    Service that should be programmed (egress on, a VIP, at least one ready local endpoint somewhere), from the
    API's objects."""
    _, svcs = api(c, "GET", SVC_API)
    _, slices = api(c, "GET", SLICE_API)
    eps = collections.defaultdict(lambda: collections.defaultdict(set))
    for sl in slices.get("items", []):
        svc = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready") and ep.get("nodeName"):
                eps[svc][ep["nodeName"]].update(ep.get("addresses") or [])
    out = {}
    for s in svcs.get("items", []):
        name = s["metadata"]["name"]
        ann = s["metadata"].get("annotations") or {}
        if ann.get(EGRESS) != "true" or not ann.get(LBIPS) or not eps.get(name):
            continue
        vips = set(ann[LBIPS].split(","))
        if ann.get(IPV6) != "true":
            vips = {v for v in vips if ":" not in v}
        fams = {6 if ":" in v else 4 for v in vips}
        e = {n: {a for a in addrs if (6 if ":" in a else 4) in fams} for n, addrs in eps[name].items()}
        ports = set()
        for p in (ann.get(PORTS) or "").split(","):
            if p.strip():
                proto, port = p.strip().split(":")
                ports.add((proto, int(port)))
        out["%s/%s" % (NS, name)] = {"vips": vips, "eps": {n: a for n, a in e.items() if a}, "ports": ports}
    return out


def _elem(x):
    """An nft JSON set element: (key, comment or None)."""
    if isinstance(x, dict) and "elem" in x:
        return x["elem"]["val"], x["elem"].get("comment")
    return x, None


def kernel_view(node):
    """{"vips": set, "table": bool, "services": {key: {"snat": set, "pods": set, "ports": set}},
    "mapped": {pod: key or None}} as the node's kernel holds them now. kvnetd's table (kvnetd/nft.h): a
    service's pods are elements of its class's sets (cls_<h>_p4/_p6) and of the VIP maps (vip4/vip6, pod ->
    VIP), each commented with the service key; the class's ports are in cls_<h>_ports."""
    out = {"vips": set(node.vips()), "table": False, "services": {}, "mapped": {}}
    p = run(["nft", "-j", "list", "table", "inet", "kvegress"], ns=node.netns, check=False)
    if p.returncode != 0:
        return out
    out["table"] = True
    services = collections.defaultdict(lambda: {"snat": set(), "pods": set(), "ports": set(), "chain": None})
    chains, ports, members = set(), {}, []
    for o in json.loads(p.stdout).get("nftables", []):
        if "chain" in o:
            chains.add(o["chain"]["name"])
        elif "set" in o and o["set"]["name"].startswith("cls_"):
            name = o["set"]["name"]
            if name.endswith("_ports"):
                ports[name[:-len("_ports")]] = {(x["concat"][0], x["concat"][1])
                                                for x in o["set"].get("elem", []) if "concat" in x}
            elif name.endswith(("_p4", "_p6")):
                members += [(name[:-3],) + _elem(x) for x in o["set"].get("elem", [])]
        elif "map" in o and o["map"]["name"] in ("vip4", "vip6"):
            for k, vip in o["map"].get("elem", []):
                key = _elem(k)[1]
                if key:
                    services[key]["snat"].add(vip)
    for cls, addr, key in members:
        out["mapped"][addr] = key if key and cls in chains else None
        if key:
            services[key]["pods"].add(addr)
            services[key]["chain"] = cls
            services[key]["ports"] = ports.get(cls, set())
    out["services"] = dict(services)
    return out


def diff(desired, views):
    """What differs between the desired state and the nodes' kernels (views: {node name: kernel_view()});
    an empty list when they are equal."""
    bad = []
    wanted_vips = set()
    for key, d in sorted(desired.items()):
        wanted_vips |= d["vips"]
        holders = sorted(n for n, v in views.items() if d["vips"] & v["vips"])
        if len(holders) != 1:
            bad.append("%s: VIPs %s held by %s" % (key, sorted(d["vips"]), holders or "no node"))
            continue
        h = holders[0]
        v = views[h]
        if h not in d["eps"]:
            bad.append("%s: held by %s, which has no local endpoint (endpoints on %s)" % (key, h, sorted(d["eps"])))
        if not d["vips"] <= v["vips"]:
            bad.append("%s: %s holds %s of %s" % (key, h, sorted(d["vips"] & v["vips"]), sorted(d["vips"])))
        got = v["services"].get(key)
        if not got:
            bad.append("%s: no egress chain on its holder %s" % (key, h))
        else:
            want_pods = d["eps"].get(h, set())
            # The VIP maps hold a VIP for each pod of its family.
            want_snat = {v for v in d["vips"] if any((":" in v) == (":" in a) for a in want_pods)}
            if got["snat"] != want_snat:
                bad.append("%s: SNAT to %s on %s, want %s" % (key, sorted(got["snat"]), h, sorted(want_snat)))
            if got["pods"] != want_pods:
                bad.append("%s: %s maps pods %s, want %s" % (key, h, sorted(got["pods"]), sorted(want_pods)))
            if got["ports"] != d["ports"]:
                bad.append("%s: ports %s on %s, want %s" % (key, sorted(got["ports"]), h, sorted(d["ports"])))
        for n, v2 in views.items():
            if n != h and key in v2["services"]:
                bad.append("%s: an egress chain on %s, which does not hold it" % (key, n))
    for n, v in sorted(views.items()):
        if not v["table"]:
            bad.append("%s: no table inet kvegress" % n)
        for key in sorted(set(v["services"]) - set(desired)):
            bad.append("%s: egress chain of %s left (not wanted anywhere)" % (n, key))
        for a in sorted(v["vips"] - wanted_vips):
            bad.append("%s: VIP %s left (no Service wants it)" % (n, a))
        for pod, key in sorted(v["mapped"].items()):
            if key is None:
                bad.append("%s: pod %s in a class with no chain, or with no service key" % (n, pod))
    return bad


# ---------------------------------------------------------------------------------------------- invariants
class Sampler(threading.Thread):
    """Asserts the invariants continuously; violations are collected in .violations (time, text)."""

    def __init__(self, c, kvctl=None, interval=1.0, stuck_after=30.0, kvctl_every=6.0, say=print):
        super().__init__(daemon=True)
        self.c, self.kvctl, self.interval, self.stuck_after, self.say = c, kvctl, interval, stuck_after, say
        self.kvctl_every = kvctl_every
        self.lock = threading.Lock()
        self.violations = []
        self.stop_ev = threading.Event()
        self.hist_i = 0
        self.holders = collections.defaultdict(set)      # VIP -> namespaces holding it (from events)
        self.addr_events = collections.defaultdict(list)  # (netns, VIP) -> [(t, "add"|"del")]
        self.excused = {}       # (node name, VIP) -> time a fault removed it (SNAT without it is expected)
        self.not_running = {}   # (node name, daemon) -> why (killed, stopped), set by the faults
        self.back_at = {}       # (node name, daemon) -> when it was restarted or continued
        self.unanswered = collections.Counter()
        self.stuck = set()
        self.samples = 0
        self.snat_checks = 0
        self.ns_node = {n.netns: n.name for n in c.nodes}

    def violation(self, text):
        with self.lock:
            self.violations.append((time.time(), text))
        self.say("VIOLATION at %s: %s" % (utc(time.time()), text))

    # ------------------------------------------------ faults tell what they do
    def daemon_down(self, node, which, why):
        with self.lock:
            self.not_running[(node, which)] = why

    def daemon_up(self, node, which):
        with self.lock:
            self.not_running.pop((node, which), None)
            self.back_at[(node, which)] = time.time()

    def excuse(self, node, vip):
        with self.lock:
            self.excused[(node, vip)] = time.time()

    # ------------------------------------------------ the checks
    def _events(self):
        """No VIP on two nodes at once: every address event since the last call, in order."""
        w = self.c.addr_watch
        with w.lock:
            new = w.history[self.hist_i:]
            self.hist_i += len(new)
        for t, ns, op, a in new:
            if op not in ("add", "del") or not self.c.is_vip(a):
                continue
            self.addr_events[(ns, a)].append((t, op))
            if op == "add":
                self.holders[a].add(ns)
                if len(self.holders[a]) > 1:
                    self.violation("VIP %s on %s at once (at %s)" % (
                        a, sorted(self.ns_node.get(x, x) for x in self.holders[a]), utc(t)))
                node = self.ns_node.get(ns)
                with self.lock:
                    self.excused.pop((node, a), None)  # put back: no longer excused
            else:
                self.holders[a].discard(ns)

    def _held_during(self, ns, vip, t0, t1):
        """Whether ns held vip at any moment of [t0, t1] (by the address events)."""
        held = False
        for t, op in self.addr_events.get((ns, vip), []):
            if t <= t0:
                held = op == "add"
            elif t <= t1:
                if op == "add" or held:
                    return True
            else:
                break
        return held

    def _snat(self):
        """No pod SNATed to a VIP its node does not hold: each node's table, against the events around the read."""
        for node in self.c.nodes:
            t0 = time.time()
            try:
                view = kernel_view(node)
            except Exception as e:  # noqa: BLE001 - a namespace being torn down at the end
                self.say("sampler: %s: %s" % (node.name, e))
                continue
            t1 = time.time()
            self._events()
            slack = 0.25  # the watcher's thread stamps events a little after the kernel made them
            for key, s in view["services"].items():
                if not s["pods"]:
                    continue
                for vip in s["snat"]:
                    self.snat_checks += 1
                    with self.lock:
                        excused = (node.name, vip) in self.excused
                    if excused or self._held_during(node.netns, vip, t0 - slack, t1 + slack):
                        continue
                    self.violation("%s: %d pods of %s SNATed to %s, which the node does not hold (%s)" % (
                        node.name, len(s["pods"]), key, vip, sorted(s["pods"])[:3]))

    def _daemons(self):
        """No daemon exited by itself, none stuck: kvctl status reaches every one that should run."""
        now = time.time()
        for node in self.c.nodes:
            with self.lock:
                down = {w for (n, w) in self.not_running if n == node.name}
                recent = {w for (n, w), t in self.back_at.items() if n == node.name and now - t < self.stuck_after}
            for which in DAEMONS:
                p = node.procs.get(which)
                if p and not p.alive() and which not in down:
                    self.violation("%s/%s exited by itself with %s" % (node.name, which, p.p.returncode))
                    self.daemon_down(node.name, which, "exited")
                    threading.Thread(target=self._restart_dead, args=(node, which), daemon=True).start()
            if not self.kvctl:
                continue
            paths = node._paths()
            try:
                r = subprocess.run([self.kvctl, "--timeout", "5", "--kvpd-socket", paths["kvpd_sock"],
                                    "--kvnetd-socket", paths["kvnetd_sock"], "--kvelectd-socket",
                                    paths["kvelectd_sock"], "--json", "status"], capture_output=True, text=True,
                                   timeout=20)
                st = json.loads(r.stdout)["daemons"]
            except (ValueError, KeyError, subprocess.TimeoutExpired) as e:
                self.say("sampler: kvctl on %s: %s" % (node.name, e))
                continue
            for which in DAEMONS:
                if which in down or which in recent or st.get(which, {}).get("reachable"):
                    self.unanswered[(node.name, which)] = 0
                    self.unanswered.pop(("since", node.name, which), None)
                    self.stuck.discard((node.name, which))
                    continue
                # Stuck: no answer for stuck_after seconds on end, over at least three tries (one late answer
                # on a loaded machine is not a hang).
                first = self.unanswered.setdefault(("since",) + (node.name, which), now)
                self.unanswered[(node.name, which)] += 1
                if (self.unanswered[(node.name, which)] >= 3 and now - first >= self.stuck_after
                        and (node.name, which) not in self.stuck):
                    self.stuck.add((node.name, which))
                    self.violation("%s/%s did not answer kvctl for %.0fs (stuck)" % (node.name, which, now - first))

    def _restart_dead(self, node, which):
        time.sleep(1.0)
        try:
            node.start_daemon(which)
        finally:
            self.daemon_up(node.name, which)

    def run(self):
        last_daemons = 0.0
        while not self.stop_ev.wait(self.interval):
            try:
                self._events()
                self._snat()
                if time.time() - last_daemons > self.kvctl_every:
                    self._daemons()
                    last_daemons = time.time()
                self.samples += 1
            except Exception as e:  # noqa: BLE001 - the sampler must keep sampling
                self.say("sampler error: %r" % e)

    def stop(self):
        self.stop_ev.set()
        self.join(30)
        self._events()


# ---------------------------------------------------------------------------------------------- faults
class Faults:
    """The injectors. Each runs to its end (the fault injected, lasted, healed) in the calling thread and
    returns a description; the Sampler is told which daemons are down or stopped on purpose."""

    def __init__(self, c, sampler, say=print):
        self.c, self.sampler, self.say = c, sampler, say
        ld, rd, rp = c.lease
        self.lease = (ld, rd, rp)
        self.count = collections.Counter()
        self.api_lock = threading.Lock()
        # The API server's own filter, for cutting one node off (its kvelectd and kvpd both use it).
        run(["nft", "-f", "-"], ns=c.api_ns, input="""
table inet kvc_storm {
    set blocked4 { type ipv4_addr; }
    set blocked6 { type ipv6_addr; }
    chain input {
        type filter hook input priority -10; policy accept;
        ip saddr @blocked4 drop
        ip6 saddr @blocked6 drop
    }
    chain output {
        type filter hook output priority -10; policy accept;
        ip daddr @blocked4 drop
        ip6 daddr @blocked6 drop
    }
}
""")

    def kill(self, rng, node, which):
        """SIGKILL, then started again after a random delay (RestartSec=1s, give or take)."""
        delay = rng.uniform(0.1, 3.0)
        p = node.procs[which]
        self.sampler.daemon_down(node.name, which, "killed")
        p.send(signal.SIGKILL)
        try:
            p.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        p.log.close()
        time.sleep(delay)
        try:
            node.start_daemon(which)
        finally:
            self.sampler.daemon_up(node.name, which)
        return "SIGKILL %s/%s, restarted %.1fs later" % (node.name, which, delay)

    def stop(self, rng, node, which):
        """SIGSTOP for longer than renewDeadline, then SIGCONT."""
        secs = self.lease[1] + rng.uniform(0.5, 3.0)
        p = node.procs[which]
        self.sampler.daemon_down(node.name, which, "stopped")
        p.send(signal.SIGSTOP)
        try:
            time.sleep(secs)
        finally:
            p.send(signal.SIGCONT)
            self.sampler.daemon_up(node.name, which)
        return "SIGSTOP %s/%s for %.1fs" % (node.name, which, secs)

    def api_restart(self, rng):
        """SIGTERM (the test server may lose its last writes to a SIGKILL, which etcd never does), then started
        again with its objects after a random pause."""
        down = rng.uniform(0.0, 2.0)
        t = time.time()
        with self.api_lock:
            self.c.restart_apiserver(down)
        return "API server restarted (%.1fs down, %.1fs in all)" % (down, time.time() - t)

    def _admin(self, op, body=None):
        with self.api_lock:
            return api(self.c, "POST", "/_kvtest/" + op, body or {})

    def watch_cut(self, rng):
        self._admin("drop-connections")
        return "every API connection cut"

    def compact(self, rng):
        self._admin("compact")
        self._admin("expire-watches")
        return "API history compacted, every watch ended with 410"

    def partition(self, rng, node):
        """The node cannot reach the API server for longer than the lease."""
        secs = self.lease[0] + rng.uniform(0.5, 3.0)
        ip4, ip6 = "172.16.0.%d" % (10 + node.n), "fd00:172:16::%d" % (10 + node.n)
        run(["nft", "add element inet kvc_storm blocked4 { %s }; add element inet kvc_storm blocked6 { %s }"
             % (ip4, ip6)], ns=self.c.api_ns)
        try:
            time.sleep(secs)
        finally:
            run(["nft", "delete element inet kvc_storm blocked4 { %s }; delete element inet kvc_storm blocked6 "
                 "{ %s }" % (ip4, ip6)], ns=self.c.api_ns)
        return "%s cut off from the API server (%s) for %.1fs" % (node.name, API_IP, secs)

    def nft_delete_table(self, rng, node):
        run(["nft", "delete", "table", "inet", "kvegress"], ns=node.netns, check=False)
        return "table inet kvegress deleted on %s" % node.name

    def nft_flush(self, rng, node):
        """nft flush ruleset (every table: ours, the CNI's); the CNI puts its own back a moment later."""
        run(["nft", "flush", "ruleset"], ns=node.netns)
        delay = rng.uniform(0.0, 1.0)
        time.sleep(delay)
        self.c.install_cni(node)
        return "ruleset flushed on %s (the CNI's back %.1fs later)" % (node.name, delay)

    def vip_remove(self, rng, node):
        vips = sorted(node.vips())
        if not vips:
            return "no VIP on %s to remove" % node.name
        vip = rng.choice(vips)
        self.sampler.excuse(node.name, vip)
        run(["ip", "addr", "del", "%s/%d" % (vip, 128 if ":" in vip else 32), "dev", SERVICE_IF], ns=node.netns,
            check=False)
        return "VIP %s removed from %s" % (vip, node.name)


# ---------------------------------------------------------------------------------------------- the storm
class Storm:
    """Rounds of faults with the workload running, each followed by a convergence check against bound."""

    def __init__(self, c, seed, seconds, bound=30.0, n_services=32, kinds=FAULT_KINDS, kvctl=None, say=print):
        self.c, self.seed, self.seconds, self.bound, self.say = c, seed, seconds, bound, say
        self.kinds = tuple(kinds)
        self.rng = random.Random(seed)
        self.sampler = Sampler(c, kvctl=kvctl, say=say)
        self.faults = Faults(c, self.sampler, say=say)
        self.workload = Workload(c, n_services=n_services, say=say)
        self.rounds = []
        self.converge = []  # (seconds, faults of the round)
        self.log = []

    def converged(self, timeout):
        """Waits until every node equals the desired state; returns (seconds, last diff)."""
        t0 = time.time()
        last = ["not checked yet"]
        while True:
            try:
                want = desired_state(self.c)
                views = {n.name: kernel_view(n) for n in self.c.nodes}
                last = diff(want, views)
            except ApiError as e:
                last = ["API: %s" % e]
            if not last:
                return time.time() - t0, []
            if time.time() - t0 > timeout:
                return None, last
            time.sleep(1.0)

    def _plan(self, rng):
        """One to three faults with distinct targets (a daemon is not killed and stopped at once)."""
        n = rng.choice([1, 1, 2, 2, 3])
        out, used = [], set()
        for _ in range(n):
            kind = rng.choice(self.kinds)
            node = rng.choice(self.c.nodes)
            which = rng.choice(DAEMONS)
            target = {"kill": (node.name, which), "stop": (node.name, which), "partition": (node.name, "api"),
                      "api_restart": "api", "watch_cut": "api", "compact": "api"}.get(kind, (node.name, kind))
            if target in used:
                continue
            used.add(target)
            out.append((kind, node, which, random.Random(rng.random())))
        return out

    def _run_fault(self, kind, node, which, rng, results):
        self.faults.count[kind] += 1
        t = time.time()
        try:
            fn = getattr(self.faults, kind)
            if kind in ("kill", "stop"):
                what = fn(rng, node, which)
            elif kind in ("api_restart", "watch_cut", "compact"):
                what = fn(rng)
            else:
                what = fn(rng, node)
        except Exception as e:  # noqa: BLE001 - an injector that fails is reported, not fatal
            what = "%s failed: %r" % (kind, e)
        results.append((round(t - self.t0, 1), round(time.time() - t, 1), what))

    def _workload(self, rng, stop_ev):
        while not stop_ev.wait(rng.uniform(0.2, 1.0)):
            try:
                what = self.workload.step(rng)
                self.log.append((round(time.time() - self.t0, 1), what))
            except ApiError:
                pass

    def setup(self):
        self.say("storm: seed %d (KVEGRESS_STORM_SEED=%d repeats it), %d s, %d Services, bound %.0f s, faults %s"
                 % (self.seed, self.seed, self.seconds, self.workload.n_services, self.bound, ",".join(self.kinds)))
        t = time.time()
        self.workload.setup(random.Random(self.rng.random()))
        secs, last = self.converged(120)
        if secs is None:
            raise AssertionError("the %d Services never converged before the storm:\n  %s"
                                 % (self.workload.n_services, "\n  ".join(last[:30])))
        self.say("storm: %d Services programmed in %.1fs" % (self.workload.n_services, time.time() - t))
        self.sampler.start()

    def run(self):
        self.t0 = time.time()
        end = self.t0 + self.seconds
        i = 0
        while time.time() < end:
            i += 1
            rng = random.Random(self.rng.random())
            plan = self._plan(rng)
            t_round = time.time()
            results = []
            stop_ev = threading.Event()
            wl = threading.Thread(target=self._workload, args=(random.Random(rng.random()), stop_ev), daemon=True)
            wl.start()
            threads = [threading.Thread(target=self._run_fault, args=(k, n, w, r, results), daemon=True)
                       for k, n, w, r in plan]
            for th in threads:
                th.start()
            min_len = rng.uniform(2.0, 5.0)
            time.sleep(min_len)
            for th in threads:
                th.join(120)
            stop_ev.set()
            wl.join(30)
            secs, last = self.converged(self.bound)
            kinds = [k for k, _, _, _ in plan]
            self.rounds.append({"round": i, "faults": [r[2] for r in results], "converged_s": secs})
            self.say("storm round %d (%s, t=%.0fs): %s; converged %s" % (
                i, utc(t_round), time.time() - self.t0, "; ".join(r[2] for r in results),
                "in %.1fs" % secs if secs is not None else "NOT within %.0fs" % self.bound))
            if secs is None:
                self.sampler.violation("round %d (%s): not converged within %.0fs after the faults healed:\n  %s"
                                       % (i, "; ".join(r[2] for r in results), self.bound, "\n  ".join(last[:30])))
                secs2, last2 = self.converged(60)  # let it settle before going on, to keep rounds apart
                self.say("storm: converged %s later" % ("%.1fs" % secs2 if secs2 is not None else "never (60 s)"))
            else:
                self.converge.append((secs, kinds))
        self.sampler.stop()
        return self.report()

    def report(self):
        worst = max(self.converge, default=(0.0, []))
        rep = {"seed": self.seed, "seconds": round(time.time() - self.t0, 1), "rounds": len(self.rounds),
               "faults": dict(self.faults.count), "workload_ops": dict(self.workload.ops),
               "workload_ops_failed": self.workload.failed_ops, "samples": self.sampler.samples,
               "snat_checks": self.sampler.snat_checks, "violations": len(self.sampler.violations),
               "longest_convergence_s": round(worst[0], 2), "longest_convergence_after": worst[1],
               "bound_s": self.bound}
        self.say("STORM " + json.dumps(rep))
        return rep
