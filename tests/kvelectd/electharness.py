"""Harness for kvelectd integration tests and the benchmark: the test API server (tests/apiserver) in a
temp dir, kvelectd instances (one per simulated node, each with its own identity, socket and API token),
and a client per instance (kvelect-client) that records every signal with its CLOCK_MONOTONIC time.
Python's time.monotonic() is the same clock, so signal times and deadlines compare directly."""
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import kvbuild
from apiserver import ApiServer

# The build meson runs us from (kvbuild.py); a missing binary fails here, naming its path.
KVELECTD = kvbuild.binary("kvelectd/kvelectd")
CLIENT = kvbuild.binary("tests/kvelectd/kvelect-client")
SHIFT = kvbuild.artifact("tests/kvelectd/realtime-shift.so")

LEASES = "/apis/coordination.k8s.io/v1/namespaces/%s/leases"


def mono_usec():
    return int(time.monotonic() * 1e6)


class Api:
    """The test API server plus per-node tokens, so its stats count each node's requests apart."""

    def __init__(self):
        self.server = ApiServer()
        self.dir = self.server.dir
        self.tokens = {}

    def close(self):
        self.server.close()

    def kubeconfig_for(self, user):
        if user not in self.tokens:
            tok = "tok-" + user + "-" + os.urandom(6).hex()
            self.server.admin("tokens", {"add": {tok: user}})
            self.tokens[user] = tok
        path = os.path.join(self.dir, "kubeconfig-" + user)
        with open(self.server.kubeconfig_path) as f:
            text = f.read()
        lines = []
        for ln in text.splitlines():
            if ln.strip().startswith("token:"):
                ln = ln[: ln.index("token:")] + "token: " + self.tokens[user]
            lines.append(ln)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def namespace(self, ns):
        st, d = self.server.json("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                 "metadata": {"name": ns}})
        assert st in (201, 409), (st, d)

    def lease(self, ns, name):
        st, d = self.server.json("GET", LEASES % ns + "/" + name)
        return d if st == 200 else None

    def holder(self, ns, name):
        d = self.lease(ns, name)
        return (d.get("spec") or {}).get("holderIdentity") if d else None

    def put_lease(self, body):
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        st, d = self.server.json("PUT", LEASES % ns + "/" + name, body)
        return st, d

    def admin(self, op, body=None):
        return self.server.admin(op, body)

    def stats(self):
        st, d = self.server.json("GET", "/_kvtest/stats")
        assert st == 200, d
        return d


class Node:
    """One kvelectd and the client that drives it."""

    def __init__(self, api, name, tmp, durations=("3s", "2s", "500ms"), env=None, args=(), log_level="debug"):
        self.api, self.name, self.tmp = api, name, tmp
        self.sock = os.path.join(tmp, name + ".sock")
        self.logpath = os.path.join(tmp, name + ".log")
        self.durations = durations
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.args = list(args)
        self.log_level = log_level
        self.proc = self.client = None
        self.start()

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        kc = self.api.kubeconfig_for(self.name)
        self.log = open(self.logpath, "ab")
        ld, rd, rp = self.durations
        self.proc = subprocess.Popen(
            [KVELECTD, "--socket", self.sock, "--kubeconfig", kc, "--node-name", self.name,
             "--lease-duration", ld, "--renew-deadline", rd, "--retry-period", rp,
             "--log-level", self.log_level] + self.args,
            stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise RuntimeError("kvelectd %s exited: %s" % (self.name, open(self.logpath).read()[-3000:]))
            if time.monotonic() > deadline:
                raise RuntimeError("kvelectd %s did not listen" % self.name)
            time.sleep(0.01)
        self.signals = []
        self.replies = queue.Queue()
        self.call_lock = threading.Lock()
        self.cond = threading.Condition()
        self.client = subprocess.Popen([CLIENT, self.sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self.log, bufsize=0)
        # The reader is bound to this client and this queue: after a restart,
        # a late reply from the previous client must not reach the new queue.
        self.reader = threading.Thread(target=self._read, args=(self.client, self.replies), daemon=True)
        self.reader.start()

    def _read(self, client, replies):
        for line in client.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if "reply" in ev:
                replies.put(ev)
            elif "signal" in ev:
                with self.cond:
                    self.signals.append(ev)
                    self.cond.notify_all()

    def _call(self, line, timeout=10):
        # One call at a time per node: the test and its Sampler thread both
        # call, and replies are matched to calls only by their order.
        with self.call_lock:
            self.client.stdin.write((line + "\n").encode())
            want = line.split()[0]
            end = time.monotonic() + timeout
            while True:
                ev = self.replies.get(timeout=max(end - time.monotonic(), 0.001))
                # Replies come in order; one for another command is the late
                # answer to a call that timed out earlier: skip it.
                if ev.get("reply") == want:
                    break
        if not ev.get("ok"):
            raise RuntimeError("%s: %s failed: %s" % (self.name, line, ev))
        return ev

    def campaign(self, ns, name):
        return self._call("campaign %s %s" % (ns, name))

    def withdraw(self, ns, name):
        return self._call("withdraw %s %s" % (ns, name))

    def campaign_many(self, leases):
        """Pipelined: all commands first, then all replies."""
        data = "".join("campaign %s %s\n" % l for l in leases).encode()
        with self.call_lock:
            self.client.stdin.write(data)
            for _ in leases:
                ev = self.replies.get(timeout=60)
                if not ev.get("ok"):
                    raise RuntimeError("%s: campaign failed: %s" % (self.name, ev))

    def list(self, timeout=10):
        ev = self._call("list", timeout)
        return {(c["namespace"], c["name"]): c for c in ev["campaigns"]}

    def leading(self, ns, name):
        c = self.list().get((ns, name))
        return bool(c and c["leading"])

    def wait_signal(self, pred, timeout, start=0):
        """Waits for a signal (from index start on) matching pred; returns it or None."""
        end = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.signals):
                    if pred(self.signals[i]):
                        return self.signals[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def wait_leading(self, ns, name, leading=True, timeout=10, start=0):
        return self.wait_signal(lambda s: s["signal"] == "LeadershipChanged" and s["namespace"] == ns and
                                s["name"] == name and s["leading"] == leading, timeout, start)

    def mark(self):
        with self.cond:
            return len(self.signals)

    def intervals(self, ns, name, now=None):
        """Leadership intervals [start, end) in monotonic usec from the signals: a gain starts one; a loss,
        or the last deadline passing without a renewal, ends it (the earlier of the two)."""
        out, start, deadline = [], None, None
        with self.cond:
            sigs = list(self.signals)
        for s in sigs:
            if s["namespace"] != ns or s["name"] != name:
                continue
            if s["signal"] == "LeadershipChanged":
                if s["leading"] and start is None:
                    start, deadline = s["t"], s["deadline"]
                elif s["leading"]:
                    deadline = s["deadline"]
                elif start is not None:
                    out.append((start, min(s["t"], deadline)))
                    start = None
            elif s["signal"] == "Renewed" and start is not None:
                if s["t"] > deadline:  # renewed after the deadline passed: a gap
                    out.append((start, deadline))
                    start = s["t"]
                deadline = s["deadline"]
        if start is not None:
            end = now if now is not None else mono_usec()
            out.append((start, min(end, deadline) if not self.alive() else end))
        return out

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        t = mono_usec()
        self.proc.send_signal(sig)
        return t

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout)

    def stop(self):
        if self.client and self.client.poll() is None:
            try:
                self.client.stdin.close()
            except OSError:
                pass
            try:
                self.client.wait(5)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
        if self.client:
            self.reader.join(5)
            for f in (self.client.stdin, self.client.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()
            self.log = None

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def sanitizer_reports(self):
        text = self.logtext()
        return [m for m in self.SANITIZER_MARKS if m in text]

    def logtext(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()


def overlaps(intervals_by_node):
    """Pairs of intervals of different nodes that overlap: (node_a, node_b, overlap_usec)."""
    flat = [(s, e, n) for n, ivs in intervals_by_node.items() for s, e in ivs]
    flat.sort()
    bad = []
    for i, (s1, e1, n1) in enumerate(flat):
        for s2, e2, n2 in flat[i + 1:]:
            if s2 >= e1:
                break
            if n1 != n2:
                bad.append((n1, n2, min(e1, e2) - s2))
    return bad


class Cluster:
    """An API server and a temp dir for nodes; close() stops everything."""

    def __init__(self):
        self.api = Api()
        self.tmp = tempfile.mkdtemp(prefix="kvelectd-")
        self.nodes = []

    def node(self, name, **kw):
        n = Node(self.api, name, self.tmp, **kw)
        self.nodes.append(n)
        return n

    def close(self):
        """Stops everything; returns {node: sanitizer report kinds} for logs with any."""
        for n in self.nodes:
            n.stop()
        reports = {}
        for n in self.nodes:
            r = n.sanitizer_reports()
            if r:
                reports[n.name] = (r, n.logtext()[-6000:])
        self.api.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return reports
