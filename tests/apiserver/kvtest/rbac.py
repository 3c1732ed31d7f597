"""RBAC as kube-apiserver evaluates it (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac and
pkg/apis/rbac/v1/evaluation_helpers.go): ClusterRoleBindings first, then the RoleBindings of the request's
namespace; a request is allowed as soon as one rule of one bound role covers it. There is no deny.

The functions here work on plain JSON objects, so a test can evaluate a manifest offline with the same
code the server uses (see `Policy`)."""

RBAC_GROUP = "rbac.authorization.k8s.io"


class Attrs:
    """Authorization attributes of one request (k8s.io/apiserver/pkg/authorization/authorizer.Attributes)."""
    __slots__ = ("verb", "resource_request", "group", "version", "resource", "subresource", "namespace", "name",
                 "path")

    def __init__(self, verb, resource_request=True, group="", version="", resource="", subresource="",
                 namespace="", name="", path=""):
        self.verb, self.resource_request = verb, resource_request
        self.group, self.version, self.resource, self.subresource = group, version, resource, subresource
        self.namespace, self.name, self.path = namespace or "", name or "", path

    @classmethod
    def from_json(cls, d):
        return cls(d["verb"], d.get("resourceRequest", True), d.get("group", ""), d.get("version", ""),
                   d.get("resource", ""), d.get("subresource", ""), d.get("namespace", ""), d.get("name", ""),
                   d.get("path", ""))

    def to_json(self):
        if not self.resource_request:
            return {"resourceRequest": False, "verb": self.verb, "path": self.path}
        return {"resourceRequest": True, "verb": self.verb, "group": self.group, "version": self.version,
                "resource": self.resource, "subresource": self.subresource, "namespace": self.namespace,
                "name": self.name}

    def describe(self):
        if not self.resource_request:
            return "%s %s" % (self.verb, self.path)
        r = self.resource + ("/" + self.subresource if self.subresource else "")
        return "%s %s%s%s%s" % (self.verb, (self.group + "/") if self.group else "", r,
                                (" " + self.name) if self.name else "",
                                (" in " + self.namespace) if self.namespace else "")


# ------------------------------------------------------------------------------------------- rule matching
def _verb_matches(rule, verb):
    vs = rule.get("verbs") or []
    return "*" in vs or verb in vs


def _group_matches(rule, group):
    gs = rule.get("apiGroups") or []
    return "*" in gs or group in gs


def _resource_matches(rule, combined, sub):
    for r in rule.get("resources") or []:
        if r == "*" or r == combined:
            return True
        # "*/status" covers the status subresource of every resource
        if sub and r == "*/" + sub:
            return True
    return False


def _name_matches(rule, name):
    names = rule.get("resourceNames") or []
    return not names or name in names


def _url_matches(rule, path):
    for u in rule.get("nonResourceURLs") or []:
        if u == "*" or u == path:
            return True
        if u.endswith("*") and path.startswith(u[:-1]):
            return True
    return False


def rule_allows(rule, a):
    if a.resource_request:
        combined = a.resource + ("/" + a.subresource if a.subresource else "")
        return (_verb_matches(rule, a.verb) and _group_matches(rule, a.group) and
                _resource_matches(rule, combined, a.subresource) and _name_matches(rule, a.name))
    return _verb_matches(rule, a.verb) and _url_matches(rule, a.path)


# ------------------------------------------------------------------------------------------- subjects
SA_PREFIX = "system:serviceaccount:"


def subject_matches(subj, user, groups, binding_ns):
    kind = subj.get("kind")
    if kind == "User":
        return user == subj.get("name")
    if kind == "Group":
        return subj.get("name") in groups
    if kind == "ServiceAccount":
        ns = subj.get("namespace") or binding_ns  # rbac validation requires it; the evaluator defaults it
        return bool(ns) and user == SA_PREFIX + ns + ":" + (subj.get("name") or "")
    return False


def describe_subject(subj, binding_ns):
    if subj.get("kind") == "ServiceAccount":
        return 'ServiceAccount "%s/%s"' % (subj.get("name"), subj.get("namespace") or binding_ns)
    return '%s "%s"' % (subj.get("kind"), subj.get("name"))


# ------------------------------------------------------------------------------------------- bootstrap
def _cr(name, rules):
    return {"metadata": {"name": name}, "rules": rules}


def _crb(name, role, groups):
    return {"metadata": {"name": name}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups]}


# The part of kube-apiserver's bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy) that a
# client meets before anyone grants it anything. Built in: not stored, not listed.
BOOTSTRAP_CLUSTER_ROLES = {r["metadata"]["name"]: r for r in [
    _cr("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                          {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    _cr("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                  "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                              "verbs": ["get"]}]),
    _cr("system:basic-user", [
        {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
    _cr("system:public-info-viewer", [{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                                           "/version/"], "verbs": ["get"]}]),
]}
BOOTSTRAP_CLUSTER_ROLE_BINDINGS = [
    _crb("cluster-admin", "cluster-admin", ["system:masters"]),
    _crb("system:discovery", "system:discovery", ["system:authenticated"]),
    _crb("system:basic-user", "system:basic-user", ["system:authenticated"]),
    _crb("system:public-info-viewer", "system:public-info-viewer", ["system:authenticated",
                                                                     "system:unauthenticated"]),
]


# ------------------------------------------------------------------------------------------- evaluation
class Policy:
    """A set of RBAC objects (lists of JSON dicts) plus the bootstrap policy. `allows` returns
    (allowed, reason) with kube-apiserver's reason text for an allow; a denial has reason ""."""

    def __init__(self, roles=(), cluster_roles=(), role_bindings=(), cluster_role_bindings=(), bootstrap=True):
        self.roles = {((r.get("metadata") or {}).get("namespace", ""), (r.get("metadata") or {}).get("name")): r
                      for r in roles}
        self.cluster_roles = dict(BOOTSTRAP_CLUSTER_ROLES) if bootstrap else {}
        for r in cluster_roles:
            self.cluster_roles[(r.get("metadata") or {}).get("name")] = r
        self.role_bindings = list(role_bindings)
        self.cluster_role_bindings = (list(BOOTSTRAP_CLUSTER_ROLE_BINDINGS) if bootstrap else []) + \
            list(cluster_role_bindings)

    @classmethod
    def from_objects(cls, objs, bootstrap=True):
        """From a manifest's objects (any order, other kinds ignored)."""
        by = {"Role": [], "ClusterRole": [], "RoleBinding": [], "ClusterRoleBinding": []}
        for o in objs:
            if o and o.get("kind") in by:
                by[o["kind"]].append(o)
        return cls(by["Role"], by["ClusterRole"], by["RoleBinding"], by["ClusterRoleBinding"], bootstrap)

    def _role_rules(self, ref, binding_ns):
        if (ref or {}).get("kind") == "ClusterRole":
            r = self.cluster_roles.get(ref.get("name"))
        elif (ref or {}).get("kind") == "Role" and binding_ns:
            r = self.roles.get((binding_ns, ref.get("name")))
        else:
            r = None
        return (r or {}).get("rules") or []

    def _visit(self, a, user, groups):
        for b in self.cluster_role_bindings:
            yield b, "", "ClusterRoleBinding"
        if a.resource_request and a.namespace:
            for b in self.role_bindings:
                if (b.get("metadata") or {}).get("namespace") == a.namespace:
                    yield b, a.namespace, "RoleBinding"

    def allows(self, user, groups, a):
        for b, ns, bkind in self._visit(a, user, groups):
            subj = next((s for s in b.get("subjects") or [] if subject_matches(s, user, groups, ns)), None)
            if subj is None:
                continue
            ref = b.get("roleRef") or {}
            for rule in self._role_rules(ref, ns):
                if rule_allows(rule, a):
                    bname = (b.get("metadata") or {}).get("name")
                    if ns:
                        bname = "%s/%s" % (bname, ns)
                    return True, 'RBAC: allowed by %s "%s" of %s "%s" to %s' % (
                        bkind, bname, ref.get("kind"), ref.get("name"), describe_subject(subj, ns))
        return False, ""

    def rules_for(self, user, groups, namespace):
        """The rules that apply to the user in a namespace (SelfSubjectRulesReview)."""
        out = []
        for b, ns, _ in self._visit(Attrs("list", namespace=namespace), user, groups):
            if any(subject_matches(s, user, groups, ns) for s in b.get("subjects") or []):
                out.extend(self._role_rules(b.get("roleRef"), ns))
        return out
