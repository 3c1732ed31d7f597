"""Command line entry point: certificates, tokens, kubeconfigs, state, listening, signals."""
import argparse
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time

from . import certs
from .audit import AuditLog
from .auth import Authenticator
from .rbac import RBAC_GROUP, Policy
from .resources import BY_KEY
from .tokens import TokenIssuer
from .faults import Faults, Stats
from .registry import Registry
from .server import KVHTTPServer
from .store import Store


def parse_args(argv):
    p = argparse.ArgumentParser(prog="kvtest-apiserver", description="Test Kubernetes API server (kvtest)")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--san", action="append", default=[], help="extra subjectAltName (IP or DNS) for server.crt")
    p.add_argument("--reset", action="store_true", help="start with empty state")
    p.add_argument("--token", action="append", default=[], help="TOKEN=USER[,GROUP...]")
    p.add_argument("--deny", action="append", default=[], help="USER:VERB:RESOURCE (403 for matching requests)")
    p.add_argument("--min-request-timeout", type=float, default=1800,
                   help="default watch timeout is random in [T, 2T] seconds")
    p.add_argument("--bookmark-interval", type=float, default=60)
    p.add_argument("--too-large-rv-wait", type=float, default=3.0,
                   help="seconds to wait for a future resourceVersion before 504")
    p.add_argument("--continue-ttl", type=float, default=300, help="age after which continue tokens are 410")
    p.add_argument("--history-size", type=int, default=10000, help="watch history events kept per kind")
    p.add_argument("--pod-kill-seconds", type=float, default=2.0,
                   help="graceful pod deletion finishes after min(grace, this)")
    p.add_argument("--idle-timeout", type=float, default=120, help="keep-alive idle / write timeout (s)")
    p.add_argument("--endpoints-warning", action="store_true", help="send the v1 Endpoints deprecation Warning")
    p.add_argument("--endpointslice-controller", action="store_true")
    p.add_argument("--no-tables", action="store_true", help="never answer as=Table")
    p.add_argument("--api-audiences", default="https://kubernetes.default.svc.cluster.local",
                   help="comma-separated audiences a ServiceAccount token must name one of")
    p.add_argument("--service-account-max-token-expiration", type=int, default=0,
                   help="seconds; longer TokenRequests are cut to this (0: no limit)")
    p.add_argument("--audit-log", help="append one audit.k8s.io/v1 Event per request to this file")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def _atomic_write(path, text, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _kubeconfig(url, ca, user_block):
    return ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: %s\n"
            "    server: %s\n  name: kvtest\ncontexts:\n- context:\n    cluster: kvtest\n    user: kvtest-admin\n"
            "  name: kvtest\ncurrent-context: kvtest\npreferences: {}\nusers:\n- name: kvtest-admin\n  user:\n%s"
            % (ca, url, user_block))


class App:
    pass


class PolicyCache:
    """The RBAC objects of the store as a Policy, rebuilt only when one of them changed."""

    def __init__(self, store):
        self.store = store
        self.kinds = [BY_KEY[RBAC_GROUP + "/" + p] for p in ("roles", "clusterroles", "rolebindings",
                                                            "clusterrolebindings")]
        self.key = None
        self.policy = None

    def __call__(self):
        st = self.store
        with st.lock:
            objs = [st.objs[r.key()] for r in self.kinds]
            key = tuple((len(d), max((o["metadata"].get("resourceVersion", "") for o in d.values()),
                                     key=lambda v: int(v or 0), default="")) for d in objs)
            if key != self.key or self.policy is None:
                self.policy = Policy(*[list(d.values()) for d in objs])
                self.key = key
            return self.policy


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    sd = os.path.abspath(a.state_dir)
    os.makedirs(sd, exist_ok=True)
    ready = os.path.join(sd, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    certs.ensure_certs(sd, a.san)

    tok_path = os.path.join(sd, "admin-token")
    if not os.path.exists(tok_path):
        _atomic_write(tok_path, secrets.token_hex(24) + "\n", 0o600)
    admin_token = open(tok_path).read().strip()

    app = App()
    app.state_dir = sd
    app.verbose = a.verbose
    app.min_request_timeout = a.min_request_timeout
    app.bookmark_interval = a.bookmark_interval
    app.too_large_wait = a.too_large_rv_wait
    app.continue_ttl = a.continue_ttl
    app.idle_timeout = a.idle_timeout
    app.endpoints_warning = a.endpoints_warning
    app.stopping = False
    app.verifier = certs.ClientCertVerifier(os.path.join(sd, "ca.crt"))
    app.issuer = TokenIssuer(sd, [x for x in a.api_audiences.split(",") if x])
    app.max_token_seconds = a.service_account_max_token_expiration
    app.auth = Authenticator(app.verifier, app.issuer)
    app.audit = AuditLog(a.audit_log) if a.audit_log else None
    app.auth.add_token(admin_token, "kvtest-admin", ["system:masters"])
    for t in a.token:
        if "=" not in t:
            sys.exit("--token must be TOKEN=USER[,GROUP...]")
        tok, who = t.split("=", 1)
        parts = who.split(",")
        app.auth.add_token(tok, parts[0], parts[1:])
    try:
        app.auth.set_deny(a.deny)
    except ValueError as e:
        sys.exit(str(e))
    app.faults = Faults()
    app.stats = Stats()
    state_path = os.path.join(sd, "state.json")
    if a.reset and os.path.exists(state_path):
        os.unlink(state_path)
    app.store = Store(state_path, history_size=a.history_size)
    try:
        app.store.load()
    except (ValueError, OSError, KeyError) as e:
        sys.stderr.write("kvtest-apiserver: ignoring unreadable state (%s)\n" % e)
        app.store = Store(state_path, history_size=a.history_size)
    app.registry = Registry(app.store, a.pod_kill_seconds)
    sa_res = BY_KEY["/serviceaccounts"]
    app.auth.sa_lookup = lambda ns, name: app.store.get(sa_res, ns, name)
    app.auth.policy_source = PolicyCache(app.store)
    app.registry.ensure_default_namespaces()
    app.store.reset_windows()
    app.tables = None
    if not a.no_tables:
        try:
            from .tables import Tables
            app.tables = Tables()
        except ImportError:
            app.tables = None
    if a.endpointslice_controller:
        from .controller import EndpointSliceController
        app.controller = EndpointSliceController(app.registry, app.store)
        app.controller.start()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(sd, "server.crt"), os.path.join(sd, "server.key"))
    ctx.load_verify_locations(os.path.join(sd, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    if not certs.request_cert_without_verify(ctx):
        sys.stderr.write("kvtest-apiserver: untrusted client certs will fail the TLS handshake instead of 401\n")
    try:
        ctx.set_alpn_protocols(["http/1.1"])
    except (NotImplementedError, ssl.SSLError):
        pass
    app.ssl_ctx = ctx

    family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    srv = KVHTTPServer(app, (a.bind, a.port), family)
    port = srv.server_address[1]
    host = "[%s]" % a.bind if ":" in a.bind else a.bind
    url = "https://%s:%d" % (host, port)
    app.server_addr = "%s:%d" % (host, port)
    app.drop_all = srv.drop_all
    app.store.start_saver()

    ca = os.path.join(sd, "ca.crt")
    _atomic_write(os.path.join(sd, "kubeconfig"), _kubeconfig(url, ca, "    token: %s\n" % admin_token), 0o600)
    _atomic_write(os.path.join(sd, "kubeconfig-cert"), _kubeconfig(
        url, ca, "    client-certificate: %s\n    client-key: %s\n" % (os.path.join(sd, "client.crt"),
                                                                       os.path.join(sd, "client.key"))), 0o600)

    def stop(signum, frame):
        if app.stopping:
            return
        app.stopping = True
        try:
            srv.socket.close()
        except OSError:
            pass
        srv.drop_all()
        app.store.stop()
        try:
            os.unlink(ready)
        except OSError:
            pass
        sys.stdout.flush()
        os._exit(0)

    def clear_faults(signum, frame):
        app.faults.clear()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, clear_faults)
    signal.signal(signal.SIGINT, stop)
    _atomic_write(ready, url + "\n")
    sys.stdout.write("kvtest-apiserver listening on %s (state %s)\n" % (url, sd))
    sys.stdout.flush()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
