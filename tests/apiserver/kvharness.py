"""Test harness for kvtest-apiserver: start/stop a server in a temp dir, HTTP helpers, and a raw
chunked-stream reader for watch framing checks. Used by test_*.py (stdlib unittest only)."""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

warnings.simplefilter("ignore", ResourceWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "kvtest-apiserver")


class Server:
    def __init__(self, args=(), state_dir=None, bind="127.0.0.1"):
        self.owns_dir = state_dir is None
        self.dir = state_dir or tempfile.mkdtemp(prefix="kvtest-")
        self.args = list(args)
        self.bind = bind
        self.proc = None
        self.start()

    def start(self, extra=()):
        ready = os.path.join(self.dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, SERVER, "--state-dir", self.dir, "--bind", self.bind,
                                      "--port", "0"] + self.args + list(extra),
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(ready):
                with open(ready) as f:
                    self.url = f.read().strip()
                break
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: %s" % open(os.path.join(self.dir, "server.log")).read())
            time.sleep(0.02)
        else:
            raise RuntimeError("server did not become ready")
        hp = self.url[len("https://"):]
        host, port = hp.rsplit(":", 1)
        self.host = host.strip("[]")
        self.port = int(port)
        with open(os.path.join(self.dir, "admin-token")) as f:
            self.token = f.read().strip()
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()
            self.log = None
        return self.proc.returncode if self.proc else None

    def restart(self, extra=()):
        self.stop()
        return self.start(extra)

    def close(self):
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

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

    def admin(self, op, body=None):
        st, d = self.json("POST", "/_kvtest/" + op, body or {})
        if st != 200:
            raise AssertionError("admin %s failed: %s %s" % (op, st, d))
        return d

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
