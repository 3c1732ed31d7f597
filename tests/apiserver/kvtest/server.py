"""HTTP/1.1 + TLS front end: routing, authn/z, list/watch streaming, fault injection, admin API."""
import base64
import gzip
import http.server
import json
import random
import re
import select
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
import types
import urllib.parse
import uuid

from . import discovery, errors
from .auth import ANONYMOUS, Authenticator
from .rbac import SA_PREFIX, Attrs
from .resources import BY_GV, BY_KEY, bookmark_object, fields_of, lookup
from .selectors import parse_field_selector, parse_label_selector
from .store import TooOld, Watcher, encode_event, with_header
from .util import dumpb, http_date

GZIP_MIN = 128 * 1024
FLOWSCHEMA_UID = str(uuid.uuid4())
PRIORITY_UID = str(uuid.uuid4())
PLAIN_429 = "Too many requests, please try again later.\n"
PROTOBUF = "application/vnd.kubernetes.protobuf"
# what an impersonation check names in its 403 (they are not served resources)
_PSEUDO = {n: types.SimpleNamespace(plural=n, group=g) for n, g in
           (("users", ""), ("groups", ""), ("uids", "authentication.k8s.io"),
            ("userextras", "authentication.k8s.io"))}


def _micro_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def _bool(q, name):
    if name not in q:
        return False
    return q[name].lower() not in ("0", "false")


class Conn:
    """A tracked client connection."""
    __slots__ = ("sock", "watcher", "peer")

    def __init__(self, sock, peer):
        self.sock, self.watcher, self.peer = sock, None, peer

    def cut(self):
        w = self.watcher
        if w is not None:
            w.finish(abort=True)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass


class KVHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    block_on_close = False

    def __init__(self, app, addr, family):
        self.address_family = family
        self.app = app
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        socketserver.TCPServer.server_bind(self)
        self.server_name = "kvtest"
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address):
        app = self.app
        if app.stopping or app.faults.offline:
            try:
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            return
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = Conn(request, client_address)
        with self.conns_lock:
            self.conns.add(conn)
        try:
            try:
                request.settimeout(10)
                tls = app.ssl_ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                tls.do_handshake()
            except (OSError, ssl.SSLError, ValueError):
                return
            conn.sock = tls
            try:
                Handler(tls, client_address, self, conn)
            except (OSError, ssl.SSLError, ValueError):
                pass
            finally:
                try:
                    tls.close()
                except OSError:
                    pass
        finally:
            with self.conns_lock:
                self.conns.discard(conn)

    def handle_error(self, request, client_address):
        if self.app.verbose:
            traceback.print_exc()

    def drop_all(self):
        with self.conns_lock:
            cs = list(self.conns)
        for c in cs:
            c.cut()
        return len(cs)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kvtest"
    sys_version = ""

    def __init__(self, request, client_address, server, conn):
        self.conn = conn
        self.app = server.app
        super().__init__(request, client_address, server)

    def setup(self):
        super().setup()
        self.request.settimeout(self.app.idle_timeout)

    def log_message(self, fmt, *args):
        if self.app.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # ------------------------------------------------------------------ output helpers
    def _base_headers(self):
        self.send_response_only(self._code)
        self.send_header("Audit-Id", self.audit_id)
        self.send_header("Cache-Control", "no-cache, private")

    def send_raw(self, code, body, ctype="application/json", headers=None, pf=True):
        self._code = code
        self.resp_code = code
        if ctype == "application/json" and len(body) > GZIP_MIN and "gzip" in self.headers.get(
                "Accept-Encoding", "") and not self.is_watch:
            body = gzip.compress(body, 1)
            headers = dict(headers or {})
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        self._base_headers()
        self.send_header("Content-Type", ctype)
        if ctype.startswith("text/plain"):
            self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if pf:
            self.send_header("X-Kubernetes-Pf-Flowschema-Uid", FLOWSCHEMA_UID)
            self.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", PRIORITY_UID)
        self.send_header("Date", http_date())
        self.send_header("Content-Length", str(len(body)))
        # one write for headers and body (one TLS record, no Nagle/delayed-ACK stall)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        data = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(data)

    def send_json(self, code, obj, headers=None):
        self.send_raw(code, dumpb(obj), headers=headers)

    def send_error_obj(self, e):
        h = {}
        if e.retry_after:
            h["Retry-After"] = str(e.retry_after)
        if e.plain is not None:
            self.send_raw(e.code, e.body(), "text/plain; charset=utf-8", h)
        else:
            self.send_raw(e.code, e.body(), headers=h)

    def not_found_plain(self):
        self.send_raw(404, b"404 page not found\n", "text/plain; charset=utf-8")

    # ------------------------------------------------------------------ request entry
    def dispatch(self):
        self.audit_id = str(uuid.uuid4())
        self.is_watch = False
        self.resp_code = 0
        self.verb = "-"
        self.res_name = "-"
        self.user = None
        self.attrs = None
        self.audited = False
        self.impersonator = None
        self.received = _micro_now()
        u = urllib.parse.urlsplit(self.path)
        self.upath = urllib.parse.unquote(u.path)
        self.q = {}
        for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True):
            self.q.setdefault(k, v)
        try:
            self.body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            self._dispatch()
        except errors.ApiError as e:
            self.send_error_obj(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # never let the server die
            if self.app.verbose:
                traceback.print_exc()
            try:
                self.send_error_obj(errors.internal(repr(e)))
            except OSError:
                self.close_connection = True
        finally:
            if not self.upath.startswith("/_kvtest/"):
                self.app.stats.record(self.verb, self.res_name, self.headers.get("User-Agent", ""),
                                      self.user.name if self.user else "", self.resp_code)
                if self.app.audit is not None and not self.audited:
                    self.app.audit.log(self, "ResponseComplete")

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = []
            while True:
                line = self.rfile.readline(65537)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self.rfile.read(n))
                self.rfile.readline(65537)
            return b"".join(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self):
        app = self.app
        path = self.upath
        der = None
        try:
            der = self.connection.getpeercert(binary_form=True)
        except (ValueError, AttributeError):
            der = None
        user = app.auth.authenticate(self.headers.get("Authorization"), der)
        if user is None:
            self.verb = "unauthorized"
            raise errors.unauthorized()
        self.user = user
        if path.startswith("/_kvtest/") and path.rstrip("/") != "/_kvtest/whoami":
            if user is ANONYMOUS:
                raise errors.forbidden(user.name, self.command.lower(), path=path)
            if not user.is_admin:
                raise errors.forbidden(user.name, self.command.lower(), path=path)
            return self.admin(path[len("/_kvtest/"):])
        if path == "/_kvtest/whoami" or path == "/_kvtest/whoami/":
            return self.send_json(200, {"username": user.name, "groups": user.groups})
        user = self.user = self._impersonate(user)
        route = self.route(path)
        if route is None:
            self.verb = self.command.lower()
            self.attrs = Attrs(self.verb, False, path=path)
            if not app.auth.authorize(user, self.attrs)[0]:
                raise errors.forbidden(user.name, self.verb, path=path)
            self._faults(path)
            return self.nonresource(path)
        res, ns, name, sub, watch_prefix = route
        verb = self._verb(name, watch_prefix)
        self.verb, self.res_name = verb, res.plural + ("/" + sub if sub else "")
        # list and watch of one object by field selector are authorized for that name, as RequestInfo does
        aname = name or (self._selector_name() if verb in ("list", "watch") else None)
        self.attrs = Attrs(verb, True, res.group, res.version, res.plural, sub or "", ns or "", aname or "")
        if not app.auth.authorize(user, self.attrs)[0]:
            raise errors.forbidden(user.name, verb, res, aname, ns, sub)
        self._faults(path)
        return self.resource(res, ns, name, sub, verb)

    def _selector_name(self):
        fs = self.q.get("fieldSelector") or ""
        for term in fs.split(","):
            for op in ("==", "="):
                k, sep, v = term.partition(op)
                if sep and k.strip() == "metadata.name" and not k.endswith("!"):
                    return v.strip()
        return None

    def _impersonate(self, user):
        """Impersonate-User/-Group/-Uid/-Extra-*: each needs the `impersonate` verb on what it names."""
        h = self.headers
        name = h.get("Impersonate-User")
        groups = h.get_all("Impersonate-Group") or []
        uid = h.get("Impersonate-Uid")
        extra = {}
        for k, v in h.items():
            if k.lower().startswith("impersonate-extra-"):
                key = urllib.parse.unquote(k[len("impersonate-extra-"):]).lower()
                extra.setdefault(key, []).extend(x.strip() for x in v.split(","))
        if not name:
            if groups or uid or extra:
                raise errors.internal("requested %s without impersonating a user" % (groups or uid or extra))
            return user
        checks = []
        if name.startswith(SA_PREFIX) and name.count(":") == 3:
            sa_ns, sa_name = name[len(SA_PREFIX):].split(":", 1)
            checks.append((Attrs("impersonate", True, "", "v1", "serviceaccounts", "", sa_ns, sa_name),
                           BY_KEY["/serviceaccounts"], sa_name, sa_ns, None))
        else:
            checks.append((Attrs("impersonate", True, "", "", "users", name=name), _PSEUDO["users"], name, None,
                           None))
        for g in groups:
            checks.append((Attrs("impersonate", True, "", "", "groups", name=g), _PSEUDO["groups"], g, None, None))
        if uid:
            checks.append((Attrs("impersonate", True, "authentication.k8s.io", "", "uids", name=uid),
                           _PSEUDO["uids"], uid, None, None))
        for k, vs in extra.items():
            for v in vs:
                checks.append((Attrs("impersonate", True, "authentication.k8s.io", "", "userextras", k, name=v),
                               _PSEUDO["userextras"], v, None, k))
        for a, res, n, ns, sub in checks:
            if not self.app.auth.authorize(user, a)[0]:
                self.verb = "impersonate"
                raise errors.forbidden(user.name, "impersonate", res, n, ns, sub)
        self.impersonator = user
        return Authenticator.impersonated(name, groups, uid, extra)

    def _faults(self, path):
        f = self.app.faults
        full = path + ("?" + urllib.parse.urlsplit(self.path).query if "?" in self.path else "")
        d = f.take_stall(self.command, full)
        if d:
            time.sleep(d)
        spec = f.take_fail(self.command, full)
        if spec:
            code = int(spec.get("code", 500))
            ra = spec.get("retry_after")
            if code == 429 and spec.get("plain"):
                raise errors.ApiError(429, "", plain=PLAIN_429, retry_after=ra if ra is not None else 1)
            msg = spec.get("message") or {429: "storage is (re)initializing",
                                          500: "Internal error occurred: kvtest injected failure",
                                          503: "the request has been made before all known HTTP paths have been "
                                               "installed, please try again",
                                          504: "Timeout: request did not complete within the allowed duration"}[code]
            det = {}
            if code == 500:
                det["causes"] = [{"message": "kvtest injected failure"}]
            if ra:
                det["retryAfterSeconds"] = int(ra)
            raise errors.ApiError(code, msg, details=det or None, retry_after=ra)

    def _verb(self, name, watch_prefix):
        m = self.command
        if m in ("GET", "HEAD"):
            if watch_prefix or _bool(self.q, "watch"):
                return "watch"
            return "get" if name else "list"
        if m == "POST":
            return "create"
        if m == "PUT":
            return "update"
        if m == "PATCH":
            return "patch"
        if m == "DELETE":
            return "delete" if name else "deletecollection"
        return m.lower()

    def route(self, path):
        """Returns (res, ns, name, sub, watch_prefix) or None for non-resource paths. Raises 404."""
        parts = [p for p in path.split("/") if p != ""]
        if not parts:
            return None
        if parts[0] == "api":
            if len(parts) < 3:
                return None
            if parts[1] != "v1":
                return None
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis":
            if len(parts) < 4:
                return None
            group, version, rest = parts[1], parts[2], parts[3:]
            if (group, version) not in BY_GV:
                return None
        else:
            return None
        served = BY_GV.get((group, version), {})
        watch_prefix = False
        if rest and rest[0] == "watch":
            watch_prefix = True
            rest = rest[1:]
        if not rest:
            raise errors.ApiError(404, "", plain="404 page not found\n")
        ns = name = sub = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in served and served[rest[2]].namespaced:
            ns, plural = rest[1], rest[2]
            tail = rest[3:]
        else:
            plural = rest[0]
            tail = rest[1:]
        res = served.get(plural)
        if res is None:
            raise errors.ApiError(404, "", plain="404 page not found\n")
        if len(tail) > 2:
            raise errors.ApiError(404, "", plain="404 page not found\n")
        if tail:
            name = tail[0]
        if len(tail) == 2:
            sub = tail[1]
            if not ((sub == "status" and res.status) or sub in res.subresources):
                raise errors.ApiError(404, "", plain="404 page not found\n")
        if res.namespaced and ns is None and name is not None:
            raise errors.ApiError(404, "", plain="404 page not found\n")
        return res, ns, name, sub, watch_prefix

    # ------------------------------------------------------------------ non-resource
    def nonresource(self, path):
        app = self.app
        if self.command not in ("GET", "HEAD"):
            return self.not_found_plain()
        if path == "/version" or path == "/version/":
            return self.send_json(200, discovery.VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return self.send_raw(200, b"ok", "text/plain; charset=utf-8")
        # discovery answers with or without a trailing slash, as go-restful routes them
        dpath = path.rstrip("/") if path.startswith(("/api", "/apis")) else path
        if dpath == "/api":
            return self.send_json(200, discovery.api_versions(app.server_addr))
        if dpath == "/api/v1":
            return self.send_json(200, discovery.resource_list("", "v1"))
        if dpath == "/apis":
            return self.send_json(200, discovery.api_group_list())
        if path == "/openapi/v3":
            return self.send_json(200, discovery.openapi_v3_index())
        if path.startswith("/openapi/v3/"):
            d = discovery.openapi_v3_doc(path[len("/openapi/v3/"):])
            if d:
                return self.send_json(200, d)
            return self.not_found_plain()
        parts = [p for p in dpath.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis":
            d = discovery.api_group_doc(parts[1])
            if d:
                return self.send_json(200, d)
        if len(parts) == 3 and parts[0] == "apis":
            d = discovery.resource_list(parts[1], parts[2])
            if d:
                return self.send_json(200, d)
        return self.not_found_plain()

    # ------------------------------------------------------------------ resources
    def _json_body(self):
        return self.body

    def resource(self, res, ns, name, sub, verb):
        app = self.app
        reg = app.registry
        dry = self.q.get("dryRun") == "All"
        if res.virtual or sub in res.subresources:
            if verb != "create":
                raise errors.method_not_allowed(verb)
            from . import reviews
            return reviews.handle(self, res, ns, name, sub)
        if verb == "watch":
            return self.watch(res, ns, name)
        if verb == "list":
            return self.list(res, ns)
        if verb == "get":
            o = app.store.get(res, ns, name)
            if o is None:
                raise errors.not_found(res, name)
            return self.send_obj(200, res, with_header(res, o))
        if verb in ("create", "update"):
            ct = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
            if ct in ("application/yaml", "application/x-yaml", "text/yaml"):
                from .patch import parse_apply_body
                self.body = parse_apply_body(self.body)
            elif ct == PROTOBUF:
                self.body = self.body_object()
            elif ct not in ("application/json", "*/*", ""):
                raise errors.ApiError(415, "the body of the request was in an unknown format - accepted media "
                                      "types include: application/json, application/yaml", "UnsupportedMediaType")
        if verb == "create":
            if name:
                raise errors.method_not_allowed("create")
            if res.namespaced and not ns:
                raise errors.method_not_allowed("create")
            code, o = reg.create(res, ns or "", self.body, dry)
            return self.send_obj(code, res, o)
        if verb == "update":
            code, o = reg.update(res, ns or "", name, self.body, sub, dry)
            return self.send_obj(code, res, o)
        if verb == "patch":
            code, o = reg.patch(res, ns or "", name, self.headers.get("Content-Type"), self.body, sub,
                                self.q.get("fieldManager"), _bool(self.q, "force"), dry)
            return self.send_obj(code, res, o)
        if verb == "delete":
            opts = self._delete_opts()
            code, o = reg.delete(res, ns or "", name, opts, dry)
            return self.send_obj(code, res, o)
        if verb == "deletecollection":
            if res.namespaced and not ns:
                raise errors.method_not_allowed(verb)
            lsel = parse_label_selector(self.q.get("labelSelector"))
            fsel = parse_field_selector(self.q.get("fieldSelector"), res.field_labels)
            code, o = reg.delete_collection(res, ns or "", lsel, fsel, self._delete_opts(), dry)
            return self.send_json(code, o)
        raise errors.method_not_allowed(verb)

    def body_object(self):
        """The request body as a JSON object, whatever the Content-Type (JSON, YAML or protobuf)."""
        ct = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        try:
            if ct == PROTOBUF:
                from . import proto
                return proto.decode(self.body)
            if ct in ("application/yaml", "application/x-yaml", "text/yaml"):
                from .patch import parse_apply_body
                return parse_apply_body(self.body)
            return json.loads(self.body.decode("utf-8") or "null")
        except KeyError as e:
            raise errors.ApiError(415, "the body of the request was in an unknown format - accepted media types "
                                  "include: application/json, application/yaml (protobuf: %s is not "
                                  "understood by kvtest)" % e.args[0], "UnsupportedMediaType")
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.bad_request("the body of the request could not be decoded: %s" % e)

    def send_obj(self, code, res, obj):
        hdrs = None
        if res.plural == "endpoints" and not res.group and self.app.endpoints_warning:
            hdrs = {"Warning": '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 '
                               'EndpointSlice"'}
        if obj.get("kind") == res.kind and self._wants_table() and self.command in ("GET", "HEAD"):
            obj = self.app.tables.to_table(res, [obj], obj["metadata"].get("resourceVersion", ""), None,
                                           self.q.get("includeObject", "Metadata"))
        return self.send_json(code, obj, hdrs)

    def _wants_table(self):
        a = self.headers.get("Accept", "")
        return "as=Table" in a and self.app.tables is not None

    def _delete_opts(self):
        opts = {}
        if self.body and self.body.strip():
            try:
                b = json.loads(self.body.decode())
                if isinstance(b, dict):
                    opts = b
            except ValueError:
                raise errors.bad_request("invalid DeleteOptions body")
        if "gracePeriodSeconds" in self.q:
            try:
                opts["gracePeriodSeconds"] = int(self.q["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("invalid gracePeriodSeconds")
        return opts

    def _parse_rv(self, s):
        if s is None or s == "":
            return None
        try:
            v = int(s)
            if v < 0:
                raise ValueError
            return v
        except ValueError:
            raise errors.bad_request('resourceVersion: Invalid value: "%s": strconv.ParseUint: parsing "%s": '
                                     'invalid syntax' % (s, s))

    def _wait_rv(self, rv):
        st = self.app.store
        if rv and rv > st.rv:
            if not st.wait_for_rv(rv, self.app.too_large_wait):
                raise errors.too_large_rv(rv, st.rv)

    # ---------------------------------------------------------------- list
    @staticmethod
    def _key_str(res, key):
        return ("%s/%s" % key if res.namespaced else key[1]) + "\x00"

    def list(self, res, ns):
        app = self.app
        q = self.q
        rvs = q.get("resourceVersion")
        match = q.get("resourceVersionMatch")
        cont = q.get("continue", "")
        if match:
            if not rvs:
                raise errors.ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                                      'resourceVersionMatch is forbidden unless resourceVersion is provided',
                                      "Invalid", {"group": "meta.k8s.io", "kind": "ListOptions", "causes": [
                                          {"reason": "FieldValueForbidden", "message": "Forbidden: "
                                           "resourceVersionMatch is forbidden unless resourceVersion is provided",
                                           "field": "resourceVersionMatch"}]})
            if cont:
                raise errors.ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                                      'resourceVersionMatch is forbidden when continue is provided', "Invalid",
                                      {"group": "meta.k8s.io", "kind": "ListOptions", "causes": [
                                          {"reason": "FieldValueForbidden", "message": "Forbidden: "
                                           "resourceVersionMatch is forbidden when continue is provided",
                                           "field": "resourceVersionMatch"}]})
            if match not in ("Exact", "NotOlderThan"):
                raise errors.ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: '
                                      'Unsupported value: "%s": supported values: "Exact", "NotOlderThan"' % match,
                                      "Invalid")
        if cont and rvs and rvs != "0":
            raise errors.bad_request("specifying resource version is not allowed when using continue")
        rv = self._parse_rv(rvs)
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"), res.field_labels)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise errors.bad_request("invalid limit")
        if match == "Exact" and rv == 0:
            raise errors.ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                                  'resourceVersionMatch "exact" is forbidden for resourceVersion "0"', "Invalid")
        self._wait_rv(rv)
        st = app.store
        start = None
        if cont:
            try:
                pad = "=" * (-len(cont) % 4)
                tok = json.loads(base64.urlsafe_b64decode(cont + pad))
                trv = int(tok["rv"])
                start = tok["start"]
                born = float(tok.get("kvt", time.time()))
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                         "(version meta.k8s.io/v1)")
            if trv == -1:
                with st.lock:
                    snap = dict(st.objs[res.key()])
                    list_rv = st.rv
            else:
                snap = None
                if time.time() - born <= app.continue_ttl:
                    snap = st.snapshot_at(res, trv)
                if snap is None:
                    newtok = self._token(-1, start)
                    raise errors.continue_expired(newtok)
                list_rv = trv
        elif match == "Exact":
            snap = st.snapshot_at(res, rv)
            if snap is None:
                with st.lock:
                    oldest = max(st.window[res.key()], st.compacted_rv)
                raise errors.ApiError(410, "too old resource version: %d (%d)" % (rv, oldest), "Expired")
            list_rv = rv
        else:
            with st.lock:
                snap = dict(st.objs[res.key()])
                list_rv = st.rv
        keys = sorted(snap)
        if ns:
            keys = [k for k in keys if k[0] == ns]
        if start is not None:
            keys = [k for k in keys if self._key_str(res, k) > start]
        filtered = not lsel.empty() or not fsel.empty()
        items, more, last = [], 0, None
        use_limit = limit > 0 and not (rvs == "0" and not cont)
        for i, k in enumerate(keys):
            o = snap[k]
            md = o["metadata"]
            if filtered:
                if not lsel.matches(md.get("labels")) or not fsel.matches(fields_of(res, o)):
                    continue
            if use_limit and len(items) >= limit:
                more = len(keys) - i
                break
            items.append(o)
            last = k
        meta = {"resourceVersion": str(list_rv)}
        if more:
            meta["continue"] = self._token(list_rv, self._key_str(res, last))
            if not filtered:
                meta["remainingItemCount"] = more
        if self._wants_table():
            return self.send_json(200, app.tables.to_table(res, items, str(list_rv), meta.get("continue"),
                                                           self.q.get("includeObject", "Metadata")))
        body = {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}
        hdrs = None
        if res.plural == "endpoints" and not res.group and app.endpoints_warning:
            hdrs = {"Warning": '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 '
                               'EndpointSlice"'}
        return self.send_json(200, body, hdrs)

    def _token(self, rv, start):
        d = {"v": "meta.k8s.io/v1", "rv": rv, "start": start, "kvt": round(time.time(), 3)}
        return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).decode().rstrip("=")

    # ---------------------------------------------------------------- watch
    def watch(self, res, ns, name):
        app = self.app
        q = self.q
        rv = self._parse_rv(q.get("resourceVersion"))
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"), res.field_labels)
        if name:
            fsel.reqs.append(("metadata.name", "=", name))
        ts = q.get("timeoutSeconds")
        timeout = None
        if ts not in (None, ""):
            try:
                timeout = int(ts)
            except ValueError:
                raise errors.bad_request('timeoutSeconds: Invalid value: "%s"' % ts)
        if not timeout or timeout <= 0:
            timeout = app.min_request_timeout * (1 + random.random())
        bookmarks = _bool(q, "allowWatchBookmarks")
        initial_events = _bool(q, "sendInitialEvents")
        if initial_events and (q.get("resourceVersionMatch") != "NotOlderThan"):
            raise errors.ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                                  'sendInitialEvents requires setting resourceVersionMatch to NotOlderThan',
                                  "Invalid")
        self._wait_rv(rv)
        self.is_watch = True
        fault = app.faults.take_watch_fault(self.upath + "?" + urllib.parse.urlsplit(self.path).query)
        w = Watcher(res, ns, lsel, fsel, self.user.name if self.user else "")
        if self._wants_table():
            tables, include = app.tables, self.q.get("includeObject", "Metadata")

            def transform(typ, obj):
                return dumpb({"type": typ, "object": tables.to_table(
                    res, [obj], obj["metadata"].get("resourceVersion", ""), None, include)}) + b"\n"
            w.transform = transform
        error_event = None
        try:
            app.store.start_watch(w, 0 if initial_events else rv)
        except TooOld as e:
            error_event = dumpb({"type": "ERROR", "object": errors.too_old_rv_status(e.want, e.oldest)}) + b"\n"
        if initial_events and error_event is None:
            with w.cond:
                bm = bookmark_object(res, app.store.rv)
                bm["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                w.q.append(dumpb({"type": "BOOKMARK", "object": bm}) + b"\n")
        self.conn.watcher = w
        try:
            self._code = 200
            self.resp_code = 200
            self._base_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Kubernetes-Pf-Flowschema-Uid", FLOWSCHEMA_UID)
            self.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", PRIORITY_UID)
            self.send_header("Date", http_date())
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            if app.audit is not None:
                app.audit.log(self, "ResponseStarted")
                self.audited = True
            if fault and fault.get("mode") == "close-after-headers":
                self.conn.cut()
                self.close_connection = True
                return
            if error_event is not None:
                self._chunk(error_event)
                self._chunk(b"")
                return
            self._stream(w, res, timeout, bookmarks, fault)
        finally:
            app.store.stop_watch(w)
            self.conn.watcher = None

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _write_events(self, data):
        if not data:
            return
        if self.app.faults.split_chunks and len(data) > 1:
            i = 0
            while i < len(data):
                n = random.randint(1, max(2, min(len(data) - i, 600)))
                self._chunk(data[i:i + n])
                i += n
                if random.random() < 0.3:
                    time.sleep(0.001)
        else:
            self._chunk(data)

    def _client_gone(self):
        try:
            p = select.poll()  # poll, not select: fds may exceed FD_SETSIZE under load
            p.register(self.connection.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
            # readable during a watch means EOF, a TLS close_notify or unexpected data: treat as gone
            return bool(p.poll(0))
        except (OSError, ValueError):
            return True

    def _stream(self, w, res, timeout, bookmarks, fault):
        app = self.app
        st = app.store
        start = time.monotonic()
        deadline = start + timeout
        inf = float("inf")
        bm_next = start + app.bookmark_interval if bookmarks else inf
        pre_deadline = deadline - 2 if bookmarks and timeout > 2.5 else inf
        sent_events = 0
        while True:
            now = time.monotonic()
            with w.cond:
                if not w.q and not w.done:
                    wake = min(deadline, bm_next, pre_deadline, now + 0.5)
                    if wake > now:
                        w.cond.wait(wake - now)
                data = b"".join(w.q)
                n = len(w.q)
                w.q.clear()
                done, abort = w.done, w.abort
            if abort:
                self.conn.cut()
                self.close_connection = True
                return
            if data:
                if fault and fault.get("mode") == "truncate-chunk":
                    self.wfile.write(b"%x\r\n%s" % (len(data) + 10, data[:max(1, len(data) // 2)]))
                    self.conn.cut()
                    self.close_connection = True
                    return
                self._write_events(data)
                sent_events += n
                if fault and fault.get("mode") == "reset-after-events" and sent_events >= int(fault.get("events", 1)):
                    self.conn.cut()
                    self.close_connection = True
                    return
            if done:
                self._chunk(b"")
                return
            now = time.monotonic()
            if now >= deadline:
                self._chunk(b"")
                return
            if now >= bm_next or now >= pre_deadline:
                if now >= pre_deadline:
                    pre_deadline = inf
                if now >= bm_next:
                    bm_next = now + app.bookmark_interval
                with st.lock:
                    with w.cond:
                        data = b"".join(w.q)
                        w.q.clear()
                    rv = st.rv
                self._write_events(data + dumpb({"type": "BOOKMARK", "object": bookmark_object(res, rv)}) + b"\n")
                continue
            if not data and self._client_gone():
                self.close_connection = True
                return

    # ---------------------------------------------------------------- admin API
    def admin(self, op):
        app = self.app
        self.verb, self.res_name = "admin", op
        if self.command == "GET":
            if op == "stats":
                return self.send_json(200, app.stats.snapshot(app.store.all_watchers()))
            if op == "faults":
                return self.send_json(200, app.faults.describe())
            if op == "state":
                return self.send_json(200, {"rv": app.store.rv, "compacted_rv": app.store.compacted_rv})
            return self.not_found_plain()
        if self.command != "POST":
            return self.not_found_plain()
        try:
            spec = json.loads(self.body.decode() or "{}") if self.body.strip() else {}
        except ValueError:
            raise errors.bad_request("admin body must be JSON")
        if not isinstance(spec, dict):
            raise errors.bad_request("admin body must be a JSON object")
        out = {"ok": True}
        try:
            if op == "drop-connections":
                # reply first so the caller's own connection is not the one we cut mid-response
                self.send_json(200, {"ok": True})
                self.close_connection = True
                threading.Thread(target=app.drop_all, daemon=True).start()
                return
            elif op == "stall":
                app.faults.add_stall(spec)
            elif op == "fail":
                app.faults.add_fail(spec)
            elif op == "watch-fault":
                app.faults.add_watch_fault(spec)
            elif op == "clear-faults":
                app.faults.clear()
            elif op == "offline":
                on = bool(spec.get("on", True))
                app.faults.offline = on
                secs = spec.get("seconds")
                if on and secs:
                    def back_online(gen=app.faults):
                        gen.offline = False
                    t = threading.Timer(float(secs), back_online)
                    t.daemon = True
                    t.start()
                if on:
                    self.send_json(200, {"ok": True})
                    self.close_connection = True
                    threading.Thread(target=app.drop_all, daemon=True).start()
                    return
            elif op == "compact":
                out["compacted_rv"] = app.store.compact()
            elif op == "expire-watches":
                n = 0
                for w in app.store.all_watchers():
                    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": "The resourceVersion for the provided watch is too old.", "reason": "Expired",
                          "code": 410}
                    w.finish(final=dumpb({"type": "ERROR", "object": st}) + b"\n")
                    n += 1
                out["expired"] = n
            elif op == "split-chunks":
                app.faults.split_chunks = bool(spec.get("on", True))
            elif op == "reset":
                app.registry.reset()
            elif op == "tokens":
                for tok, who in (spec.get("add") or {}).items():
                    parts = who.split(",")
                    app.auth.add_token(tok, parts[0], parts[1:])
                for tok in spec.get("remove") or []:
                    app.auth.remove_token(tok)
            elif op == "issue-cert":
                from .certs import issue_client_cert
                crt, key = issue_client_cert(app.state_dir, spec.get("cn", "kvtest-user"), spec.get("groups") or [],
                                             int(spec.get("days", 365)))
                out.update({"cert": crt, "key": key})
            elif op == "revoke-cert":
                from .certs import fingerprint_pem
                fp = spec.get("fingerprint") or fingerprint_pem(spec["cert"])
                app.verifier.revoked.add(fp.lower())
                out["fingerprint"] = fp.lower()
            elif op == "revoke-token":
                out["jti"] = app.issuer.revoke(token=spec.get("token"), jti=spec.get("jti"))
            elif op == "deny":
                app.auth.set_deny(spec.get("rules") or [])
            elif op == "stats-reset":
                app.stats.reset()
            elif op == "save":
                app.store.save_now()
            else:
                return self.not_found_plain()
        except (ValueError, KeyError, RuntimeError) as e:
            raise errors.bad_request("bad admin request: %s" % e)
        return self.send_json(200, out)
