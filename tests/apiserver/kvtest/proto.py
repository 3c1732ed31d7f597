"""Protobuf request bodies (application/vnd.kubernetes.protobuf), decoded to the JSON object the rest of
the server handles. kubectl's typed clients send protobuf for `create token`, `auth can-i`, `auth whoami`
and the `create namespace|serviceaccount|configmap|secret|role|clusterrole|rolebinding|clusterrolebinding`
generators. Only the kinds in SCHEMAS are understood (field numbers from k8s.io/api generated.proto);
anything else answers 415 as before. Responses stay JSON: clients accept it and pick the decoder by
Content-Type."""

MAGIC = b"k8s\x00"

# A schema maps a field number to (json name, type, repeated). Types: "string", "bytes", "int", "bool",
# ("map", value type) or another schema (a nested message). Unknown field numbers are skipped.
_S, _I, _B = "string", "int", "bool"

TIME = {1: ("seconds", _I, False), 2: ("nanos", _I, False)}
OWNER_REF = {1: ("kind", _S, False), 3: ("name", _S, False), 4: ("uid", _S, False), 5: ("apiVersion", _S, False),
             6: ("controller", _B, False), 7: ("blockOwnerDeletion", _B, False)}
OBJECT_META = {1: ("name", _S, False), 2: ("generateName", _S, False), 3: ("namespace", _S, False),
               5: ("uid", _S, False), 6: ("resourceVersion", _S, False), 7: ("generation", _I, False),
               11: ("labels", ("map", _S), False), 12: ("annotations", ("map", _S), False),
               13: ("ownerReferences", OWNER_REF, True), 14: ("finalizers", _S, True)}
POLICY_RULE = {1: ("verbs", _S, True), 2: ("apiGroups", _S, True), 3: ("resources", _S, True),
               4: ("resourceNames", _S, True), 5: ("nonResourceURLs", _S, True)}
LABEL_SELECTOR_REQ = {1: ("key", _S, False), 2: ("operator", _S, False), 3: ("values", _S, True)}
LABEL_SELECTOR = {1: ("matchLabels", ("map", _S), False), 2: ("matchExpressions", LABEL_SELECTOR_REQ, True)}
AGGREGATION_RULE = {1: ("clusterRoleSelectors", LABEL_SELECTOR, True)}
SUBJECT = {1: ("kind", _S, False), 2: ("apiGroup", _S, False), 3: ("name", _S, False), 4: ("namespace", _S, False)}
ROLE_REF = {1: ("apiGroup", _S, False), 2: ("kind", _S, False), 3: ("name", _S, False)}
OBJECT_REF = {1: ("kind", _S, False), 2: ("namespace", _S, False), 3: ("name", _S, False), 4: ("uid", _S, False),
              5: ("apiVersion", _S, False), 6: ("resourceVersion", _S, False), 7: ("fieldPath", _S, False)}
LOCAL_REF = {1: ("name", _S, False)}
BOUND_REF = {1: ("kind", _S, False), 2: ("apiVersion", _S, False), 3: ("name", _S, False), 4: ("uid", _S, False)}
TOKEN_REQUEST_SPEC = {1: ("audiences", _S, True), 4: ("expirationSeconds", _I, False),
                      3: ("boundObjectRef", BOUND_REF, False)}
RESOURCE_ATTRS = {1: ("namespace", _S, False), 2: ("verb", _S, False), 3: ("group", _S, False),
                  4: ("version", _S, False), 5: ("resource", _S, False), 6: ("subresource", _S, False),
                  7: ("name", _S, False)}
NON_RESOURCE_ATTRS = {1: ("path", _S, False), 2: ("verb", _S, False)}
EXTRA_VALUE = {1: ("items", _S, True)}
SSAR_SPEC = {1: ("resourceAttributes", RESOURCE_ATTRS, False), 2: ("nonResourceAttributes", NON_RESOURCE_ATTRS, False)}
SAR_SPEC = dict(SSAR_SPEC)
SAR_SPEC.update({3: ("user", _S, False), 4: ("groups", _S, True), 5: ("extra", ("map", EXTRA_VALUE), False),
                 6: ("uid", _S, False)})
SSRR_SPEC = {1: ("namespace", _S, False)}


def _obj(fields=None):
    d = {1: ("metadata", OBJECT_META, False)}
    d.update(fields or {})
    return d


SCHEMAS = {
    ("v1", "Namespace"): _obj({2: ("spec", {1: ("finalizers", _S, True)}, False)}),
    ("v1", "ServiceAccount"): _obj({2: ("secrets", OBJECT_REF, True), 3: ("imagePullSecrets", LOCAL_REF, True),
                                      4: ("automountServiceAccountToken", _B, False)}),
    ("v1", "ConfigMap"): _obj({2: ("data", ("map", _S), False), 3: ("binaryData", ("map", "bytes"), False),
                                 4: ("immutable", _B, False)}),
    ("v1", "Secret"): _obj({2: ("data", ("map", "bytes"), False), 3: ("type", _S, False),
                              4: ("stringData", ("map", _S), False), 5: ("immutable", _B, False)}),
    ("rbac.authorization.k8s.io/v1", "Role"): _obj({2: ("rules", POLICY_RULE, True)}),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): _obj({2: ("rules", POLICY_RULE, True),
                                                            3: ("aggregationRule", AGGREGATION_RULE, False)}),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): _obj({2: ("subjects", SUBJECT, True),
                                                            3: ("roleRef", ROLE_REF, False)}),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): _obj({2: ("subjects", SUBJECT, True),
                                                                   3: ("roleRef", ROLE_REF, False)}),
    ("authentication.k8s.io/v1", "TokenRequest"): _obj({2: ("spec", TOKEN_REQUEST_SPEC, False)}),
    ("authentication.k8s.io/v1", "SelfSubjectReview"): _obj(),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): _obj({2: ("spec", SSAR_SPEC, False)}),
    ("authorization.k8s.io/v1", "SubjectAccessReview"): _obj({2: ("spec", SAR_SPEC, False)}),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): _obj({2: ("spec", SAR_SPEC, False)}),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): _obj({2: ("spec", SSRR_SPEC, False)}),
}


class ProtoError(ValueError):
    pass


def _varint(b, i):
    shift = v = 0
    while True:
        if i >= len(b):
            raise ProtoError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def _fields(b):
    """Yields (field number, wire type, value): an int for varints, bytes for length-delimited."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ProtoError("truncated field %d" % num)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ProtoError("unsupported wire type %d" % wt)
        yield num, wt, v


def _scalar(typ, wt, v):
    if typ == _S:
        if wt != 2:
            raise ProtoError("string field with wire type %d" % wt)
        return v.decode("utf-8")
    if typ == "bytes":
        import base64
        return base64.b64encode(v).decode()
    if typ == _I:
        if v >= 1 << 63:
            v -= 1 << 64
        return v
    if typ == _B:
        return bool(v)
    raise ProtoError("unknown type %r" % (typ,))


def decode_message(b, schema):
    out = {}
    for num, wt, v in _fields(b):
        f = schema.get(num)
        if f is None:
            continue
        name, typ, repeated = f
        if isinstance(typ, tuple) and typ[0] == "map":
            k = val = None
            for n2, wt2, v2 in _fields(v):
                if n2 == 1:
                    k = v2.decode("utf-8")
                elif n2 == 2:
                    val = decode_message(v2, typ[1]) if isinstance(typ[1], dict) else _scalar(typ[1], wt2, v2)
            if typ[1] is EXTRA_VALUE:  # a bare list of strings in JSON
                val = (val or {}).get("items", [])
            out.setdefault(name, {})[k or ""] = val if val is not None else ""
            continue
        val = decode_message(v, typ) if isinstance(typ, dict) else _scalar(typ, wt, v)
        if repeated:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return out


def decode(body):
    """Returns the JSON object (dict with apiVersion and kind) of a k8s protobuf envelope. Raises ProtoError
    for a malformed body, or KeyError naming the kind when its schema is unknown."""
    if not body.startswith(MAGIC):
        raise ProtoError("missing the k8s protobuf magic number")
    tm, raw = {}, b""
    for num, wt, v in _fields(body[len(MAGIC):]):
        if num == 1:
            tm = decode_message(v, {1: ("apiVersion", _S, False), 2: ("kind", _S, False)})
        elif num == 2:
            raw = v
    av, kind = tm.get("apiVersion", ""), tm.get("kind", "")
    schema = SCHEMAS.get((av, kind))
    if schema is None:
        raise KeyError("%s %s" % (av, kind))
    obj = {"apiVersion": av, "kind": kind}
    obj.update(decode_message(raw, schema))
    md = obj.get("metadata")
    if isinstance(md, dict):
        md.pop("creationTimestamp", None)
    return obj
