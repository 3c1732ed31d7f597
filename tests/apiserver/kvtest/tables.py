"""meta.k8s.io/v1 Table rendering (what `kubectl get` asks for with Accept: ...;as=Table)."""
import time

from .util import parse_rfc3339


def human_duration(secs):
    s = int(max(0, secs))
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    d = h // 24
    if d < 8:
        return "%dd%dh" % (d, h % 24) if h % 24 else "%dd" % d
    if d < 730:
        return "%dd" % d
    return "%dy" % (d // 365)


def _age(o):
    t = parse_rfc3339((o.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration(time.time() - t)


def _col(name, typ="string", fmt="", prio=0, desc=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": prio}


def _svc(o):
    sp = o.get("spec") or {}
    t = sp.get("type", "ClusterIP")
    ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ext = [i.get("ip") or i.get("hostname") for i in ing if i.get("ip") or i.get("hostname")]
    ext += sp.get("externalIPs") or []
    if t == "ExternalName":
        exts = sp.get("externalName", "<none>")
    elif ext:
        exts = ",".join(ext)
    else:
        exts = "<pending>" if t == "LoadBalancer" else "<none>"
    ports = []
    for p in sp.get("ports") or []:
        s = "%s" % p.get("port")
        if p.get("nodePort"):
            s += ":%s" % p["nodePort"]
        ports.append(s + "/" + p.get("protocol", "TCP"))
    sel = ",".join("%s=%s" % kv for kv in sorted((sp.get("selector") or {}).items())) or "<none>"
    return [t, sp.get("clusterIP") or "<none>", exts, ",".join(ports) or "<none>", _age(o), sel]


def _pod(o):
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    n = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in cs)
    phase = st.get("phase", "")
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    gates = (o.get("spec") or {}).get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        gates_s = "%d/%d" % (sum(1 for g in gates if conds.get(g.get("conditionType")) == "True"), len(gates))
    else:
        gates_s = "<none>"
    return ["%d/%d" % (ready, n), phase, str(restarts), _age(o), st.get("podIP") or "<none>",
            (o.get("spec") or {}).get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>", gates_s]


def _node(o):
    conds = (o.get("status") or {}).get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = (o.get("status") or {}).get("nodeInfo") or {}
    addrs = (o.get("status") or {}).get("addresses") or []

    def addr(typ):
        return next((a.get("address") for a in addrs if a.get("type") == typ and a.get("address")), "<none>")
    return [status, ",".join(roles) or "<none>", _age(o), info.get("kubeletVersion", ""), addr("InternalIP"),
            addr("ExternalIP"), info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _binding(o):
    ref = o.get("roleRef") or {}
    subj = o.get("subjects") or []

    def names(kind):
        return ",".join(("%s/%s" % (s.get("namespace", ""), s.get("name")) if kind == "ServiceAccount"
                         else s.get("name", "")) for s in subj if s.get("kind") == kind)
    return ["%s/%s" % (ref.get("kind", ""), ref.get("name", "")), _age(o), names("User"), names("Group"),
            names("ServiceAccount")]


def _eps(o):
    ports = ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>"
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    eps = ",".join(addrs[:3]) + (" + %d more..." % (len(addrs) - 3) if len(addrs) > 3 else "")
    return [o.get("addressType", ""), ports, eps or "<unset>", _age(o)]


def _ep(o):
    out = []
    for ss in o.get("subsets") or []:
        for a in ss.get("addresses") or []:
            for p in ss.get("ports") or [{}]:
                out.append("%s:%s" % (a.get("ip"), p.get("port")) if p.get("port") else a.get("ip"))
    return [",".join(out[:3]) + (" + %d more..." % (len(out) - 3) if len(out) > 3 else "") or "<none>", _age(o)]


def _event(o):
    io = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or (o.get("metadata") or {}).get("creationTimestamp")
    t = parse_rfc3339(last)
    return [human_duration(time.time() - t) if t else "<unknown>", o.get("type", ""), o.get("reason", ""),
            "%s/%s" % ((io.get("kind") or "").lower(), io.get("name", "")), o.get("message", "")]


TABLES = {
    "/services": ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _col("Age"),
                   _col("Selector", prio=1)], _svc),
    "/pods": ([_col("Ready"), _col("Status"), _col("Restarts"), _col("Age"), _col("IP", prio=1),
               _col("Node", prio=1), _col("Nominated Node", prio=1), _col("Readiness Gates", prio=1)], _pod),
    "/nodes": ([_col("Status"), _col("Roles"), _col("Age"), _col("Version"), _col("Internal-IP", prio=1),
                _col("External-IP", prio=1), _col("OS-Image", prio=1), _col("Kernel-Version", prio=1),
                _col("Container-Runtime", prio=1)], _node),
    "/serviceaccounts": ([_col("Secrets", "integer"), _col("Age")],
                         lambda o: [len(o.get("secrets") or []), _age(o)]),
    "rbac.authorization.k8s.io/roles": ([_col("Created At", fmt="date")],
                                        lambda o: [(o.get("metadata") or {}).get("creationTimestamp", "")]),
    "rbac.authorization.k8s.io/clusterroles": ([_col("Created At", fmt="date")],
                                               lambda o: [(o.get("metadata") or {}).get("creationTimestamp", "")]),
    "rbac.authorization.k8s.io/rolebindings": ([_col("Role"), _col("Age"), _col("Users", prio=1),
                                                _col("Groups", prio=1), _col("ServiceAccounts", prio=1)], _binding),
    "rbac.authorization.k8s.io/clusterrolebindings": ([_col("Role"), _col("Age"), _col("Users", prio=1),
                                                       _col("Groups", prio=1), _col("ServiceAccounts", prio=1)],
                                                      _binding),
    "/namespaces": ([_col("Status"), _col("Age")], lambda o: [(o.get("status") or {}).get("phase", ""), _age(o)]),
    "coordination.k8s.io/leases": ([_col("Holder"), _col("Age")],
                                   lambda o: [(o.get("spec") or {}).get("holderIdentity") or "", _age(o)]),
    "discovery.k8s.io/endpointslices": ([_col("AddressType"), _col("Ports"), _col("Endpoints"), _col("Age")], _eps),
    "/endpoints": ([_col("Endpoints"), _col("Age")], _ep),
    "/configmaps": ([_col("Data", "integer"), _col("Age")],
                    lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)]),
    "/secrets": ([_col("Type"), _col("Data", "integer"), _col("Age")],
                 lambda o: [o.get("type", ""), len(o.get("data") or {}), _age(o)]),
}


class Tables:
    def columns(self, res):
        spec = TABLES.get(res.key())
        if res.key() == "/events":
            return [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")]
        name = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
        if spec:
            return [name] + spec[0]
        return [name, _col("Age")]

    def cells(self, res, o):
        if res.key() == "/events":
            return _event(o)
        spec = TABLES.get(res.key())
        name = (o.get("metadata") or {}).get("name", "")
        if spec:
            return [name] + spec[1](o)
        return [name, _age(o)]

    def row(self, res, o, include="Metadata"):
        r = {"cells": self.cells(res, o)}
        if include == "Object":
            d = {"kind": res.kind, "apiVersion": res.api_version}
            d.update({k: v for k, v in o.items() if k not in ("kind", "apiVersion")})
            r["object"] = d
        elif include != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o.get("metadata") or {}}
        return r

    def to_table(self, res, items, rv, cont, include="Metadata"):
        meta = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "columnDefinitions": self.columns(res), "rows": [self.row(res, o, include) for o in items]}
