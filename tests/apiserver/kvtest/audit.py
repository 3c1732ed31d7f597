"""Audit log (--audit-log FILE): one audit.k8s.io/v1 Event per request at level Metadata, one JSON object a
line, as kube-apiserver's log backend writes them. Requests complete with stage ResponseComplete; a watch is
logged when its response starts (ResponseStarted), since it may never complete while the test runs.
objectRef carries the authorization attributes, name included when a list or watch selects one object by
metadata.name (RBAC authorizes it for that name)."""
import json
import threading
import time

from .util import now_rfc3339


def _micro():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


class AuditLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1)

    def log(self, h, stage):
        a = h.attrs
        user = h.user
        imp = getattr(h, "impersonator", None)
        ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": h.audit_id,
              "stage": stage, "requestURI": h.path, "verb": a.verb if a else (h.command or "").lower()}
        if imp is not None:
            ev["user"] = imp.user_info()
            ev["impersonatedUser"] = user.user_info()
        elif user is not None:
            ev["user"] = user.user_info()
        ev["sourceIPs"] = [h.client_address[0]]
        ev["userAgent"] = h.headers.get("User-Agent", "")
        if a is not None and a.resource_request:
            ref = {"resource": a.resource}
            for k, v in (("namespace", a.namespace), ("name", a.name), ("apiGroup", a.group),
                         ("apiVersion", a.version), ("subresource", a.subresource)):
                if v:
                    ref[k] = v
            ev["objectRef"] = ref
        ev["responseStatus"] = {"metadata": {}, "code": h.resp_code}
        ev["requestReceivedTimestamp"] = getattr(h, "received", None) or now_rfc3339()
        ev["stageTimestamp"] = _micro()
        line = json.dumps(ev, separators=(",", ":")) + "\n"
        with self.lock:
            self.f.write(line)
