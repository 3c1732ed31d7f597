"""Authentication (static bearer tokens, ServiceAccount tokens, client certs), impersonation, and the
authorizer: the --deny list, then RBAC (rbac.py) over the stored Role/ClusterRole/(Cluster)RoleBinding
objects plus the built-in bootstrap policy.

Who RBAC applies to: users of ServiceAccount tokens minted by TokenRequest, impersonated users, and
anonymous requests. Static tokens (the admin token, --token, the `tokens` knob) and client certificates
keep full access, as if bound to cluster-admin, so tests written before RBAC keep working; their
access reviews still report RBAC's answer first."""
import threading

from .rbac import SA_PREFIX, Attrs, Policy


class User:
    def __init__(self, name, groups, rbac=False, uid="", extra=None):
        self.name = name
        self.groups = list(groups)
        self.rbac = rbac  # True: only what RBAC grants
        self.uid = uid
        self.extra = extra or {}

    @property
    def is_admin(self):
        return "system:masters" in self.groups

    def user_info(self):
        d = {"username": self.name}
        if self.uid:
            d["uid"] = self.uid
        d["groups"] = list(self.groups)
        if self.extra:
            d["extra"] = {k: list(v) for k, v in self.extra.items()}
        return d

    def __repr__(self):
        return "User(%s,%s)" % (self.name, self.groups)


ANONYMOUS = User("system:anonymous", ["system:unauthenticated"], rbac=True)


def sa_groups(username):
    """The groups kube-apiserver gives a ServiceAccount user."""
    ns = username[len(SA_PREFIX):].split(":", 1)[0]
    return ["system:serviceaccounts", "system:serviceaccounts:" + ns]


class Authenticator:
    def __init__(self, verifier, issuer=None, sa_lookup=None):
        self.tokens = {}
        self.lock = threading.Lock()
        self.verifier = verifier
        self.issuer = issuer          # tokens.TokenIssuer for ServiceAccount tokens
        self.sa_lookup = sa_lookup    # (ns, name) -> ServiceAccount object or None
        self.deny = []  # (user, verb, resource)
        self.policy_source = None     # () -> (generation, Policy)

    def add_token(self, token, user, groups=()):
        with self.lock:
            self.tokens[token] = User(user, list(groups) + ["system:authenticated"])

    def remove_token(self, token):
        with self.lock:
            found = self.tokens.pop(token, None) is not None
        if not found and self.issuer is not None and self.issuer.claims(token) is not None:
            self.issuer.revoke(token=token)

    def token_user(self, token):
        with self.lock:
            u = self.tokens.get(token)
        if u is not None:
            return u
        if self.issuer is not None and token.count(".") == 2:
            r = self.issuer.verify(token, self.sa_lookup)
            if r is not None:
                ns, name, uid, jti = r
                user = SA_PREFIX + "%s:%s" % (ns, name)
                return User(user, sa_groups(user) + ["system:authenticated"], rbac=True, uid=uid,
                            extra={"authentication.kubernetes.io/credential-id": ["JTI=%s" % jti]})
        return None

    def authenticate(self, auth_header, peer_der):
        """Returns a User, ANONYMOUS, or None (=401)."""
        if auth_header:
            parts = auth_header.split(" ", 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                u = self.token_user(parts[1].strip())
                if u is not None:
                    return u
            return None
        if peer_der:
            r = self.verifier.identify(peer_der)
            if r is None:
                return None
            cn, orgs = r
            return User(cn, orgs + ["system:authenticated"])
        return ANONYMOUS

    @staticmethod
    def impersonated(name, groups, uid, extra):
        """The user an Impersonate-* request acts as (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go)."""
        groups = list(groups)
        if name.startswith(SA_PREFIX) and not groups:
            groups = sa_groups(name)
        if name != "system:anonymous" and "system:authenticated" not in groups:
            groups.append("system:authenticated")
        elif name == "system:anonymous" and "system:unauthenticated" not in groups:
            groups.append("system:unauthenticated")
        return User(name, groups, rbac=True, uid=uid or "", extra=extra)

    def set_deny(self, rules):
        out = []
        for r in rules:
            p = r.split(":")
            if len(p) < 3:
                raise ValueError("deny rule must be USER:VERB:RESOURCE")
            # user names may contain ':' (system:serviceaccount:ns:name)
            out.append((":".join(p[:-2]), p[-2], p[-1]))
        self.deny = out

    def denied_by_list(self, user, verb, resource):
        for u, v, r in self.deny:
            if u in ("*", user.name) and v in ("*", verb) and r in ("*", resource, resource.split("/")[0]):
                return True
        return False

    def authorize(self, user, a, want_reason=False):
        """(allowed, reason) for Attrs a. A user outside RBAC is allowed at once, without RBAC's reason,
        unless the caller (an access review) wants it."""
        if a.resource_request:
            res = a.resource + ("/" + a.subresource if a.subresource else "")
            if self.denied_by_list(user, a.verb, res):
                return False, ""
        if not user.rbac and not want_reason:
            return True, ""
        if self.policy_source is not None:
            ok, reason = self.policy_source().allows(user.name, user.groups, a)
            if ok:
                return ok, reason
        if user.rbac:
            return False, ""
        return True, ""

    def rules_for(self, user, namespace):
        if self.policy_source is None:
            return []
        return self.policy_source().rules_for(user.name, user.groups, namespace)


__all__ = ["ANONYMOUS", "Attrs", "Authenticator", "Policy", "User"]
