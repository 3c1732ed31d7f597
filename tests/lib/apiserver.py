# SPDX-License-Identifier: Apache-2.0
"""The one launcher of the test Kubernetes API server (tests/apiserver/kvtest-apiserver).

ApiServer starts it in a state directory (a temporary one it owns, or one given), optionally inside a network
namespace, and waits until it is ready: the server writes <state dir>/ready (its URL) once it listens, so no
test sleeps for it. Then url, host, port, token (the admin token), ctx (an SSL context trusting its CA) and
kubeconfig_path are set. restart() keeps the port when keep_port is set, so a client's kubeconfig stays valid
(a port that lingers after the stop is retried until the deadline). Standard library only.

    s = ApiServer()                       # 127.0.0.1, an ephemeral port, a private temporary directory
    s = ApiServer(ns="kvc1-api", bind="172.16.0.2", port=6443, state_dir=d, log_path=p, args=["--reset"])
    ...
    s.close()                             # stops it; removes the directory it made
"""
import http.client
import importlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_DIR = os.path.join(ROOT, "tests", "apiserver")
SERVER = os.path.join(SERVER_DIR, "kvtest-apiserver")


def server_module(name):
    """A module of the server's own package (tests/apiserver/kvtest/NAME.py), for a test that evaluates a
    policy the way the server does (tests/cluster/test_rbac.py uses kvtest.rbac)."""
    if SERVER_DIR not in sys.path:
        sys.path.append(SERVER_DIR)
    return importlib.import_module("kvtest." + name)


def _tail(path, n=4000):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-n:]
    except OSError as e:
        return "(%s)" % e


class ApiServer:
    def __init__(self, args=(), state_dir=None, bind="127.0.0.1", port=0, ns=None, log_path=None,
                 keep_port=False, prefix="kvtest-", stop_timeout=5.0, ready_timeout=30.0, start=True):
        self.owns_dir = state_dir is None
        self.dir = state_dir or tempfile.mkdtemp(prefix=prefix)
        self.args = list(args)
        self.bind = bind
        self.want_port = port  # what --port asks for; port is where it listens once ready
        self.port = None
        self.ns = ns
        self.log_path = log_path or os.path.join(self.dir, "server.log")
        self.keep_port = keep_port
        self.stop_timeout = stop_timeout
        self.ready_timeout = ready_timeout
        self.proc = None
        self.log = None
        self.cmd = None
        if start:
            self.start()

    @property
    def ready_path(self):
        return os.path.join(self.dir, "ready")

    @property
    def kubeconfig_path(self):
        return os.path.join(self.dir, "kubeconfig")

    def command(self, extra=()):
        cmd = [sys.executable, SERVER, "--state-dir", self.dir, "--bind", self.bind, "--port", str(self.want_port)]
        cmd += self.args + list(extra)
        return (["ip", "netns", "exec", self.ns] if self.ns else []) + cmd

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, extra):
        if os.path.exists(self.ready_path):
            os.unlink(self.ready_path)
        self.cmd = self.command(extra)
        if self.log is None:
            self.log = open(self.log_path, "ab", buffering=0)
        self.log.write(("=== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(self.cmd))).encode())
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self, extra=()):
        """Starts the server and waits for its ready file; raises with the end of its log when it exits or
        is not ready within ready_timeout."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            self._spawn(extra)
            while time.monotonic() < deadline and not os.path.exists(self.ready_path) and self.alive():
                time.sleep(0.02)
            if os.path.exists(self.ready_path):
                break
            if self.alive():
                self.stop()
                raise RuntimeError("API server not ready in %gs:\n%s" % (self.ready_timeout, _tail(self.log_path)))
            # A fixed port may linger briefly after a restart: try again until the deadline.
            if not self.want_port or time.monotonic() >= deadline:
                raise RuntimeError("API server exited (%s):\n%s" % (self.proc.returncode, _tail(self.log_path)))
            time.sleep(0.2)
        with open(self.ready_path) as f:
            self.url = f.read().strip()
        host, port = self.url[len("https://"):].rsplit(":", 1)
        self.host = host.strip("[]")
        self.port = int(port)
        if self.keep_port:
            self.want_port = self.port
        with open(os.path.join(self.dir, "admin-token")) as f:
            self.token = f.read().strip()
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signals the server and waits (SIGKILL after timeout); returns its exit code."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            if self.proc:
                self.log.write(("=== %s: exit %s\n" % (time.strftime("%H:%M:%S"), self.proc.returncode)).encode())
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

    # ------------------------------------------------------------------ the admin's requests
    def json(self, method, path, body=None, token=None, ctype="application/json"):
        """One request with token (the admin's by default); returns (status, decoded JSON body or the raw
        bytes)."""
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
        h = {"Authorization": "Bearer " + (token or self.token), "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = ctype
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
        finally:
            c.close()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw

    def admin(self, op, body=None):
        """The server's own admin API (/_kvtest/OP): faults, tokens, stats, ..."""
        st, d = self.json("POST", "/_kvtest/" + op, body or {})
        if st != 200:
            raise AssertionError("admin %s failed: %s %s" % (op, st, d))
        return d
