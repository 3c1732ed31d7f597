"""Create-only endpoints that are computed, not stored: TokenRequest (serviceaccounts/<name>/token),
TokenReview, SelfSubjectReview (`kubectl auth whoami`), SelfSubjectAccessReview (`kubectl auth can-i`),
SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectRulesReview. Every answer comes from the
authenticator and authorizer that serve real requests."""
from . import errors
from .auth import User
from .rbac import Attrs
from .resources import BY_KEY
from .tokens import DEFAULT_EXPIRATION, MIN_EXPIRATION
from .util import now_rfc3339

_BOUND_KINDS = {"Pod": "/pods", "Secret": "/secrets", "Node": "/nodes"}


def _invalid(kind, group, name, field, msg, reason="FieldValueInvalid"):
    det = {"group": group, "kind": kind, "causes": [{"reason": reason, "message": msg, "field": field}]}
    if name:
        det["name"] = name
    return errors.ApiError(422, '%s.%s "%s" is invalid: %s: %s' % (kind, group, name, field, msg), "Invalid", det)


def _reply(h, res, body, extra):
    md = dict(body.get("metadata") or {})
    md.setdefault("creationTimestamp", None)
    out = {"kind": res.kind, "apiVersion": res.api_version, "metadata": md}
    out.update(extra)
    return h.send_json(201, out)


def handle(h, res, ns, name, sub):
    body = h.body_object()
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be an object")
    if sub == "token":
        return token_request(h, ns, name, body)
    fn = {"selfsubjectreviews": self_subject_review, "tokenreviews": token_review,
          "selfsubjectaccessreviews": self_access_review, "subjectaccessreviews": access_review,
          "localsubjectaccessreviews": access_review, "selfsubjectrulesreviews": rules_review}[res.plural]
    return fn(h, res, ns, body)


# ------------------------------------------------------------------------------------------- tokens
def token_request(h, ns, name, body):
    app = h.app
    sa_res = BY_KEY["/serviceaccounts"]
    sa = app.store.get(sa_res, ns, name)
    if sa is None:
        raise errors.not_found(sa_res, name)
    spec = body.get("spec") or {}
    exp = spec.get("expirationSeconds")
    exp = DEFAULT_EXPIRATION if exp in (None, 0) else exp
    g = "authentication.k8s.io"
    if not isinstance(exp, int) or exp < MIN_EXPIRATION:
        raise _invalid("TokenRequest", g, name, "spec.expirationSeconds",
                       "Invalid value: %s: may not specify a duration less than 10 minutes" % exp)
    if exp > 1 << 32:
        raise _invalid("TokenRequest", g, name, "spec.expirationSeconds",
                       "Invalid value: %s: may not specify a duration larger than 2^32 seconds" % exp)
    if app.max_token_seconds and exp > app.max_token_seconds:
        exp = app.max_token_seconds
    auds = spec.get("audiences") or list(app.issuer.audiences)
    bound = spec.get("boundObjectRef")
    bref = None
    if bound:
        key = _BOUND_KINDS.get(bound.get("kind"))
        if key is None:
            raise errors.bad_request('cannot bind token for serviceaccount "%s" to object of type %s' % (
                name, bound.get("kind")))
        bres = BY_KEY[key]
        bobj = app.store.get(bres, ns if bres.namespaced else "", bound.get("name"))
        if bobj is None:
            raise errors.not_found(bres, bound.get("name"))
        uid = bobj["metadata"]["uid"]
        if bound.get("uid") and bound["uid"] != uid:
            raise errors.conflict(bres, bound.get("name"), "the UID in the bound object reference (%s) does not "
                                  "match the UID in record. The object might have been deleted and then "
                                  "recreated" % bound["uid"])
        bref = {"kind": bound["kind"], "apiVersion": bound.get("apiVersion") or "v1", "name": bound["name"],
                "uid": uid}
    token, claims = app.issuer.mint(ns, name, sa["metadata"]["uid"], auds, exp, bref)
    import time
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))
    md = dict(body.get("metadata") or {})
    md.update({"name": name, "namespace": ns, "creationTimestamp": now_rfc3339()})
    out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": md,
           "spec": {"audiences": auds, "expirationSeconds": exp, "boundObjectRef": bref},
           "status": {"token": token, "expirationTimestamp": ts}}
    return h.send_json(201, out)


def token_review(h, res, ns, body):
    spec = body.get("spec") or {}
    u = h.app.auth.token_user(spec.get("token") or "")
    status = {"authenticated": False, "user": {}}
    if u is not None:
        auds = spec.get("audiences") or list(h.app.issuer.audiences)
        ok = set(auds) & set(h.app.issuer.audiences)
        if ok:
            status = {"authenticated": True, "user": u.user_info(), "audiences": sorted(ok)}
        else:
            status["error"] = "token audiences %s is invalid for the target audiences %s" % (
                h.app.issuer.audiences, auds)
    return _reply(h, res, body, {"spec": spec, "status": status})


def self_subject_review(h, res, ns, body):
    return _reply(h, res, body, {"status": {"userInfo": h.user.user_info()}})


# ------------------------------------------------------------------------------------------- access
def _attrs(res, spec, name):
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if bool(ra) == bool(nra):
        raise _invalid(res.kind, res.group, name, "spec.resourceAttributes",
                       'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be '
                       'specified')
    if nra:
        return Attrs(nra.get("verb", ""), False, path=nra.get("path", ""))
    return Attrs(ra.get("verb", ""), True, ra.get("group", ""), ra.get("version", ""), ra.get("resource", ""),
                 ra.get("subresource", ""), ra.get("namespace", ""), ra.get("name", ""))


def _status(auth, user, a):
    ok, reason = auth.authorize(user, a, want_reason=True)
    st = {"allowed": ok}
    if reason:
        st["reason"] = reason
    return st


def self_access_review(h, res, ns, body):
    spec = body.get("spec") or {}
    a = _attrs(res, spec, (body.get("metadata") or {}).get("name", ""))
    return _reply(h, res, body, {"spec": spec, "status": _status(h.app.auth, h.user, a)})


def access_review(h, res, ns, body):
    spec = body.get("spec") or {}
    name = (body.get("metadata") or {}).get("name", "")
    if res.namespaced:
        ra = spec.get("resourceAttributes")
        if ra is not None:
            if ra.get("namespace") and ra["namespace"] != ns:
                raise _invalid(res.kind, res.group, name, "spec.resourceAttributes.namespace",
                               'Invalid value: "%s": must match metadata.namespace' % ra["namespace"])
            ra["namespace"] = ns
        (body.setdefault("metadata", {}))["namespace"] = ns
    if not spec.get("user") and not spec.get("groups"):
        raise _invalid(res.kind, res.group, name, "spec.user", 'Invalid value: "": at least one of user or group '
                       'must be specified')
    a = _attrs(res, spec, name)
    # "What if User were ...": exactly the groups given (no system:authenticated added), RBAC only
    who = User(spec.get("user") or "", spec.get("groups") or [], rbac=True, uid=spec.get("uid") or "",
               extra=spec.get("extra"))
    return _reply(h, res, body, {"spec": spec, "status": _status(h.app.auth, who, a)})


def rules_review(h, res, ns, body):
    spec = body.get("spec") or {}
    namespace = spec.get("namespace", "")
    rrules, nrules = [], []
    for r in h.app.auth.rules_for(h.user, namespace):
        if r.get("nonResourceURLs"):
            nrules.append({"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]})
        else:
            d = {"verbs": r.get("verbs") or [], "apiGroups": r.get("apiGroups") or [],
                 "resources": r.get("resources") or []}
            if r.get("resourceNames"):
                d["resourceNames"] = r["resourceNames"]
            rrules.append(d)
    status = {"resourceRules": rrules, "nonResourceRules": nrules, "incomplete": not h.user.rbac}
    return _reply(h, res, body, {"spec": spec, "status": status})
