"""Kubernetes Status errors (metav1.Status) with the exact apiserver wording."""
from .util import dumpb

REASON_BY_CODE = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                  405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
                  415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
                  500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class ApiError(Exception):
    def __init__(self, code, message, reason=None, details=None, retry_after=None, meta=None,
                 plain=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASON_BY_CODE.get(code, "")
        self.details = details
        self.retry_after = retry_after
        self.meta = meta or {}
        self.plain = plain  # text/plain body instead of a Status

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": self.meta, "status": "Failure",
              "message": self.message}
        if self.reason:
            st["reason"] = self.reason
        if self.details is not None:
            st["details"] = self.details
        st["code"] = self.code
        return st

    def body(self):
        if self.plain is not None:
            return self.plain.encode()
        return dumpb(self.status()) + b"\n"


def qualified(res):
    """'services' or 'leases.coordination.k8s.io'."""
    return res.plural + ("." + res.group if res.group else "")


def _details(res, name=None, extra=None):
    d = {}
    if name:
        d["name"] = name
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    if extra:
        d.update(extra)
    return d


def not_found(res, name):
    return ApiError(404, '%s "%s" not found' % (qualified(res), name), "NotFound", _details(res, name))


def ns_not_found(ns):
    return ApiError(404, 'namespaces "%s" not found' % ns, "NotFound", {"name": ns, "kind": "namespaces"})


def already_exists(res, name):
    return ApiError(409, '%s "%s" already exists' % (qualified(res), name), "AlreadyExists", _details(res, name))


def conflict(res, name, why="the object has been modified; please apply your changes to the latest version and try again"):
    return ApiError(409, 'Operation cannot be fulfilled on %s "%s": %s' % (qualified(res), name, why), "Conflict",
                    _details(res, name))


def uid_conflict(res, name, want, have):
    return ApiError(409, 'Operation cannot be fulfilled on %s "%s": Precondition failed: UID in precondition: %s, '
                    'UID in object meta: %s' % (qualified(res), name, want, have), "Conflict", _details(res, name))


def bad_request(msg):
    return ApiError(400, msg, "BadRequest")


def invalid(res, name, causes):
    """causes: list of (field, message-after-field, reason)."""
    kind_q = res.kind + ("." + res.group if res.group else "")
    parts = ["%s: %s" % (f, m) for f, m, _ in causes]
    msg = '%s "%s" is invalid: %s' % (kind_q, name, parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]")
    det = {}
    if name:
        det["name"] = name
    if res.group:
        det["group"] = res.group
    det["kind"] = res.kind
    det["causes"] = [{"reason": r, "message": m, "field": f} for f, m, r in causes]
    return ApiError(422, msg, "Invalid", det)


def unsupported_patch():
    return ApiError(415, "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, "
                    "application/strategic-merge-patch+json, application/apply-patch+yaml",
                    "UnsupportedMediaType")


def apply_needs_field_manager():
    return ApiError(422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
                    'apply patch', "Invalid",
                    {"group": "meta.k8s.io", "kind": "PatchOptions",
                     "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
                                 "field": "fieldManager"}]})


def too_large_rv(want, cur):
    return ApiError(504, "Timeout: Too large resource version: %d, current: %d" % (want, cur), "Timeout",
                    {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                     "retryAfterSeconds": 1}, retry_after=1)


def too_old_rv_status(want, oldest):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version: %d (%d)" % (want, oldest), "reason": "Expired", "code": 410}


CONTINUE_EXPIRED_MSG = ("The provided continue parameter is too old to display a consistent list result. You can "
                        "start a new list without the continue parameter, or use the continue token in this response "
                        "to retrieve the remainder of the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted between the time the "
                        "first chunk was returned and now may show up in the list.")


def continue_expired(new_token):
    return ApiError(410, CONTINUE_EXPIRED_MSG, "Expired", meta={"continue": new_token} if new_token else {})


def unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user, verb, res=None, name=None, ns=None, sub=None, path=None):
    if res is None:
        return ApiError(403, 'forbidden: User "%s" cannot %s path "%s"' % (user, verb, path), "Forbidden", {})
    q = qualified(res)
    prefix = q + (' "%s"' % name if name else "")
    r = res.plural + ("/" + sub if sub else "")
    scope = 'in the namespace "%s"' % ns if ns else "at the cluster scope"
    msg = '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
        prefix, user, verb, r, res.group, scope)
    return ApiError(403, msg, "Forbidden", _details(res, name))


def internal(msg):
    return ApiError(500, "Internal error occurred: " + msg, "InternalError", {"causes": [{"message": msg}]})


def method_not_allowed(verb):
    return ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed", {})
