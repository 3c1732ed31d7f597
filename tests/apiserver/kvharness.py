"""Test harness for kvtest-apiserver: start/stop a server in a temp dir, HTTP helpers, and a raw
chunked-stream reader for watch framing checks. Used by test_*.py (stdlib unittest only)."""
import http.client
import json
import os
import socket
import time
import unittest
import warnings

warnings.simplefilter("ignore", ResourceWarning)

from apiserver import SERVER, ApiServer  # noqa: E402,F401 (SERVER re-exported)

HERE = os.path.dirname(os.path.abspath(__file__))


class Server(ApiServer):
    """The launcher of tests/lib/apiserver.py (an ephemeral port, a new one at each restart) plus the HTTP
    helpers the server's own tests use."""

    def __init__(self, args=(), state_dir=None, bind="127.0.0.1"):
        super().__init__(args=args, state_dir=state_dir, bind=bind, prefix="kvtest-", stop_timeout=5)

    # ------------------------------------------------------------------ HTTP helpers
    def conn(self, ctx=None, timeout=20):
        return http.client.HTTPSConnection(self.host, self.port, context=ctx or self.ctx, timeout=timeout)

    def request(self, method, path, body=None, token="admin", headers=None, ctype=None, conn=None, ctx=None):
        h = dict(headers or {})
        if token == "admin":
            token = self.token
        if token:
            h["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            h["Content-Type"] = ctype or "application/json"
        h.setdefault("Accept", "application/json")
        c = conn or self.conn(ctx)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, r, data
        finally:
            if conn is None:
                c.close()

    def json(self, method, path, body=None, **kw):
        st, r, data = self.request(method, path, body, **kw)
        try:
            return st, json.loads(data) if data else None
        except ValueError:
            return st, data


    def raw(self, path, token="admin", method="GET", extra_headers=""):
        """Open a raw TLS socket, send a request and return a RawStream (headers not yet read)."""
        s = socket.create_connection((self.host, self.port), timeout=20)
        s = self.ctx.wrap_socket(s, server_hostname=self.host)
        auth = "Authorization: Bearer %s\r\n" % (self.token if token == "admin" else token) if token else ""
        req = ("%s %s HTTP/1.1\r\nHost: %s\r\n%sAccept: application/json\r\nUser-Agent: kvtest-raw\r\n%s\r\n"
               % (method, path, self.host, auth, extra_headers))
        s.sendall(req.encode())
        return RawStream(s)

    def kubeconfig(self):
        return os.path.join(self.dir, "kubeconfig")


class RawStream:
    """Reads an HTTP/1.1 response by hand, preserving chunk boundaries."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.status = None
        self.headers = {}
        self.header_time = None

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_headers(self):
        st = self._line().decode()
        self.status = int(st.split()[1])
        while True:
            ln = self._line().decode()
            if not ln:
                break
            k, v = ln.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.header_time = time.monotonic()
        return self.status

    def read_chunk(self):
        """Returns the next chunk's payload; b'' for the terminating chunk. Raises EOFError on a cut."""
        size = int(self._line().split(b";")[0], 16)
        while len(self.buf) < size + 2:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size + 2:]
        return data

    def read_body(self):
        if self.headers.get("transfer-encoding") == "chunked":
            out = []
            while True:
                c = self.read_chunk()
                if not c:
                    return b"".join(out)
                out.append(c)
        n = int(self.headers.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        return self.buf[:n]

    def events(self, n=None, timeout=10):
        """Read chunks until n complete JSON events (split on newlines) or end of stream.
        Returns (events, chunks, ended_cleanly)."""
        self.sock.settimeout(timeout)
        pending, evs, chunks = b"", [], []
        while n is None or len(evs) < n:
            c = self.read_chunk()
            if not c:
                return evs, chunks, True
            chunks.append(c)
            pending += c
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                evs.append(json.loads(line))
        return evs, chunks, False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def svc_body(name, ns="default", **spec):
    sp = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    sp.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": sp}


def lease_body(name, ns="default", holder="node-a", dur=5, rv=None):
    b = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": ns},
         "spec": {"holderIdentity": holder, "leaseDurationSeconds": dur,
                  "acquireTime": "2025-05-12T08:14:05.512334Z", "renewTime": "2025-05-12T08:14:05.512334Z",
                  "leaseTransitions": 0}}
    if rv:
        b["metadata"]["resourceVersion"] = rv
    return b


LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
SVCS = "/api/v1/namespaces/default/services"
FIXTURES = os.path.join(HERE, "..", "fixtures", "k8s-api")


class ServerTestCase(unittest.TestCase):
    """One server per TestCase class."""
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.s = Server(cls.server_args)

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
