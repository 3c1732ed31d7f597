"""REST semantics on top of the store: create/update/patch/delete with the real apiserver's
preconditions, defaults, validation, finalizers, graceful pod deletion and owner-reference GC."""
import json
import threading
import time
import uuid

from . import errors, patch as patchmod
from .resources import BY_KEY, RESOURCES, default_object, default_service_status, validate, validate_decode
from .store import with_header
from .util import deepcopy_json, gen_suffix, now_rfc3339, order_meta

SERVER_META = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds",
               "selfLink")
NS_RES = BY_KEY["/namespaces"]


def _strip_for_compare(o):
    o = dict(o)
    md = dict(o.get("metadata") or {})
    md.pop("resourceVersion", None)
    md.pop("managedFields", None)
    o["metadata"] = md
    return o


def _content(o):
    return {k: v for k, v in o.items() if k not in ("metadata", "status", "kind", "apiVersion")}


class Registry:
    def __init__(self, store, pod_kill_seconds=2.0):
        self.store = store
        self.pod_kill_seconds = pod_kill_seconds
        self.wlock = threading.RLock()  # serialises read-modify-write sequences

    # ----------------------------------------------------------------- helpers
    def _decode(self, res, body):
        if isinstance(body, (bytes, bytearray)):
            try:
                body = json.loads(body.decode("utf-8")) if body.strip() else None
            except (ValueError, UnicodeDecodeError) as e:
                raise errors.bad_request('%s in version "%s" cannot be handled as a %s: %s' % (
                    res.kind, res.version, res.kind, e))
        if not isinstance(body, dict):
            raise errors.bad_request('%s in version "%s" cannot be handled as a %s: json: cannot unmarshal %s '
                                     'into Go value of type %s' % (res.kind, res.version, res.kind,
                                                                   type(body).__name__, res.kind))
        k = body.get("kind")
        if k and k != res.kind:
            raise errors.bad_request('%s in version "%s" cannot be handled as a %s: no kind "%s" is registered '
                                     'for version "%s"' % (res.kind, res.version, res.kind, k, res.api_version))
        av = body.get("apiVersion")
        if av and av != res.api_version:
            raise errors.bad_request("the API version in the data (%s) does not match the expected API version "
                                     "(%s)" % (av, res.api_version))
        md = body.get("metadata")
        if md is not None and not isinstance(md, dict):
            raise errors.bad_request('%s in version "%s" cannot be handled as a %s: json: cannot unmarshal into '
                                     'Go struct field .metadata' % (res.kind, res.version, res.kind))
        validate_decode(res, body)
        body = deepcopy_json(body)
        body.pop("kind", None)
        body.pop("apiVersion", None)
        body["metadata"] = dict(body.get("metadata") or {})
        return body

    def _check_ns(self, res, ns, body):
        md = body["metadata"]
        if res.namespaced:
            bns = md.get("namespace")
            if bns and bns != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)

    def _ns_exists(self, ns):
        n = self.store.get(NS_RES, "", ns)
        if n is None:
            raise errors.ns_not_found(ns)
        return n

    def _finish(self, res, obj, old):
        default_object(res, obj, old, self.store)
        causes = validate(res, obj, old)
        if causes:
            raise errors.invalid(res, obj["metadata"].get("name", ""), causes)
        top = {"metadata": order_meta(obj["metadata"])}
        for k, v in obj.items():
            if k != "metadata" and k != "status":
                top[k] = v
        if "status" in obj:
            top["status"] = obj["status"]
        return top

    # ----------------------------------------------------------------- create
    def create(self, res, ns, body, dry_run=False):
        body = self._decode(res, body)
        with self.wlock:
            return 201, self._create(res, ns, body, dry_run)

    def _create(self, res, ns, body, dry_run=False):
        self._check_ns(res, ns, body)
        md = body["metadata"]
        if md.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        if not md.get("name") and md.get("generateName"):
            for _ in range(20):
                cand = md["generateName"] + gen_suffix()
                if self.store.get(res, ns, cand) is None:
                    md["name"] = cand
                    break
        if res.namespaced:
            nso = self._ns_exists(ns)
            if (nso.get("status") or {}).get("phase") == "Terminating":
                raise errors.ApiError(403, 'unable to create new content in namespace %s because it is being '
                                      'terminated' % ns, "Forbidden",
                                      {"name": md.get("name", ""), "group": res.group, "kind": res.plural,
                                       "causes": [{"reason": "NamespaceTerminating", "message": 'namespace %s is '
                                                   'being terminated' % ns, "field": "metadata.namespace"}]}
                                      if res.group else
                                      {"name": md.get("name", ""), "kind": res.plural,
                                       "causes": [{"reason": "NamespaceTerminating", "message": 'namespace %s is '
                                                   'being terminated' % ns, "field": "metadata.namespace"}]})
        name = md.get("name")
        if name and self.store.get(res, ns, name) is not None:
            raise errors.already_exists(res, name)
        for k in SERVER_META:
            md.pop(k, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if res.generation:
            md["generation"] = 1
        if res.reset_status_on_create:
            body.pop("status", None)
        obj = self._finish(res, body, None)
        if dry_run:
            obj["metadata"]["resourceVersion"] = str(self.store.rv)
            return with_header(res, obj)
        with self.store.lock:
            if self.store.get(res, ns, obj["metadata"]["name"]) is not None:
                raise errors.already_exists(res, obj["metadata"]["name"])
            stored = self.store.commit(res, "ADDED", obj, None)
        return with_header(res, stored)

    # ----------------------------------------------------------------- update
    def update(self, res, ns, name, body, sub=None, dry_run=False):
        body = self._decode(res, body)
        md = body["metadata"]
        if md.get("name", "") != name:
            raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                     % (md.get("name", ""), name))
        self._check_ns(res, ns, body)
        with self.wlock:
            old = self.store.get(res, ns, name)
            if old is None:
                if sub or not res.create_on_update:
                    raise errors.not_found(res, name)
                md.pop("resourceVersion", None)
                return 201, self._create(res, ns, body, dry_run)
            rv = md.get("resourceVersion")
            if not rv:
                if not res.uncond_update:
                    raise errors.invalid(res, name, [("metadata.resourceVersion",
                                                      "Invalid value: 0x0: must be specified for an update",
                                                      "FieldValueInvalid")])
            elif rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(res, name)
            return self._update(res, old, body, sub, dry_run)

    def _update(self, res, old, body, sub, dry_run=False):
        md = body["metadata"]
        omd = old["metadata"]
        name = omd["name"]
        uid = md.get("uid")
        if uid and uid != omd["uid"]:
            raise errors.uid_conflict(res, name, uid, omd["uid"])
        if sub == "status":
            new = {k: deepcopy_json(v) for k, v in old.items() if k != "status"}
            if "status" in body:
                new["status"] = body["status"]
        else:
            new = body
            for k in SERVER_META:
                if k in omd:
                    md[k] = omd[k]
                else:
                    md.pop(k, None)
            if res.status:
                if "status" in old:
                    new["status"] = deepcopy_json(old["status"])
                else:
                    new.pop("status", None)
        new["metadata"]["resourceVersion"] = omd["resourceVersion"]
        if res.key() == "/services" and sub == "status":
            default_service_status(new)
            causes = validate(res, new, old)
            if causes:
                raise errors.invalid(res, name, causes)
            new = {k: new[k] for k in (["metadata"] + [k for k in new if k not in ("metadata", "status")] +
                                       (["status"] if "status" in new else []))}
        elif sub == "status":
            pass
        else:
            new = self._finish(res, new, old)
        if res.generation and _content(new) != _content(old):
            new["metadata"]["generation"] = omd.get("generation", 1) + 1
        if _strip_for_compare(new) == _strip_for_compare(old):
            return 200, with_header(res, old)
        if dry_run:
            return 200, with_header(res, new)
        stored = self.store.commit(res, "MODIFIED", new, old)
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers") and \
                res.key() != "/pods":
            self._really_delete(res, stored)
        return 200, with_header(res, stored)

    # ----------------------------------------------------------------- patch
    PATCH_TYPES = {"application/json-patch+json": "json", "application/merge-patch+json": "merge",
                   "application/strategic-merge-patch+json": "strategic", "application/apply-patch+yaml": "apply",
                   "application/apply-patch+cbor": None}

    def patch(self, res, ns, name, ctype, raw, sub=None, field_manager=None, force=False, dry_run=False):
        ptype = self.PATCH_TYPES.get((ctype or "").split(";")[0].strip().lower())
        if ptype is None:
            raise errors.unsupported_patch()
        if ptype == "apply" and not field_manager:
            raise errors.apply_needs_field_manager()
        if ptype == "apply":
            pbody = patchmod.parse_apply_body(raw)
        else:
            try:
                pbody = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise errors.bad_request("error decoding patch: %s" % e)
        with self.wlock:
            old = self.store.get(res, ns, name)
            if old is None:
                if ptype == "apply" and not sub:
                    body = self._decode(res, pbody)
                    if body["metadata"].get("name", name) != name:
                        raise errors.bad_request("the name of the object (%s) does not match the name on the URL "
                                                 "(%s)" % (body["metadata"].get("name"), name))
                    body["metadata"]["name"] = name
                    return 201, self._create(res, ns, body, dry_run)
                raise errors.not_found(res, name)
            base = with_header(res, deepcopy_json(old))
            if ptype == "merge":
                if not isinstance(pbody, dict):
                    raise errors.bad_request("error decoding patch: json: cannot unmarshal into Go value of type "
                                             "map[string]interface {}")
                result = patchmod.merge_patch(base, pbody)
            elif ptype == "json":
                result = patchmod.json_patch(base, pbody)
            elif ptype == "strategic":
                if not isinstance(pbody, dict):
                    raise errors.bad_request("error decoding patch: json: cannot unmarshal into Go value of type "
                                             "map[string]interface {}")
                result = patchmod.strategic_merge(base, pbody)
            else:
                if not isinstance(pbody, dict):
                    raise errors.bad_request("error decoding YAML: expected an object")
                for f in ("apiVersion", "kind"):
                    if not pbody.get(f):
                        raise errors.bad_request("%s must be set" % f if f == "kind" else "apiVersion must be set")
                pmd = pbody.get("metadata") or {}
                if pmd.get("name") and pmd.get("name") != name:
                    raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                             % (pmd.get("name"), name))
                result = patchmod.strategic_merge(base, pbody)
            if not isinstance(result, dict):
                raise errors.bad_request("patched object is not an object")
            body = self._decode(res, result)
            md = body["metadata"]
            if md.get("name") != name:
                raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                         % (md.get("name", ""), name))
            rv = md.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(res, name)
            self._check_ns(res, ns, body)
            return self._update(res, old, body, sub, dry_run)

    # ----------------------------------------------------------------- delete
    def delete(self, res, ns, name, opts, dry_run=False):
        with self.wlock:
            old = self.store.get(res, ns, name)
            if old is None:
                raise errors.not_found(res, name)
            omd = old["metadata"]
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != omd["uid"]:
                raise errors.conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: "
                                      "%s" % (pre["uid"], omd["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != omd["resourceVersion"]:
                raise errors.conflict(res, name, "Precondition failed: ResourceVersion in precondition: %s, "
                                      "ResourceVersion in meta: %s" % (pre["resourceVersion"],
                                                                       omd["resourceVersion"]))
            if dry_run:
                return 200, self._delete_response(res, old)
            if res.key() == "/namespaces":
                return 200, self._delete_namespace(old)
            if omd.get("finalizers"):
                if omd.get("deletionTimestamp"):
                    return 200, with_header(res, old)
                new = deepcopy_json(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return 200, with_header(res, self.store.commit(res, "MODIFIED", new, old))
            if res.key() == "/pods":
                grace = opts.get("gracePeriodSeconds")
                if grace is None:
                    grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                if (old.get("spec") or {}).get("nodeName") and grace and grace > 0 and \
                        (old.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    if omd.get("deletionTimestamp"):
                        return 200, with_header(res, old)
                    new = deepcopy_json(old)
                    new["metadata"]["deletionTimestamp"] = now_rfc3339(time.time() + grace)
                    new["metadata"]["deletionGracePeriodSeconds"] = grace
                    stored = self.store.commit(res, "MODIFIED", new, old)
                    t = threading.Timer(min(grace, self.pod_kill_seconds), self._kill_pod, (ns, name, omd["uid"]))
                    t.daemon = True
                    t.start()
                    return 200, with_header(res, stored)
            deleted = self._really_delete(res, old)
            return 200, self._delete_response(res, deleted)

    def _delete_response(self, res, obj):
        if res.return_deleted:
            return with_header(res, obj)
        det = {"name": obj["metadata"]["name"]}
        if res.group:
            det["group"] = res.group
        det["kind"] = res.plural
        det["uid"] = obj["metadata"]["uid"]
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": det}

    def _kill_pod(self, ns, name, uid):
        res = BY_KEY["/pods"]
        with self.wlock:
            cur = self.store.get(res, ns, name)
            if cur is not None and cur["metadata"]["uid"] == uid and not cur["metadata"].get("finalizers"):
                self._really_delete(res, cur)

    def _really_delete(self, res, old):
        obj = deepcopy_json(old)
        stored = self.store.commit(res, "DELETED", obj, old)
        self._gc(old)
        return stored

    def _gc(self, owner):
        uid = owner["metadata"]["uid"]
        ns = owner["metadata"].get("namespace", "")
        for r in RESOURCES:
            if not r.namespaced and ns:
                continue
            for o in self.store.iter_objects(r):
                md = o["metadata"]
                if ns and md.get("namespace") != ns:
                    continue
                refs = md.get("ownerReferences") or []
                if any(isinstance(x, dict) and x.get("uid") == uid for x in refs):
                    if self.store.get(r, md.get("namespace", ""), md["name"]) is o:
                        self._really_delete(r, o)

    def _delete_namespace(self, old):
        res = NS_RES
        name = old["metadata"]["name"]
        new = deepcopy_json(old)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new["status"] = {"phase": "Terminating"}
        stored = self.store.commit(res, "MODIFIED", new, old)
        for r in RESOURCES:
            if r.namespaced:
                for o in self.store.iter_objects(r):
                    if o["metadata"].get("namespace") == name:
                        self._really_delete(r, o)
        resp = with_header(res, stored)
        self._really_delete(res, stored)
        return resp

    def delete_collection(self, res, ns, lsel, fsel, opts, dry_run=False):
        from .resources import fields_of
        out = []
        with self.wlock:
            items, _ = self.store.list(res, ns)
            for o in items:
                md = o["metadata"]
                if lsel and not lsel.matches(md.get("labels")):
                    continue
                if fsel and not fsel.matches(fields_of(res, o)):
                    continue
                try:
                    _, r = self.delete(res, md.get("namespace", ""), md["name"], opts, dry_run)
                except errors.ApiError:
                    continue
                if r.get("kind") == res.kind:
                    r = {k: v for k, v in r.items() if k not in ("kind", "apiVersion")}
                    out.append(r)
                else:
                    out.append(o)
        return 200, {"kind": res.list_kind, "apiVersion": res.api_version,
                     "metadata": {"resourceVersion": str(self.store.rv)}, "items": out}

    # ----------------------------------------------------------------- bootstrap
    def ensure_default_namespaces(self):
        for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.get(NS_RES, "", n) is None:
                self._create(NS_RES, "", {"metadata": {"name": n}})

    def reset(self):
        with self.wlock:
            for r in RESOURCES:
                for o in self.store.iter_objects(r):
                    if r.key() == "/namespaces" and o["metadata"]["name"] in ("default", "kube-system",
                                                                               "kube-public", "kube-node-lease"):
                        continue
                    self.store.commit(r, "DELETED", deepcopy_json(o), o)
            self.ensure_default_namespaces()
