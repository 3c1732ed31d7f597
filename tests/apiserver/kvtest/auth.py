"""Authentication (bearer tokens, client certs) and a tiny deny-list authorizer."""
import threading


class User:
    def __init__(self, name, groups):
        self.name = name
        self.groups = list(groups)

    @property
    def is_admin(self):
        return "system:masters" in self.groups

    def __repr__(self):
        return "User(%s,%s)" % (self.name, self.groups)


ANONYMOUS = User("system:anonymous", ["system:unauthenticated"])
PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")


class Authenticator:
    def __init__(self, verifier):
        self.tokens = {}
        self.lock = threading.Lock()
        self.verifier = verifier
        self.deny = []  # (user, verb, resource)

    def add_token(self, token, user, groups=()):
        with self.lock:
            self.tokens[token] = User(user, list(groups) + ["system:authenticated"])

    def remove_token(self, token):
        with self.lock:
            self.tokens.pop(token, None)

    def authenticate(self, auth_header, peer_der):
        """Returns a User, ANONYMOUS, or None (=401)."""
        if auth_header:
            parts = auth_header.split(" ", 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                with self.lock:
                    u = self.tokens.get(parts[1].strip())
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

    def set_deny(self, rules):
        out = []
        for r in rules:
            p = r.split(":")
            if len(p) < 3:
                raise ValueError("deny rule must be USER:VERB:RESOURCE")
            # user names may contain ':' (system:serviceaccount:ns:name)
            out.append((":".join(p[:-2]), p[-2], p[-1]))
        self.deny = out

    def allowed(self, user, verb, resource):
        if user is ANONYMOUS:
            return False
        for u, v, r in self.deny:
            if u in ("*", user.name) and v in ("*", verb) and r in ("*", resource, resource.split("/")[0]):
                return False
        return True
