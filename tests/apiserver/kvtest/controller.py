"""A tiny EndpointSlice controller (--endpointslice-controller): keeps one slice per IP family for every
Service with a selector, from the matching Pods (podIPs, nodeName, Ready condition, deletionTimestamp)."""
import threading
import time

from . import errors
from .resources import BY_KEY
from .selectors import LabelSelector

SVC = BY_KEY["/services"]
POD = BY_KEY["/pods"]
EPS = BY_KEY["discovery.k8s.io/endpointslices"]
MANAGED_BY = "endpointslice-controller.k8s.io"


class EndpointSliceController:
    def __init__(self, registry, store, delay=0.05):
        self.reg, self.store = registry, store
        self.delay = delay
        self.dirty = set()
        self.cond = threading.Condition()
        store.listeners.append(self.on_event)

    def start(self):
        with self.store.lock:
            for s in self.store.iter_objects(SVC):
                self.dirty.add((s["metadata"]["namespace"], s["metadata"]["name"]))
        threading.Thread(target=self.loop, name="endpointslice-controller", daemon=True).start()

    def on_event(self, ev):
        k = ev.res.key()
        if k == "/services":
            self._mark({(ev.ns, ev.name)})
        elif k == "/pods":
            keys = set()
            for o in (ev.obj, ev.old):
                if not o:
                    continue
                labels = o["metadata"].get("labels") or {}
                for s in self.store.iter_objects(SVC):
                    if s["metadata"].get("namespace") != ev.ns:
                        continue
                    sel = (s.get("spec") or {}).get("selector")
                    if sel and all(labels.get(a) == b for a, b in sel.items()):
                        keys.add((ev.ns, s["metadata"]["name"]))
            self._mark(keys)

    def _mark(self, keys):
        if not keys:
            return
        with self.cond:
            self.dirty |= keys
            self.cond.notify()

    def loop(self):
        while True:
            with self.cond:
                while not self.dirty:
                    self.cond.wait()
            time.sleep(self.delay)  # batch bursts like the real controller does
            with self.cond:
                keys, self.dirty = self.dirty, set()
            for ns, name in sorted(keys):
                try:
                    self.reconcile(ns, name)
                except errors.ApiError:
                    self._mark({(ns, name)})
                    time.sleep(0.1)
                except Exception:
                    import traceback
                    traceback.print_exc()

    def _slices(self, ns, name):
        return [o for o in self.store.iter_objects(EPS)
                if o["metadata"].get("namespace") == ns and
                (o["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name and
                (o["metadata"].get("labels") or {}).get("endpointslice.kubernetes.io/managed-by") == MANAGED_BY]

    def reconcile(self, ns, name):
        with self.reg.wlock:
            svc = self.store.get(SVC, ns, name)
            existing = self._slices(ns, name)
            spec = (svc or {}).get("spec") or {}
            if svc is None or not spec.get("selector") or spec.get("type") == "ExternalName":
                for o in existing:
                    if self.store.get(EPS, ns, o["metadata"]["name"]) is not None:
                        self.reg.delete(EPS, ns, o["metadata"]["name"], {})
                return
            sel = spec["selector"]
            pods = [p for p in self.store.iter_objects(POD)
                    if p["metadata"].get("namespace") == ns and
                    all((p["metadata"].get("labels") or {}).get(a) == b for a, b in sel.items()) and
                    (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            pods.sort(key=lambda p: p["metadata"]["name"])
            fams = spec.get("ipFamilies") or ["IPv4"]
            by_type = {}
            for o in existing:
                by_type.setdefault(o.get("addressType"), []).append(o)
            for fam in fams:
                desired = self._desired(svc, pods, fam)
                cur = by_type.pop(fam, [])
                if cur:
                    o = cur[0]
                    for extra in cur[1:]:
                        self.reg.delete(EPS, ns, extra["metadata"]["name"], {})
                    if (o.get("endpoints"), o.get("ports")) != (desired["endpoints"], desired["ports"]):
                        body = dict(o)
                        body["endpoints"] = desired["endpoints"]
                        body["ports"] = desired["ports"]
                        body["metadata"] = dict(o["metadata"])
                        self.reg.update(EPS, ns, o["metadata"]["name"], body)
                else:
                    labels = dict((svc["metadata"].get("labels") or {}))
                    labels["kubernetes.io/service-name"] = name
                    labels["endpointslice.kubernetes.io/managed-by"] = MANAGED_BY
                    body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                            "metadata": {"generateName": name + "-", "namespace": ns, "labels": labels,
                                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                                              "uid": svc["metadata"]["uid"], "controller": True,
                                                              "blockOwnerDeletion": True}]},
                            "addressType": fam, "endpoints": desired["endpoints"], "ports": desired["ports"]}
                    self.reg.create(EPS, ns, body)
            for rest in by_type.values():
                for o in rest:
                    self.reg.delete(EPS, ns, o["metadata"]["name"], {})

    @staticmethod
    def _desired(svc, pods, fam):
        eps = []
        for p in pods:
            st = p.get("status") or {}
            ips = [x.get("ip") for x in st.get("podIPs") or [] if x.get("ip")] or \
                  ([st["podIP"]] if st.get("podIP") else [])
            ip = next((i for i in ips if (":" in i) == (fam == "IPv6")), None)
            if not ip:
                continue
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in st.get("conditions") or [])
            terminating = bool(p["metadata"].get("deletionTimestamp"))
            ep = {"addresses": [ip],
                  "conditions": {"ready": ready_cond and not terminating, "serving": ready_cond,
                                 "terminating": terminating},
                  "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"],
                                "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}}
            node = (p.get("spec") or {}).get("nodeName")
            if node:
                ep["nodeName"] = node
            eps.append(ep)
        if not eps:
            return {"endpoints": None, "ports": None}
        ports = []
        for sp in (svc.get("spec") or {}).get("ports") or []:
            tp = sp.get("targetPort", sp.get("port"))
            if isinstance(tp, str):
                num = None
                for p in pods:
                    for c in (p.get("spec") or {}).get("containers") or []:
                        for cp in c.get("ports") or []:
                            if cp.get("name") == tp:
                                num = cp.get("containerPort")
                tp = num
            if tp is None:
                continue
            port = {"name": sp.get("name", ""), "protocol": sp.get("protocol", "TCP"), "port": tp}
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            ports.append(port)
        return {"endpoints": eps, "ports": ports}
