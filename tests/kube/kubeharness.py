"""Harness for the client integration tests: runs tests/apiserver/kvtest-apiserver (same port
across restarts, so a client's kubeconfig stays valid) and the two C drivers,
kube-informer-check and kube-request-check, whose output is JSON lines. stdlib only."""
import base64
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import warnings

import kvbuild
from apiserver import SERVER, ApiServer

warnings.simplefilter("ignore", ResourceWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# The drivers of the build meson runs us from (kvbuild.py); a missing one fails here, naming its path.
INFORMER = kvbuild.binary("tests/kube/kube-informer-check")
REQUEST = kvbuild.binary("tests/kube/kube-request-check")


def skip_unless_ready(cls):
    """Skips the test case when the server or the drivers are missing (reported, not silent)."""
    if not os.path.exists(SERVER):
        return unittest.skip("test API server %s not present" % SERVER)(cls)
    if not INFORMER or not REQUEST:
        return unittest.skip("kube-informer-check / kube-request-check not built")(cls)
    return cls


class Server(ApiServer):
    """The launcher of tests/lib/apiserver.py on 127.0.0.1, keeping its port across restarts (so a client's
    kubeconfig stays valid), plus the helpers the client tests use."""

    def __init__(self, args=(), state_dir=None):
        super().__init__(args=args, state_dir=state_dir, keep_port=True, prefix="kvkube-", stop_timeout=10)

    @property
    def kubeconfig(self):
        return os.path.join(self.dir, "kubeconfig")

    @property
    def kubeconfig_cert(self):
        return os.path.join(self.dir, "kubeconfig-cert")

    def stats(self):
        return self.json("GET", "/_kvtest/stats")[1]

    def list_all(self, path):
        st, d = self.json("GET", path)
        if st != 200:
            raise AssertionError("list %s: %s %s" % (path, st, d))
        return d["items"], d["metadata"]["resourceVersion"]

    def write_kubeconfig(self, path, cluster_extra="", user_block="", ca=True, server=None):
        """Writes a kubeconfig for this server with the given user block (YAML, indented 4)."""
        ca_line = "    certificate-authority: %s\n" % os.path.join(self.dir, "ca.crt") if ca else ""
        text = ("apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: %s\n%s%s"
                "contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\ncurrent-context: t\n"
                "users:\n- name: u\n  user:\n%s" % (server or self.url, ca_line, cluster_extra,
                                                     user_block or "    {}\n"))
        with open(path, "w") as f:
            f.write(text)
        return path


def b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


class _Lines:
    """Reads a process's stdout as JSON lines on a thread."""

    def __init__(self, proc):
        self.q = queue.Queue()
        self.all = []
        self.t = threading.Thread(target=self._run, args=(proc.stdout,), daemon=True)
        self.t.start()

    def _run(self, f):
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                v = json.loads(line)
            except ValueError:
                v = {"op": "garbage", "line": line.decode(errors="replace")}
            self.q.put(v)
        self.q.put(None)

    def get(self, timeout):
        v = self.q.get(timeout=timeout)
        if v is not None:
            self.all.append(v)
        return v


class Informer:
    """kube-informer-check: events, syncs and cache dumps as dicts."""

    def __init__(self, kubeconfig, resources, args=(), env=None, debug=False):
        e = dict(os.environ)
        e.update(env or {})
        cmd = [INFORMER, "--kubeconfig", kubeconfig] + list(args) + (["--debug"] if debug else []) + list(resources)
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=e)
        self.lines = _Lines(self.proc)
        self.events = []
        self.synced = []
        self.dumps = 0
        self.wait_for(lambda v: v.get("op") == "started", 10)

    def _take(self, v):
        if v.get("op") == "event":
            self.events.append(v)
        elif v.get("op") == "synced":
            self.synced.append(v)

    def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting; stderr: %s" % self.stderr_text()[-3000:])
            try:
                v = self.lines.get(left)
            except queue.Empty:
                continue
            if v is None:
                raise AssertionError("informer exited: rc=%s stderr: %s" % (self.proc.wait(), self.stderr_text()[-3000:]))
            self._take(v)
            if pred(v):
                return v

    def wait_synced(self, n=1, timeout=30):
        while len(self.synced) < n:
            self.wait_for(lambda v: v.get("op") == "synced", timeout)
        return self.synced

    def drain(self, seconds):
        """Collects output for a while."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                v = self.lines.get(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if v is None:
                raise AssertionError("informer exited: " + self.stderr_text()[-3000:])
            self._take(v)

    def dump(self, timeout=20):
        self.proc.send_signal(signal.SIGUSR1)
        cache = []
        self.dumps += 1
        while True:
            v = self.wait_for(lambda v: v.get("op") in ("cache", "dump_end"), timeout)
            if v["op"] == "cache":
                cache.append(v)
            elif v["seq"] == self.dumps:
                return cache, v

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                while self.lines.get(10) is not None:
                    pass
            except queue.Empty:
                pass
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        else:
            rc = self.proc.returncode
        if self.stderr:
            self._stderr_text = self.stderr_text()
            self.stderr.close()
            self.stderr = None
            self.proc.stdout.close()
        return rc

    def stderr_text(self):
        if not self.stderr:
            return self._stderr_text
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


class Requests:
    """kube-request-check: one JSON command in, one JSON result out."""

    def __init__(self, kubeconfig, args=(), env=None):
        e = dict(os.environ)
        e.update(env or {})
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([REQUEST] + (["--kubeconfig", kubeconfig] if kubeconfig else []) + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=e)
        self.lines = _Lines(self.proc)

    def call(self, cmd, timeout=30):
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        v = self.lines.get(timeout)
        if v is None:
            self.stderr.seek(0)
            raise AssertionError("kube-request-check exited: %s" % self.stderr.read().decode(errors="replace"))
        return v

    def get(self, path, **kw):
        return self.call(dict(method="GET", path=path, **kw))

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.stderr.close()
        self.proc.stdout.close()
        return rc


def run_once(kubeconfig, cmds, args=(), env=None, timeout=30):
    """Runs a fresh kube-request-check over a list of commands; returns (results, rc, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([REQUEST] + (["--kubeconfig", kubeconfig] if kubeconfig else []) + list(args),
                       input="".join(json.dumps(c) + "\n" for c in cmds).encode(),
                       capture_output=True, env=e, timeout=timeout)
    out = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
    return out, p.returncode, p.stderr.decode(errors="replace")


def svc(name, ns="default", labels=None, annotations=None):
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def cm(name, ns="default", data=None, labels=None):
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {"k": "v"}}


def key_of(v):
    return "%s/%s" % (v["namespace"], v["name"]) if v.get("namespace") else v["name"]


def check_event_sequences(testcase, events):
    """Per object key: ADDED only when absent, MODIFIED/DELETED only when present, and resourceVersions
    strictly increasing per incarnation (no duplicate, no going back). Returns the final view."""
    present = {}
    last_rv = {}
    for e in events:
        k = (e["resource"], key_of(e))
        rv = int(e["rv"])
        if e["type"] == "ADDED":
            testcase.assertNotIn(k, present, "ADDED for %s already present: %s" % (k, e))
            present[k] = (e["uid"], rv)
        elif e["type"] == "MODIFIED":
            testcase.assertIn(k, present, "MODIFIED for absent %s: %s" % (k, e))
            testcase.assertEqual(present[k][0], e["uid"], "MODIFIED changed uid: %s" % e)
            testcase.assertGreater(rv, present[k][1], "MODIFIED without a newer RV (duplicate?): %s" % e)
            present[k] = (e["uid"], rv)
        elif e["type"] == "DELETED":
            testcase.assertIn(k, present, "DELETED for absent %s: %s" % (k, e))
            del present[k]
        uidk = (k, e["uid"])
        if e["type"] != "DELETED":
            testcase.assertGreater(rv, last_rv.get(uidk, -1), "RV went back or repeated for %s: %s" % (k, e))
            last_rv[uidk] = rv
    return present


def ensure_ns(server, ns):
    st, d = server.json("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": ns}})
    if st not in (201, 409):
        raise AssertionError("namespace %s: %s %s" % (ns, st, d))


def cache_view(cache):
    """{key: (uid, rv)} from a dump's cache lines."""
    return {key_of(c): (c["uid"], c["rv"]) for c in cache}


def server_view(items):
    return {("%s/%s" % (o["metadata"]["namespace"], o["metadata"]["name"]) if o["metadata"].get("namespace")
             else o["metadata"]["name"]): (o["metadata"]["uid"], o["metadata"]["resourceVersion"]) for o in items}


def wait_until(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def wait_watching(server, resource, n=1, timeout=10):
    """Waits until the server has n open watches on the resource (e.g. "configmaps")."""
    def ok():
        w = server.stats().get("watches_by_resource", {})
        return sum(v for k, v in w.items() if resource in k) >= n
    if not wait_until(ok, timeout):
        raise AssertionError("no watch on %s: %s" % (resource, server.stats().get("watches_by_resource")))
