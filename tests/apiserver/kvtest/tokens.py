"""ServiceAccount tokens minted by the TokenRequest API (serviceaccounts/<name>/token).

A token is a JWT with kube-apiserver's claims (iss, sub, aud, exp, iat, nbf, jti and the kubernetes.io
claim naming the namespace and the ServiceAccount's name and uid). It is signed with HS256 and a key kept in
the state dir (`sa-signing.key`), so tokens survive a restart; the real server signs with RS256/ES256.
A token authenticates while: the signature is good, it has not expired, one of its audiences is one of
the server's API audiences, its ServiceAccount still exists with the same uid, and it was not revoked
(admin API `revoke-token`; revocations are kept in `revoked-tokens`)."""
import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import uuid

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600


def _b64(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenIssuer:
    def __init__(self, state_dir, audiences=None):
        self.audiences = list(audiences or [ISSUER])
        self.lock = threading.Lock()
        key_path = os.path.join(state_dir, "sa-signing.key")
        if not os.path.exists(key_path):
            tmp = key_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, key_path)
        with open(key_path) as f:
            self.key = bytes.fromhex(f.read().strip())
        self.kid = hashlib.sha256(self.key).hexdigest()[:16]
        self.revoked_path = os.path.join(state_dir, "revoked-tokens")
        self.revoked = set()
        if os.path.exists(self.revoked_path):
            with open(self.revoked_path) as f:
                self.revoked = {ln.strip() for ln in f if ln.strip()}

    def mint(self, ns, sa_name, sa_uid, audiences, seconds, bound=None):
        now = int(time.time())
        claims = {"aud": list(audiences), "exp": now + seconds, "iat": now, "iss": ISSUER,
                  "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa_name, "uid": sa_uid}},
                  "nbf": now, "sub": "system:serviceaccount:%s:%s" % (ns, sa_name)}
        if bound:
            claims["kubernetes.io"][bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        head = _b64(json.dumps({"alg": "HS256", "kid": self.kid}, separators=(",", ":")).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self.key, (head + "." + body).encode(), hashlib.sha256).digest())
        return head + "." + body + "." + sig, claims

    def claims(self, token):
        """The claims of a well-signed token, else None (expiry and audience are not checked here)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        want = _b64(hmac.new(self.key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(want, parts[2]):
            return None
        try:
            return json.loads(_unb64(parts[1]))
        except ValueError:
            return None

    def verify(self, token, sa_lookup):
        """Returns (ns, name, uid, jti) of a valid token, else None. sa_lookup(ns, name) returns the
        ServiceAccount object or None."""
        c = self.claims(token)
        if c is None:
            return None
        now = time.time()
        if not (c.get("nbf", 0) - 60 <= now < c.get("exp", 0)):
            return None
        if not set(c.get("aud") or []) & set(self.audiences):
            return None
        with self.lock:
            if c.get("jti") in self.revoked:
                return None
        k = c.get("kubernetes.io") or {}
        ns, sa = k.get("namespace"), (k.get("serviceaccount") or {})
        obj = sa_lookup(ns, sa.get("name"))
        if obj is None or (obj.get("metadata") or {}).get("uid") != sa.get("uid"):
            return None
        return ns, sa.get("name"), sa.get("uid"), c.get("jti")

    def revoke(self, token=None, jti=None):
        """Revokes by token text or by jti; returns the jti."""
        if token is not None:
            c = self.claims(token)
            if c is None:
                raise ValueError("not a token this server issued")
            jti = c.get("jti")
        if not jti:
            raise ValueError("give token or jti")
        with self.lock:
            if jti not in self.revoked:
                self.revoked.add(jti)
                with open(self.revoked_path, "a") as f:
                    f.write(jti + "\n")
        return jti
