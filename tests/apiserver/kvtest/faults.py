"""Fault injection state (driven by POST /_kvtest/<op>) and request statistics."""
import collections
import re
import threading
import time


class Rule:
    def __init__(self, spec):
        self.match = re.compile(spec["match"]) if spec.get("match") else None
        self.method = (spec.get("method") or "").upper() or None
        c = spec.get("count")
        self.count = None if (c is None or spec.get("until_cleared")) else int(c)
        self.spec = spec

    def hit(self, method, path):
        if self.method and self.method != method:
            return False
        if self.match and not self.match.search(path):
            return False
        return True


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.stalls = []
        self.fails = []
        self.watch_faults = []
        self.offline = False
        self.split_chunks = False

    def _take(self, rules, method, path):
        with self.lock:
            for r in list(rules):
                if r.hit(method, path):
                    if r.count is not None:
                        r.count -= 1
                        if r.count <= 0:
                            rules.remove(r)
                    return r
        return None

    def add_stall(self, spec):
        if spec.get("clear"):
            with self.lock:
                self.stalls = []
            return
        spec.setdefault("ms", 1000)
        if spec.get("count") is None and not spec.get("until_cleared"):
            spec["count"] = 1
        with self.lock:
            self.stalls.append(Rule(spec))

    def add_fail(self, spec):
        if spec.get("clear"):
            with self.lock:
                self.fails = []
            return
        code = int(spec.get("code", 500))
        if code not in (429, 500, 503, 504):
            raise ValueError("code must be one of 429, 500, 503, 504")
        if spec.get("count") is None and not spec.get("until_cleared"):
            spec["count"] = 1
        with self.lock:
            self.fails.append(Rule(spec))

    def add_watch_fault(self, spec):
        if spec.get("clear"):
            with self.lock:
                self.watch_faults = []
            return
        if spec.get("mode") not in ("close-after-headers", "truncate-chunk", "reset-after-events"):
            raise ValueError("mode must be close-after-headers, truncate-chunk or reset-after-events")
        if spec.get("count") is None and not spec.get("until_cleared"):
            spec["count"] = 1
        with self.lock:
            self.watch_faults.append(Rule(spec))

    def take_stall(self, method, path):
        r = self._take(self.stalls, method, path)
        return (r.spec.get("ms", 0) / 1000.0) if r else 0

    def take_fail(self, method, path):
        r = self._take(self.fails, method, path)
        return r.spec if r else None

    def take_watch_fault(self, path):
        r = self._take(self.watch_faults, "GET", path)
        return r.spec if r else None

    def clear(self):
        with self.lock:
            self.stalls, self.fails, self.watch_faults = [], [], []
            self.offline = False
            self.split_chunks = False

    def describe(self):
        with self.lock:
            return {"stalls": [r.spec for r in self.stalls], "fails": [r.spec for r in self.fails],
                    "watch_faults": [r.spec for r in self.watch_faults], "offline": self.offline,
                    "split_chunks": self.split_chunks}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.total = 0
            self.by_verb_resource = collections.Counter()
            self.by_user_agent = collections.Counter()
            self.by_user = collections.Counter()
            self.by_code = collections.Counter()
            self.per_second = collections.OrderedDict()  # int(epoch) -> Counter("verb resource")
            self.since = time.time()

    def record(self, verb, resource, ua, user, code):
        key = "%s %s" % (verb, resource)
        sec = int(time.time())
        with self.lock:
            self.total += 1
            self.by_verb_resource[key] += 1
            self.by_user_agent[ua or ""] += 1
            self.by_user[user or ""] += 1
            self.by_code[str(code)] += 1
            c = self.per_second.get(sec)
            if c is None:
                c = self.per_second[sec] = collections.Counter()
                while len(self.per_second) > 300:
                    self.per_second.popitem(last=False)
            c[key] += 1

    def snapshot(self, watchers):
        with self.lock:
            ps = [{"second": s, "total": sum(c.values()), "by_verb_resource": dict(c)}
                  for s, c in self.per_second.items()]
            d = {"since": self.since, "now": time.time(), "requests_total": self.total,
                 "by_verb_resource": dict(self.by_verb_resource), "by_user_agent": dict(self.by_user_agent),
                 "by_user": dict(self.by_user), "by_code": dict(self.by_code), "per_second": ps}
        wr = collections.Counter(w.res.key().lstrip("/") for w in watchers)
        d["open_watches"] = len(watchers)
        d["watches_by_resource"] = dict(wr)
        return d
