"""Small helpers shared by every module: Go-compatible JSON, times, random names."""
import datetime
import json
import random
import string
import time

_GO_ESC = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                         "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(obj):
    """Compact JSON like Go's encoding/json (HTML-escaped, UTF-8, no spaces)."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if "<" in s or ">" in s or "&" in s or "\u2028" in s or "\u2029" in s:
        s = s.translate(_GO_ESC)
    return s


def dumpb(obj):
    return dumps(obj).encode("utf-8")


def now_rfc3339(ts=None):
    if ts is None:
        ts = time.time()
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro(ts=None):
    if ts is None:
        ts = time.time()
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(s):
    """Parse a Time/MicroTime string; returns epoch seconds or None."""
    if not isinstance(s, str):
        return None
    try:
        s2 = s.replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(s2).timestamp()
    except ValueError:
        return None


_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def gen_suffix(n=5):
    return "".join(random.choice(_GEN_CHARS) for _ in range(n))


def http_date(ts=None):
    import email.utils
    return email.utils.formatdate(ts, usegmt=True)


def deepcopy_json(o):
    """Fast deep copy for JSON-shaped data."""
    t = type(o)
    if t is dict:
        return {k: deepcopy_json(v) for k, v in o.items()}
    if t is list:
        return [deepcopy_json(v) for v in o]
    return o


META_ORDER = ["name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
              "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
              "annotations", "ownerReferences", "finalizers", "managedFields"]
_META_IDX = {k: i for i, k in enumerate(META_ORDER)}


def order_meta(meta):
    """Reorder an ObjectMeta dict into Go struct field order (unknown keys last)."""
    return dict(sorted(meta.items(), key=lambda kv: _META_IDX.get(kv[0], 100)))
