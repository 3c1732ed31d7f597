"""Kind registry: paths, discovery metadata, defaults, validation, field labels, bookmarks."""
import ipaddress
import random
import re
import time

from . import errors
from .util import now_rfc3339

RBAC = "rbac.authorization.k8s.io"
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
META_FIELDS = {"metadata.name", "metadata.namespace"}


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short=(), status=False, singular=None,
                 fields=(), uncond_update=True, create_on_update=False, return_deleted=False,
                 generation=False, reset_status_on_create=False, bookmark=None, categories=(), verbs=None,
                 virtual=False, subresources=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.short = list(short)
        self.status = status
        self.singular = singular or kind.lower()
        self.field_labels = set(META_FIELDS) | set(fields)
        self.uncond_update = uncond_update
        self.create_on_update = create_on_update
        self.return_deleted = return_deleted
        self.generation = generation
        self.reset_status_on_create = reset_status_on_create
        self.bookmark_extra = bookmark or {}
        self.categories = list(categories)
        self.verbs = list(verbs or ALL_VERBS)
        # virtual: create-only, computed per request, never stored (access and token reviews)
        self.virtual = virtual
        # other subresources than status: name -> (group, version, kind, verbs)
        self.subresources = dict(subresources or {})

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def gv(self):
        return (self.group, self.version)

    @property
    def list_kind(self):
        return self.kind + "List"

    def key(self):
        return self.group + "/" + self.plural

    def __repr__(self):
        return "<Resource %s>" % self.key()


_NODEINFO = {k: "" for k in ["machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                             "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                             "operatingSystem", "architecture"]}

RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"], status=True, return_deleted=True,
             fields=["status.phase"], reset_status_on_create=True, bookmark={"spec": {}, "status": {}}),
    Resource("", "v1", "services", "Service", True, ["svc"], status=True, return_deleted=True,
             fields=["spec.clusterIP", "spec.type"], reset_status_on_create=True,
             bookmark={"spec": {}, "status": {"loadBalancer": {}}}, categories=["all"]),
    Resource("", "v1", "endpoints", "Endpoints", True, ["ep"], singular="endpoints", create_on_update=True),
    Resource("", "v1", "nodes", "Node", False, ["no"], status=True, return_deleted=True,
             fields=["spec.unschedulable"],
             bookmark={"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                                              "nodeInfo": _NODEINFO}}),
    Resource("", "v1", "pods", "Pod", True, ["po"], status=True, return_deleted=True,
             fields=["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                     "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                     "status.nominatedNodeName"], reset_status_on_create=True,
             bookmark={"spec": {"containers": None}, "status": {}}, categories=["all"]),
    Resource("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
    Resource("", "v1", "secrets", "Secret", True, [], fields=["type"]),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"],
             subresources={"token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"])}),
    Resource("", "v1", "events", "Event", True, ["ev"], create_on_update=True,
             fields=["involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                     "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"],
             bookmark={"involvedObject": {}, "reason": "", "message": "", "source": {}, "firstTimestamp": None,
                       "lastTimestamp": None, "count": 0, "type": "", "eventTime": None,
                       "reportingComponent": "", "reportingInstance": ""}),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, [], generation=True,
             bookmark={"addressType": "", "endpoints": None, "ports": None}),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, [], uncond_update=False,
             create_on_update=True, bookmark={"spec": {}}),
    Resource("networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR", False, [], status=True,
             reset_status_on_create=True, bookmark={"spec": {}, "status": {}}),
    Resource("events.k8s.io", "v1", "events", "Event", True, [], create_on_update=True,
             fields=["reason", "type", "reportingController", "regarding.kind", "regarding.name",
                     "regarding.namespace", "regarding.uid"],
             bookmark={"eventTime": None, "reportingController": "", "reportingInstance": ""}),
    Resource(RBAC, "v1", "clusterroles", "ClusterRole", False, [], bookmark={"rules": None}),
    Resource(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False, [],
             bookmark={"roleRef": {"apiGroup": "", "kind": "", "name": ""}}),
    Resource(RBAC, "v1", "roles", "Role", True, [], bookmark={"rules": None}),
    Resource(RBAC, "v1", "rolebindings", "RoleBinding", True, [],
             bookmark={"roleRef": {"apiGroup": "", "kind": "", "name": ""}}),
    Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, [],
             verbs=["create"], virtual=True),
    Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, [], verbs=["create"],
             virtual=True),
    Resource("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True, [],
             verbs=["create"], virtual=True),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, [],
             verbs=["create"], virtual=True),
    Resource("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, [],
             verbs=["create"], virtual=True),
    Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, [],
             verbs=["create"], virtual=True),
]

BY_GV = {}
for _r in RESOURCES:
    BY_GV.setdefault(_r.gv, {})[_r.plural] = _r
BY_KEY = {r.key(): r for r in RESOURCES}


def lookup(group, version, plural):
    return BY_GV.get((group, version), {}).get(plural)


def group_versions():
    """Ordered list of (group, version) pairs; core first."""
    seen = []
    for r in RESOURCES:
        if r.gv not in seen:
            seen.append(r.gv)
    return seen


# ---------------------------------------------------------------------------------------------
# field extraction for field selectors

def _g(obj, *path):
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _s(v):
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def fields_of(res, obj):
    md = obj.get("metadata") or {}
    f = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", "")}
    p = res.plural
    if p == "pods":
        for k in ["nodeName", "restartPolicy", "schedulerName", "serviceAccountName"]:
            f["spec." + k] = _s(_g(obj, "spec", k))
        f["spec.hostNetwork"] = "true" if _g(obj, "spec", "hostNetwork") else "false"
        f["status.phase"] = _s(_g(obj, "status", "phase"))
        f["status.podIP"] = _s(_g(obj, "status", "podIP"))
        f["status.podIPs"] = [_s(x.get("ip")) for x in (_g(obj, "status", "podIPs") or []) if isinstance(x, dict)]
        f["status.nominatedNodeName"] = _s(_g(obj, "status", "nominatedNodeName"))
    elif p == "nodes":
        f["spec.unschedulable"] = "true" if _g(obj, "spec", "unschedulable") else "false"
    elif p == "services":
        f["spec.clusterIP"] = _s(_g(obj, "spec", "clusterIP"))
        f["spec.type"] = _s(_g(obj, "spec", "type"))
    elif p == "namespaces":
        f["status.phase"] = _s(_g(obj, "status", "phase"))
    elif p == "secrets":
        f["type"] = _s(obj.get("type"))
    elif p == "events" and res.group == "":
        for k in ["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"]:
            f["involvedObject." + k] = _s(_g(obj, "involvedObject", k))
        f["reason"] = _s(obj.get("reason"))
        f["reportingComponent"] = _s(obj.get("reportingComponent"))
        f["source"] = _s(_g(obj, "source", "component"))
        f["type"] = _s(obj.get("type"))
    elif p == "events":
        for k in ["kind", "name", "namespace", "uid"]:
            f["regarding." + k] = _s(_g(obj, "regarding", k))
        f["reason"] = _s(obj.get("reason"))
        f["type"] = _s(obj.get("type"))
        f["reportingController"] = _s(obj.get("reportingController"))
    return f


def bookmark_object(res, rv):
    o = {"kind": res.kind, "apiVersion": res.api_version, "metadata": {"resourceVersion": str(rv)}}
    for k, v in res.bookmark_extra.items():
        o[k] = v
    return o


# ---------------------------------------------------------------------------------------------
# validation helpers

DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
           "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
           "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
               "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
               "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")

MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_OK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
_SECONDS_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def micro_time_error(v):
    """Return Go's time.Parse error text for a MicroTime value, or None if it parses."""
    if v is None:
        return None
    if not isinstance(v, str):
        return "json: cannot unmarshal %s into Go value of type string" % type(v).__name__
    if _MICRO_OK.match(v):
        return None
    base = 'parsing time "%s" as "%s": ' % (v, MICRO_LAYOUT)
    m = _SECONDS_PREFIX.match(v)
    if not m:
        return base + 'cannot parse "%s" as "2006"' % v
    rest = v[m.end():]
    fm = re.match(r"^\.(\d+)", rest)
    if not fm or len(fm.group(1)) < 6:
        return base + 'cannot parse "%s" as ".000000"' % rest
    rest2 = rest[7:]
    return base + 'cannot parse "%s" as "Z07:00"' % rest2


def validate_meta(res, obj, causes, is_create):
    md = obj.get("metadata") or {}
    name = md.get("name")
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
        return
    if res.plural in ("namespaces",):
        if not DNS1123_LABEL.match(name) or len(name) > 63:
            causes.append(("metadata.name", 'Invalid value: "%s": %s' % (name, LABEL_MSG), "FieldValueInvalid"))
    elif res.plural == "services":
        if not DNS1035_LABEL.match(name) or len(name) > 63:
            causes.append(("metadata.name", 'Invalid value: "%s": %s' % (name, DNS1035_MSG), "FieldValueInvalid"))
    elif res.group == RBAC:  # path segment names: "system:basic-user" is fine
        if name in (".", "..") or "/" in name or "%" in name:
            causes.append(("metadata.name", 'Invalid value: "%s": may not contain \'/\'' % name,
                           "FieldValueInvalid"))
    elif not (DNS1123_SUB.match(name) and len(name) <= 253) and res.plural not in ("events",):
        causes.append(("metadata.name", 'Invalid value: "%s": %s' % (name, SUB_MSG), "FieldValueInvalid"))


def validate(res, obj, old):
    causes = []
    validate_meta(res, obj, causes, old is None)
    fn = _VALIDATORS.get(res.key())
    if fn:
        fn(obj, old, causes)
    return causes


def _v_lease(obj, old, causes):
    spec = obj.get("spec") or {}
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or d <= 0):
        causes.append(("spec.leaseDurationSeconds", "Invalid value: %s: must be greater than 0" % d,
                       "FieldValueInvalid"))
    t = spec.get("leaseTransitions")
    if t is not None and isinstance(t, int) and t < 0:
        causes.append(("spec.leaseTransitions", "Invalid value: %d: must be greater than or equal to 0" % t,
                       "FieldValueInvalid"))


def _v_eps(obj, old, causes):
    at = obj.get("addressType")
    if not at:
        causes.append(("addressType", "Required value", "FieldValueRequired"))
    elif at not in ("IPv4", "IPv6", "FQDN"):
        causes.append(("addressType", 'Unsupported value: "%s": supported values: "FQDN", "IPv4", "IPv6"' % at,
                       "FieldValueNotSupported"))
    elif old is not None and old.get("addressType") != at:
        causes.append(("addressType", 'Invalid value: "%s": field is immutable' % at, "FieldValueInvalid"))
    for i, ep in enumerate(obj.get("endpoints") or []):
        addrs = ep.get("addresses") or []
        if not addrs:
            causes.append(("endpoints[%d].addresses" % i, "Required value: must contain at least 1 address",
                           "FieldValueRequired"))
        elif len(addrs) > 100:
            causes.append(("endpoints[%d].addresses" % i, "Too many: %d: must have at most 100 items" % len(addrs),
                           "FieldValueTooMany"))


def _v_service(obj, old, causes):
    spec = obj.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    if t not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(("spec.type", 'Unsupported value: "%s": supported values: "ClusterIP", "ExternalName", '
                       '"LoadBalancer", "NodePort"' % t, "FieldValueNotSupported"))
    if t != "ExternalName" and not spec.get("ports") and spec.get("clusterIP") != "None":
        causes.append(("spec.ports", "Required value", "FieldValueRequired"))
    for i, p in enumerate(spec.get("ports") or []):
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            causes.append(("spec.ports[%d].port" % i, "Invalid value: %s: must be between 1 and 65535, inclusive"
                           % port, "FieldValueInvalid"))
        pr = p.get("protocol", "TCP")
        if pr not in ("TCP", "UDP", "SCTP"):
            causes.append(("spec.ports[%d].protocol" % i, 'Unsupported value: "%s": supported values: "SCTP", '
                           '"TCP", "UDP"' % pr, "FieldValueNotSupported"))
    etp = spec.get("externalTrafficPolicy")
    if etp is not None and etp not in ("Cluster", "Local"):
        causes.append(("spec.externalTrafficPolicy", 'Unsupported value: "%s": supported values: "Cluster", '
                       '"Local"' % etp, "FieldValueNotSupported"))
    if old is not None:
        oc = (old.get("spec") or {}).get("clusterIP")
        nc = spec.get("clusterIP")
        if oc and nc != oc and (old.get("spec") or {}).get("type") != "ExternalName" and t != "ExternalName":
            causes.append(("spec.clusterIPs[0]", 'Invalid value: []string{"%s"}: may not change once set' % nc,
                           "FieldValueInvalid"))
    for i, ing in enumerate(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []):
        ip = ing.get("ip")
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                causes.append(("status.loadBalancer.ingress[%d].ip" % i, 'Invalid value: "%s": must be a valid '
                               'IP address' % ip, "FieldValueInvalid"))


def _v_configmap(obj, old, causes):
    for k, v in (obj.get("data") or {}).items():
        if not isinstance(v, str):
            causes.append(("data[%s]" % k, "Invalid value: must be a string", "FieldValueInvalid"))


def _go_strings(v):
    return "[]string{%s}" % ", ".join('"%s"' % x for x in v)


def _v_rules(obj, old, causes, namespaced):
    for i, r in enumerate(obj.get("rules") or []):
        f = "rules[%d]" % i
        if not isinstance(r, dict):
            causes.append((f, "Invalid value: must be an object", "FieldValueInvalid"))
            continue
        if not r.get("verbs"):
            causes.append((f + ".verbs", "Required value: verbs must contain at least one value",
                           "FieldValueRequired"))
        urls = r.get("nonResourceURLs") or []
        if urls and namespaced:
            causes.append((f + ".nonResourceURLs", "Invalid value: %s: namespaced rules cannot apply to "
                           "non-resource URLs" % _go_strings(urls), "FieldValueInvalid"))
        elif urls and (r.get("apiGroups") or r.get("resources")):
            causes.append((f + ".nonResourceURLs", "Invalid value: %s: rules cannot apply to both regular "
                           "resources and non-resource URLs" % _go_strings(urls), "FieldValueInvalid"))
        elif not urls:
            if not r.get("apiGroups"):
                causes.append((f + ".apiGroups", "Required value: resource rules must supply at least one api "
                               "group", "FieldValueRequired"))
            if not r.get("resources"):
                causes.append((f + ".resources", "Required value: resource rules must supply at least one "
                               "resource", "FieldValueRequired"))


def _v_binding(obj, old, causes, cluster):
    ref = obj.get("roleRef") or {}
    kinds = ["ClusterRole"] if cluster else ["Role", "ClusterRole"]
    if ref.get("apiGroup", RBAC) != RBAC:
        causes.append(("roleRef.apiGroup", 'Unsupported value: "%s": supported values: "%s"' % (
            ref.get("apiGroup"), RBAC), "FieldValueNotSupported"))
    if ref.get("kind") not in kinds:
        causes.append(("roleRef.kind", 'Unsupported value: "%s": supported values: %s' % (
            ref.get("kind") or "", ", ".join('"%s"' % k for k in kinds)), "FieldValueNotSupported"))
    if not ref.get("name"):
        causes.append(("roleRef.name", "Required value", "FieldValueRequired"))
    if old is not None and (old.get("roleRef") or {}) != ref:
        causes.append(("roleRef", 'Invalid value: rbac.RoleRef{APIGroup:"%s", Kind:"%s", Name:"%s"}: cannot '
                       'change roleRef' % (ref.get("apiGroup", ""), ref.get("kind", ""), ref.get("name", "")),
                       "FieldValueInvalid"))
    for i, sj in enumerate(obj.get("subjects") or []):
        f = "subjects[%d]" % i
        k = sj.get("kind")
        if k not in ("ServiceAccount", "User", "Group"):
            causes.append((f + ".kind", 'Unsupported value: "%s": supported values: "ServiceAccount", "User", '
                           '"Group"' % (k or ""), "FieldValueNotSupported"))
        if not sj.get("name"):
            causes.append((f + ".name", "Required value", "FieldValueRequired"))
        if k == "ServiceAccount" and cluster and not sj.get("namespace"):
            causes.append((f + ".namespace", "Required value", "FieldValueRequired"))


_VALIDATORS = {"coordination.k8s.io/leases": _v_lease,
               RBAC + "/roles": lambda o, old, c: _v_rules(o, old, c, True),
               RBAC + "/clusterroles": lambda o, old, c: _v_rules(o, old, c, False),
               RBAC + "/rolebindings": lambda o, old, c: _v_binding(o, old, c, False),
               RBAC + "/clusterrolebindings": lambda o, old, c: _v_binding(o, old, c, True),
               "discovery.k8s.io/endpointslices": _v_eps,
               "/services": _v_service, "/configmaps": _v_configmap}


# ---------------------------------------------------------------------------------------------
# defaults

SVC_V4 = ipaddress.ip_network("10.96.0.0/12")
SVC_V6 = ipaddress.ip_network("fd00:10:96::/112")
NODEPORT_RANGE = (30000, 32767)

SVC_SPEC_ORDER = ["ports", "selector", "clusterIP", "clusterIPs", "type", "externalIPs", "sessionAffinity",
                  "loadBalancerIP", "loadBalancerSourceRanges", "externalName", "externalTrafficPolicy",
                  "healthCheckNodePort", "publishNotReadyAddresses", "sessionAffinityConfig", "ipFamilies",
                  "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass",
                  "internalTrafficPolicy", "trafficDistribution"]
PORT_ORDER = ["name", "protocol", "appProtocol", "port", "targetPort", "nodePort"]


def _order(d, order):
    idx = {k: i for i, k in enumerate(order)}
    return dict(sorted(d.items(), key=lambda kv: idx.get(kv[0], 1000)))


def _used_service_values(store, exclude_uid=None):
    ips, ports = set(), set()
    for o in store.iter_objects(BY_KEY["/services"]):
        if exclude_uid and o["metadata"].get("uid") == exclude_uid:
            continue
        sp = o.get("spec") or {}
        for ip in sp.get("clusterIPs") or ([sp["clusterIP"]] if sp.get("clusterIP") else []):
            ips.add(ip)
        for p in sp.get("ports") or []:
            if p.get("nodePort"):
                ports.add(p["nodePort"])
        if sp.get("healthCheckNodePort"):
            ports.add(sp["healthCheckNodePort"])
    return ips, ports


def _alloc_ip(net, used):
    size = net.num_addresses
    for _ in range(2000):
        off = random.randint(1, min(size - 2, 1 << 20))
        ip = str(net.network_address + off)
        if ip not in used:
            used.add(ip)
            return ip
    raise errors.internal("range is full")


def _alloc_port(used):
    for _ in range(5000):
        p = random.randint(*NODEPORT_RANGE)
        if p not in used:
            used.add(p)
            return p
    raise errors.internal("range is full")


def _family(ip):
    return "IPv6" if ":" in ip else "IPv4"


def default_service(obj, old, store):
    """Apply Service create/update defaults (allocations included). Raises ApiError(422) on clashes."""
    res = BY_KEY["/services"]
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    ospec = (old or {}).get("spec") or {}
    name = obj["metadata"].get("name", "")
    t = spec.setdefault("type", "ClusterIP")
    ports = spec.get("ports") or []
    for p in ports:
        p.setdefault("protocol", "TCP")
        if "targetPort" not in p and isinstance(p.get("port"), int):
            p["targetPort"] = p["port"]
    # keep allocated values on update when omitted (patchAllocatedValues)
    if old is not None and t != "ExternalName" and ospec.get("type") != "ExternalName":
        if not spec.get("clusterIP") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
        if not spec.get("clusterIPs") and ospec.get("clusterIPs") and spec.get("clusterIP") == ospec.get("clusterIP"):
            spec["clusterIPs"] = list(ospec["clusterIPs"])
        if t in ("NodePort", "LoadBalancer"):
            oldports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in ospec.get("ports") or []}
            for p in ports:
                if not p.get("nodePort") and oldports.get((p.get("port"), p.get("protocol"))):
                    p["nodePort"] = oldports[(p.get("port"), p.get("protocol"))]
            if not spec.get("healthCheckNodePort") and ospec.get("healthCheckNodePort") and \
                    spec.get("externalTrafficPolicy", ospec.get("externalTrafficPolicy")) == "Local":
                spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]
        if "ipFamilies" not in spec and ospec.get("ipFamilies"):
            spec["ipFamilies"] = list(ospec["ipFamilies"])
        if "ipFamilyPolicy" not in spec and ospec.get("ipFamilyPolicy"):
            spec["ipFamilyPolicy"] = ospec["ipFamilyPolicy"]
    used_ips, used_ports = _used_service_values(store, exclude_uid=(old or {}).get("metadata", {}).get("uid"))
    if t == "ExternalName":
        for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(k, None)
    else:
        spec.setdefault("sessionAffinity", "None")
        cip = spec.get("clusterIP")
        cips = spec.get("clusterIPs")
        if cip and not cips:
            cips = [cip]
        if cips and not cip:
            cip = cips[0]
        if cip == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        else:
            pol = spec.get("ipFamilyPolicy") or "SingleStack"
            fams = spec.get("ipFamilies")
            if not fams:
                if cips:
                    fams = [_family(ip) for ip in cips]
                elif pol in ("PreferDualStack", "RequireDualStack"):
                    fams = ["IPv4", "IPv6"]
                else:
                    fams = ["IPv4"]
                if pol != "SingleStack" and len(fams) == 1:
                    fams = fams + ["IPv6" if fams[0] == "IPv4" else "IPv4"]
            causes = []
            if pol == "SingleStack" and len(fams) > 1:
                causes.append(("spec.ipFamilies", "Invalid value: %s: when spec.ipFamilyPolicy is SingleStack only "
                               "one ipFamily is allowed" % fams, "FieldValueInvalid"))
            for f in fams:
                if f not in ("IPv4", "IPv6"):
                    causes.append(("spec.ipFamilies[0]", 'Unsupported value: "%s": supported values: "IPv4", '
                                   '"IPv6"' % f, "FieldValueNotSupported"))
            if causes:
                raise errors.invalid(res, name, causes)
            out = []
            for i, f in enumerate(fams):
                if cips and i < len(cips) and cips[i]:
                    ip = cips[i]
                    try:
                        a = ipaddress.ip_address(ip)
                    except ValueError:
                        raise errors.invalid(res, name, [("spec.clusterIPs[%d]" % i, 'Invalid value: "%s": must '
                                                          'be a valid IP address' % ip, "FieldValueInvalid")])
                    net = SVC_V4 if a.version == 4 else SVC_V6
                    is_same = old is not None and ip in (ospec.get("clusterIPs") or [])
                    if not is_same:
                        if a not in net:
                            raise errors.invalid(res, name, [("spec.clusterIPs", 'Invalid value: []string{"%s"}: '
                                                              'failed to allocate IP %s: the provided IP (%s) is not '
                                                              'in the valid range. The range of valid IPs is %s'
                                                              % (ip, ip, ip, net), "FieldValueInvalid")])
                        if ip in used_ips:
                            raise errors.invalid(res, name, [("spec.clusterIPs", 'Invalid value: []string{"%s"}: '
                                                              'failed to allocate IP %s: provided IP is already '
                                                              'allocated' % (ip, ip), "FieldValueInvalid")])
                    used_ips.add(ip)
                    out.append(ip)
                else:
                    out.append(_alloc_ip(SVC_V4 if f == "IPv4" else SVC_V6, used_ips))
            spec["clusterIP"] = out[0]
            spec["clusterIPs"] = out
            spec["ipFamilies"] = fams
            spec["ipFamilyPolicy"] = pol
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if t in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
        if t == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        alloc = t == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True)
        old_np = {p.get("nodePort") for p in ospec.get("ports") or []}
        for i, p in enumerate(ports):
            np_ = p.get("nodePort")
            if np_:
                if np_ in used_ports and np_ not in old_np:
                    raise errors.invalid(res, name, [("spec.ports[%d].nodePort" % i, "Invalid value: %d: provided "
                                                      "port is already allocated" % np_, "FieldValueInvalid")])
                if not NODEPORT_RANGE[0] <= np_ <= NODEPORT_RANGE[1]:
                    raise errors.invalid(res, name, [("spec.ports[%d].nodePort" % i, "Invalid value: %d: provided "
                                                      "port is not in the valid range. The range of valid ports is "
                                                      "30000-32767" % np_, "FieldValueInvalid")])
                used_ports.add(np_)
            elif alloc:
                p["nodePort"] = _alloc_port(used_ports)
        if t == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            if not spec.get("healthCheckNodePort"):
                spec["healthCheckNodePort"] = _alloc_port(used_ports)
        else:
            spec.pop("healthCheckNodePort", None)
    else:
        spec.pop("externalTrafficPolicy", None)
        spec.pop("healthCheckNodePort", None)
        spec.pop("allocateLoadBalancerNodePorts", None)
        for p in ports:
            p.pop("nodePort", None)
    if ports:
        spec["ports"] = [_order(p, PORT_ORDER) for p in ports]
    obj["spec"] = _order(spec, SVC_SPEC_ORDER)
    default_service_status(obj)


def default_service_status(obj):
    st = obj.get("status")
    if not isinstance(st, dict):
        st = obj["status"] = {}
    lb = st.get("loadBalancer")
    if not isinstance(lb, dict):
        lb = st["loadBalancer"] = {}
    for ing in lb.get("ingress") or []:
        if isinstance(ing, dict) and ing.get("ip") and not ing.get("ipMode"):
            ing["ipMode"] = "VIP"
    if lb.get("ingress"):
        lb["ingress"] = [_order(i, ["ip", "hostname", "ipMode", "ports"]) for i in lb["ingress"]]


def default_pod(obj, old):
    spec = obj.setdefault("spec", {})
    if old is None:
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("securityContext", {})
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        for c in spec.get("containers") or []:
            if isinstance(c, dict):
                img = c.get("image", "")
                c.setdefault("resources", {})
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                tag = img.rsplit("/", 1)[-1]
                c.setdefault("imagePullPolicy", "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in img
                             else "IfNotPresent")
                for p in c.get("ports") or []:
                    p.setdefault("protocol", "TCP")


def default_namespace(obj, old):
    md = obj["metadata"]
    labels = md.get("labels") or {}
    labels["kubernetes.io/metadata.name"] = md["name"]
    md["labels"] = labels
    spec = obj.get("spec") or {}
    if old is None:
        spec.setdefault("finalizers", ["kubernetes"])
    obj["spec"] = spec
    if old is None:
        obj["status"] = {"phase": "Active"}


def default_object(res, obj, old, store):
    k = res.key()
    if k == "/services":
        default_service(obj, old, store)
    elif k == "/pods":
        default_pod(obj, old)
        if old is None:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif k == "/namespaces":
        default_namespace(obj, old)
    elif k == "/secrets":
        obj.setdefault("type", "Opaque")
    elif k == "/endpoints":
        for ss in obj.get("subsets") or []:
            for p in ss.get("ports") or []:
                p.setdefault("protocol", "TCP")
    elif k == "discovery.k8s.io/endpointslices":
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
    elif k == "networking.k8s.io/servicecidrs":
        if old is None:
            obj["status"] = obj.get("status") or {}
    elif k == "/nodes":
        obj.setdefault("spec", {})
    elif k in (RBAC + "/roles", RBAC + "/clusterroles"):
        for r in obj.get("rules") or []:  # omitempty lists: [] is not stored
            for f in ("apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                if isinstance(r, dict) and r.get(f) == []:
                    del r[f]
    elif k in (RBAC + "/rolebindings", RBAC + "/clusterrolebindings"):
        for sj in obj.get("subjects") or []:  # SetDefaults_Subject; an empty apiGroup is omitted
            if isinstance(sj, dict) and not sj.get("apiGroup") and sj.get("kind") in ("User", "Group"):
                sj["apiGroup"] = RBAC
            elif isinstance(sj, dict) and sj.get("apiGroup") == "":
                del sj["apiGroup"]
    elif k == "/events":
        obj.setdefault("involvedObject", {})
        obj.setdefault("source", {})


def validate_decode(res, obj):
    """Errors that the real server produces while decoding the body (400)."""
    if res.key() == "coordination.k8s.io/leases":
        spec = obj.get("spec") or {}
        for f in ("acquireTime", "renewTime"):
            e = micro_time_error(spec.get(f))
            if e:
                raise errors.bad_request('Lease in version "v1" cannot be handled as a Lease: %s' % e)
