"""Legacy (unaggregated) discovery documents; kubectl falls back to these when the server answers
aggregated-discovery requests with plain application/json."""
from .resources import RESOURCES, group_versions

VERSION = {"major": "1", "minor": "32", "emulationMajor": "1", "emulationMinor": "32",
           "minCompatibilityMajor": "1", "minCompatibilityMinor": "31", "gitVersion": "v1.32.4-kvtest",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2025-04-22T16:00:00Z", "goVersion": "go1.23.8", "compiler": "gc",
           "platform": "linux/amd64"}


def api_versions(server_addr):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]}


def _groups():
    out = []
    for g, v in group_versions():
        if g and g not in [x[0] for x in out]:
            out.append((g, v))
    return out


def api_group(g, v):
    gv = {"groupVersion": g + "/" + v, "version": v}
    return {"name": g, "versions": [gv], "preferredVersion": gv}


def api_group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(g, v) for g, v in _groups()]}


def api_group_doc(g):
    for gg, v in _groups():
        if gg == g:
            d = {"kind": "APIGroup", "apiVersion": "v1"}
            d.update(api_group(g, v))
            return d
    return None


def resource_list(g, v):
    rs = [r for r in RESOURCES if r.gv == (g, v)]
    if not rs:
        return None
    out = []
    for r in rs:
        e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
             "verbs": list(r.verbs)}
        if r.short:
            e["shortNames"] = r.short
        if r.categories:
            e["categories"] = r.categories
        out.append(e)
        if r.status:
            out.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]})
        for sub, (sg, sv, skind, sverbs) in sorted(r.subresources.items()):
            out.append({"name": r.plural + "/" + sub, "singularName": "", "namespaced": r.namespaced,
                        "group": sg, "version": sv, "kind": skind, "verbs": list(sverbs)})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": (g + "/" + v) if g else v,
            "resources": out}


# ---------------------------------------------------------------------------------------------
# Minimal OpenAPI v3: just enough for kubectl to see that every kind supports server-side
# field validation (so it skips client-side schema validation and needs no --validate=false).

def _gv_path(g, v):
    return "api/" + v if not g else "apis/%s/%s" % (g, v)


def openapi_v3_index():
    paths = {}
    for g, v in group_versions():
        p = _gv_path(g, v)
        paths[p] = {"serverRelativeURL": "/openapi/v3/%s?hash=KVTEST%s" % (p, abs(hash(p)) % 10 ** 8)}
    return {"paths": paths}


def openapi_v3_doc(gvpath):
    for g, v in group_versions():
        if _gv_path(g, v) != gvpath:
            continue
        paths = {}
        params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
        for r in RESOURCES:
            if r.gv != (g, v) or r.virtual:
                continue
            base = "/" + gvpath + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural + "/{name}"
            gvk = {"group": g, "version": v, "kind": r.kind}
            paths[base] = {"patch": {"operationId": "patch" + r.kind, "parameters": params,
                                     "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                                     "responses": {"200": {"description": "OK"}}},
                           "put": {"operationId": "replace" + r.kind, "parameters": params,
                                   "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
                                   "responses": {"200": {"description": "OK"}}}}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4-kvtest"}, "paths": paths,
                "components": {"schemas": {}}}
    return None
