"""Object storage: one global resourceVersion counter, per-kind bounded history, watch fan-out,
consistent snapshots for paginated lists, and debounced persistence to state.json."""
import collections
import json
import os
import threading
import time

from .resources import BY_KEY, fields_of
from .util import dumpb, order_meta


class Event:
    __slots__ = ("rv", "type", "res", "ns", "name", "obj", "old", "_enc")

    def __init__(self, rv, typ, res, ns, name, obj, old):
        self.rv, self.type, self.res, self.ns, self.name, self.obj, self.old = rv, typ, res, ns, name, obj, old
        self._enc = {}

    def encode(self, typ, which):
        """Encode a WatchEvent line. which: 'new' (obj) or 'old-at-rv' (old content with this event's RV)."""
        k = (typ, which)
        b = self._enc.get(k)
        if b is None:
            if which == "new":
                o = self.obj
            else:
                o = dict(self.old)
                md = dict(o["metadata"])
                md["resourceVersion"] = str(self.rv)
                o["metadata"] = md
            b = encode_event(typ, self.res, o)
            self._enc[k] = b
        return b


def with_header(res, obj):
    out = {"kind": res.kind, "apiVersion": res.api_version}
    out.update(obj)
    return out


def encode_event(typ, res, obj):
    return dumpb({"type": typ, "object": with_header(res, obj)}) + b"\n"


class Watcher:
    MAX_QUEUE = 100000

    def __init__(self, res, ns, lsel, fsel, user=""):
        self.res, self.ns, self.lsel, self.fsel = res, ns, lsel, fsel
        self.user = user
        self.q = collections.deque()
        self.cond = threading.Condition()
        self.done = False          # stream should end (after draining q)
        self.abort = False         # stream should be cut without terminating chunk
        self.started = time.time()
        self.transform = None      # optional fn(type, obj) -> bytes (e.g. Table rendering)

    def matches(self, obj):
        md = obj.get("metadata") or {}
        if self.ns and md.get("namespace") != self.ns:
            return False
        if self.lsel is not None and not self.lsel.empty() and not self.lsel.matches(md.get("labels")):
            return False
        if self.fsel is not None and not self.fsel.empty() and not self.fsel.matches(fields_of(self.res, obj)):
            return False
        return True

    def convert(self, ev):
        """Return encoded bytes for this watcher, or None (selector enter/leave rules)."""
        r = self._classify(ev)
        if r is None:
            return None
        if self.transform is None:
            return ev.encode(*r)
        typ, which = r
        if which == "new":
            return self.transform(typ, ev.obj)
        o = dict(ev.old)
        o["metadata"] = dict(o["metadata"], resourceVersion=str(ev.rv))
        return self.transform(typ, o)

    def encode(self, typ, obj):
        if self.transform is not None:
            return self.transform(typ, obj)
        return encode_event(typ, self.res, obj)

    def _classify(self, ev):
        if ev.type == "DELETED":
            return ("DELETED", "new") if self.matches(ev.obj) else None
        cur = self.matches(ev.obj)
        old = ev.old is not None and self.matches(ev.old)
        if ev.type == "ADDED":
            return ("ADDED", "new") if cur else None
        if cur and old:
            return ("MODIFIED", "new")
        if cur:
            return ("ADDED", "new")
        if old:
            return ("DELETED", "old")
        return None

    def push(self, data):
        with self.cond:
            if self.done:
                return
            self.q.append(data)
            if len(self.q) > self.MAX_QUEUE:
                self.q.clear()
                self.done = True
            self.cond.notify()

    def finish(self, final=None, abort=False):
        with self.cond:
            if final is not None and not self.done:
                self.q.append(final)
            self.done = True
            if abort:
                self.abort = True
            self.cond.notify()


class TooOld(Exception):
    def __init__(self, want, oldest):
        self.want, self.oldest = want, oldest


class TooLarge(Exception):
    def __init__(self, want, cur):
        self.want, self.cur = want, cur


class Store:
    def __init__(self, state_path=None, history_size=10000, save_delay=0.05):
        self.lock = threading.RLock()
        self.rv_cond = threading.Condition(self.lock)
        self.rv = 0
        self.objs = {k: {} for k in BY_KEY}
        self.hist = {k: collections.deque() for k in BY_KEY}
        self.window = {k: 0 for k in BY_KEY}
        self.watchers = {k: set() for k in BY_KEY}
        self.compacted_rv = 0
        self.history_size = history_size
        self.state_path = state_path
        self.save_delay = save_delay
        self._dirty_since = None
        self._save_cond = threading.Condition()
        self._stop = False
        self.listeners = []  # callables(ev) run after commit (outside lock), e.g. controllers
        self._saver = None

    # ------------------------------------------------------------------ persistence
    def load(self):
        if not self.state_path or not os.path.exists(self.state_path):
            return False
        with open(self.state_path) as f:
            st = json.load(f)
        self.rv = int(st.get("rv", 0))
        for k, items in st.get("objects", {}).items():
            if k in self.objs:
                for o in items:
                    md = o["metadata"]
                    self.objs[k][(md.get("namespace", ""), md["name"])] = o
        self.reset_windows()
        return True

    def reset_windows(self):
        for k in self.window:
            self.window[k] = self.rv
            self.hist[k].clear()
        self.compacted_rv = self.rv

    def snapshot_state(self):
        with self.lock:
            return {"rv": self.rv, "objects": {k: list(v.values()) for k, v in self.objs.items() if v}}

    def save_now(self):
        if not self.state_path:
            return
        st = self.snapshot_state()
        tmp = self.state_path + ".tmp.%d" % threading.get_ident()
        # json.dumps, not json.dump: dump() streams through the pure-Python
        # encoder, which at 20,000 objects held the GIL for seconds and
        # stalled every request thread (Lease renewals timed out); dumps()
        # encodes in C, several times faster.
        data = json.dumps(st, separators=(",", ":"))
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, self.state_path)

    def start_saver(self):
        if not self.state_path:
            return
        self._saver = threading.Thread(target=self._save_loop, name="state-saver", daemon=True)
        self._saver.start()

    def _save_loop(self):
        while True:
            with self._save_cond:
                while self._dirty_since is None and not self._stop:
                    self._save_cond.wait()
                if self._stop:
                    return
                due = self._dirty_since + self.save_delay
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self._save_cond:
                self._dirty_since = None
            t0 = time.monotonic()
            try:
                self.save_now()
            except OSError:
                pass
            # under heavy churn keep persistence below ~20% of one core
            # (and of the GIL, which every request thread needs), whatever
            # the size of the state
            took = time.monotonic() - t0
            if took * 4 > self.save_delay:
                time.sleep(took * 4)

    def mark_dirty(self):
        with self._save_cond:
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
                self._save_cond.notify()

    def stop(self):
        with self._save_cond:
            self._stop = True
            self._save_cond.notify()
        try:
            self.save_now()
        except OSError:
            pass

    # ------------------------------------------------------------------ reads
    def get(self, res, ns, name):
        return self.objs[res.key()].get((ns or "", name))

    def iter_objects(self, res):
        return list(self.objs[res.key()].values())

    def list(self, res, ns=None):
        with self.lock:
            d = self.objs[res.key()]
            keys = sorted(d)
            if ns:
                keys = [k for k in keys if k[0] == ns]
            return [d[k] for k in keys], self.rv

    def snapshot_at(self, res, rv):
        """Objects of a kind as they were at rv: dict key->obj, or None if history no longer covers rv."""
        with self.lock:
            k = res.key()
            if rv < self.window[k] or rv < self.compacted_rv:
                return None
            cur = dict(self.objs[k])
            for ev in reversed(self.hist[k]):
                if ev.rv <= rv:
                    break
                key = (ev.ns, ev.name)
                if ev.type == "ADDED":
                    cur.pop(key, None)
                else:
                    cur[key] = ev.old
            return cur

    # ------------------------------------------------------------------ writes
    def commit(self, res, typ, obj, old):
        """Record a change. obj: the new state (ADDED/MODIFIED) or the last state (DELETED);
        obj is mutated to carry the new resourceVersion. Returns the stored object."""
        with self.lock:
            self.rv += 1
            rv = self.rv
            md = dict(obj["metadata"])
            md["resourceVersion"] = str(rv)
            obj["metadata"] = order_meta(md)
            k = res.key()
            key = (md.get("namespace", ""), md["name"])
            if typ == "DELETED":
                self.objs[k].pop(key, None)
            else:
                self.objs[k][key] = obj
            ev = Event(rv, typ, res, key[0], key[1], obj, old)
            h = self.hist[k]
            h.append(ev)
            if len(h) > self.history_size:
                dropped = h.popleft()
                self.window[k] = dropped.rv
            for w in list(self.watchers[k]):
                b = w.convert(ev)
                if b is not None:
                    w.push(b)
            self.rv_cond.notify_all()
        self.mark_dirty()
        for fn in self.listeners:
            try:
                fn(ev)
            except Exception:  # controllers must never break writes
                import traceback
                traceback.print_exc()
        return obj

    def wait_for_rv(self, want, timeout):
        with self.lock:
            end = time.monotonic() + timeout
            while self.rv < want:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.rv_cond.wait(left)
            return True

    # ------------------------------------------------------------------ watch
    def start_watch(self, w, rv, initial_sorted=True):
        """Register a watcher. rv None/0 => synthetic ADDED for current state.
        Raises TooOld. Returns the list of initial encoded events (already queued)."""
        k = w.res.key()
        with self.lock:
            if rv is None or rv == 0:
                d = self.objs[k]
                for key in sorted(d):
                    o = d[key]
                    if w.matches(o):
                        w.q.append(w.encode("ADDED", o))
            else:
                if rv < self.window[k] or rv < self.compacted_rv:
                    raise TooOld(rv, max(self.window[k], self.compacted_rv))
                for ev in self.hist[k]:
                    if ev.rv > rv:
                        b = w.convert(ev)
                        if b is not None:
                            w.q.append(b)
            self.watchers[k].add(w)

    def stop_watch(self, w):
        with self.lock:
            self.watchers[w.res.key()].discard(w)

    def all_watchers(self):
        with self.lock:
            return [w for s in self.watchers.values() for w in s]

    def compact(self):
        with self.lock:
            self.compacted_rv = self.rv
            for k in self.hist:
                self.hist[k].clear()
                self.window[k] = self.rv
            return self.rv
