"""Label selectors (full set-based syntax) and field selectors."""
import re

from .errors import ApiError, bad_request

_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VAL_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class LabelSelector:
    """A parsed label selector: list of (key, op, values)."""

    def __init__(self, reqs):
        self.reqs = reqs

    def empty(self):
        return not self.reqs

    def matches(self, labels):
        labels = labels or {}
        for key, op, vals in self.reqs:
            has = key in labels
            v = labels.get(key)
            if op == "exists":
                if not has:
                    return False
            elif op == "!":
                if has:
                    return False
            elif op in ("=", "==", "in"):
                if not has or v not in vals:
                    return False
            elif op in ("!=", "notin"):
                if has and v in vals:
                    return False
            elif op in (">", "<"):
                if not has:
                    return False
                try:
                    iv = int(v)
                except ValueError:
                    return False
                if op == ">" and not iv > vals[0]:
                    return False
                if op == "<" and not iv < vals[0]:
                    return False
        return True


def _lerr(msg):
    return bad_request("unable to parse requirement: " + msg)


def _split_top(s):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _check_key(k):
    if not _KEY_RE.match(k) or len(k.split("/")[-1]) > 63:
        raise _lerr('<nil>: Invalid value: "%s": name part must consist of alphanumeric characters, \'-\', \'_\' or '
                    '\'.\', and must start and end with an alphanumeric character' % k)


def _check_val(v):
    if len(v) > 63 or not _VAL_RE.match(v):
        raise _lerr('values[0][%s]: Invalid value: "%s": a valid label must be an empty string or consist of '
                    'alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an alphanumeric '
                    'character' % ("", v))


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(s):
    s = (s or "").strip()
    reqs = []
    if not s:
        return LabelSelector(reqs)
    for part in _split_top(s):
        p = part.strip()
        if not p:
            raise bad_request("unable to parse requirement: found '', expected: identifier")
        m = _SET_RE.match(p)
        if m:
            key, op, inner = m.group(1), m.group(2), m.group(3)
            _check_key(key)
            vals = [v.strip() for v in inner.split(",")] if inner.strip() else []
            if not vals:
                raise bad_request("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
            for v in vals:
                _check_val(v)
            reqs.append((key, op, set(vals)))
            continue
        if p.startswith("!"):
            key = p[1:].strip()
            _check_key(key)
            reqs.append((key, "!", None))
            continue
        m = re.match(r"^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*)$", p)
        if m:
            key, op, val = m.group(1), m.group(2), m.group(3).strip()
            _check_key(key)
            if op in (">", "<"):
                try:
                    reqs.append((key, op, [int(val)]))
                except ValueError:
                    raise bad_request("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                                      "an integer")
                continue
            _check_val(val)
            reqs.append((key, op, {val}))
            continue
        if re.match(r"^\S+$", p):
            _check_key(p)
            reqs.append((p, "exists", None))
            continue
        raise bad_request("unable to parse requirement: found '%s', expected: ',' or 'end of string'" % p.split()[-1])
    return LabelSelector(reqs)


class FieldSelector:
    def __init__(self, reqs):
        self.reqs = reqs  # (field, op, value)

    def empty(self):
        return not self.reqs

    def matches(self, fields):
        for f, op, v in self.reqs:
            have = fields.get(f, "")
            if isinstance(have, (list, tuple)):
                hit = v in have
            else:
                hit = have == v
            if op == "!=":
                if hit:
                    return False
            elif not hit:
                return False
        return True


def _unescape_field(v):
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out.append(v[i + 1])
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def parse_field_selector(s, supported):
    """supported: set of allowed field labels (for this resource)."""
    s = (s or "").strip()
    reqs = []
    if not s:
        return FieldSelector(reqs)
    # split on unescaped commas
    parts, cur, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if s[i] == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(s[i])
        i += 1
    parts.append("".join(cur))
    for p in parts:
        m = re.match(r"^([^=!]+?)(==|!=|=)(.*)$", p)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (s, p))
        f, op, v = m.group(1).strip(), m.group(2), _unescape_field(m.group(3))
        if f not in supported:
            raise bad_request("field label not supported: %s" % f)
        reqs.append((f, op, v))
    return FieldSelector(reqs)
