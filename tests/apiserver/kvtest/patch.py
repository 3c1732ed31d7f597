"""PATCH support: JSON merge patch (RFC 7386), JSON patch (RFC 6902), a good-enough strategic merge
patch, and a minimal YAML subset parser for apply-patch+yaml bodies."""
import json
import re

from .errors import ApiError, bad_request
from .util import deepcopy_json

# ---------------------------------------------------------------- RFC 7386


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return deepcopy_json(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out

# ---------------------------------------------------------------- RFC 6902


def _unesc(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def _split_ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "invalid JSON pointer: %s" % path, "Invalid")
    return [_unesc(t) for t in path[1:].split("/")]


def _container(doc, toks, path):
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise ApiError(422, "doc is missing path: \"%s\": missing value" % path, "Invalid")
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise ApiError(422, "doc is missing path: \"%s\": missing value" % path, "Invalid")
        else:
            raise ApiError(422, "doc is missing path: \"%s\": missing value" % path, "Invalid")
    return cur


def _get(doc, path):
    toks = _split_ptr(path)
    if not toks:
        return doc
    c = _container(doc, toks, path)
    t = toks[-1]
    try:
        if isinstance(c, dict):
            return c[t]
        return c[int(t)]
    except (KeyError, ValueError, IndexError, TypeError):
        raise ApiError(422, "doc is missing path: \"%s\": missing value" % path, "Invalid")


def _add(doc, path, val):
    toks = _split_ptr(path)
    if not toks:
        return val
    c = _container(doc, toks, path)
    t = toks[-1]
    if isinstance(c, dict):
        c[t] = val
    elif isinstance(c, list):
        if t == "-":
            c.append(val)
        else:
            try:
                i = int(t)
            except ValueError:
                raise ApiError(422, "add operation does not apply: doc is missing path: \"%s\": missing value"
                               % path, "Invalid")
            if i < 0 or i > len(c):
                raise ApiError(422, "add operation does not apply: doc is missing path: \"%s\": missing value"
                               % path, "Invalid")
            c.insert(i, val)
    else:
        raise ApiError(422, "add operation does not apply: doc is missing path: \"%s\": missing value" % path,
                       "Invalid")
    return doc


def _remove(doc, path):
    toks = _split_ptr(path)
    c = _container(doc, toks, path)
    t = toks[-1]
    try:
        if isinstance(c, dict):
            return c.pop(t)
        return c.pop(int(t))
    except (KeyError, ValueError, IndexError, TypeError, AttributeError):
        raise ApiError(422, "remove operation does not apply: doc is missing path: \"%s\": missing value" % path,
                       "Invalid")


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = deepcopy_json(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Operation")
        kind = op.get("op")
        path = op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, deepcopy_json(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _split_ptr(path):
                _remove(doc, path)
            doc = _add(doc, path, deepcopy_json(op.get("value")))
        elif kind == "move":
            v = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, v)
        elif kind == "copy":
            v = deepcopy_json(_get(doc, op.get("from", "")))
            doc = _add(doc, path, v)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, "testing value %s failed: test failed" % path, "Invalid")
        else:
            raise ApiError(422, "Unexpected kind: %s" % kind, "Invalid")
    return doc

# ---------------------------------------------------------------- strategic merge patch

_PRIMITIVE_MERGE = {"finalizers"}


def _merge_key(path, field, items):
    parent = path[-1] if path else ""
    if field in ("containers", "initContainers", "ephemeralContainers", "env", "volumes", "imagePullSecrets",
                 "hostAliases_never"):
        return "name"
    if field == "volumeMounts":
        return "mountPath"
    if field == "ports":
        if parent in ("containers", "initContainers", "ephemeralContainers"):
            return "containerPort"
        if path == ("spec",):
            return "port"
        return None
    if field == "conditions" and parent == "status":
        return "type"
    if field == "addresses" and path == ("status",):
        return "type"
    if field == "ownerReferences":
        return "uid"
    if field in ("podIPs", "hostIPs"):
        return "ip"
    if field == "hostAliases":
        return "ip"
    if field == "topologySpreadConstraints":
        return "topologyKey"
    return None


def strategic_merge(target, patch, path=()):
    if not isinstance(patch, dict):
        return deepcopy_json(patch)
    if not isinstance(target, dict):
        target = {}
    if patch.get("$patch") == "replace":
        p = {k: v for k, v in patch.items() if k != "$patch"}
        return deepcopy_json(p)
    if patch.get("$patch") == "delete":
        return None
    out = dict(target)
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            if isinstance(out.get(f), list) and isinstance(v, list):
                out[f] = [x for x in out[f] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
            continue
        cur = out.get(k)
        if isinstance(v, dict):
            r = strategic_merge(cur, v, path + (k,))
            if r is None:
                out.pop(k, None)
            else:
                out[k] = r
        elif isinstance(v, list):
            out[k] = _merge_list(cur, v, path, k)
        else:
            out[k] = v
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(cur, patch, path, field):
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [deepcopy_json(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    if field in _PRIMITIVE_MERGE and isinstance(cur, list):
        out = list(cur)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    mk = _merge_key(path, field, patch)
    if not mk or not isinstance(cur, list):
        return [deepcopy_json(x) for x in patch if not (isinstance(x, dict) and x.get("$patch") == "delete")]
    out = [deepcopy_json(x) for x in cur]
    for item in patch:
        if not isinstance(item, dict):
            continue
        key = item.get(mk)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(mk) == key), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item, path + (field,)))
        else:
            out[idx] = strategic_merge(out[idx], item, path + (field,))
    return out

# ---------------------------------------------------------------- minimal YAML subset


class YamlError(Exception):
    pass


def _scalar(s):
    s = s.strip()
    if s == "" or s in ("~", "null", "Null", "NULL"):
        return None
    if s[0] in "\"'":
        if s[0] == '"':
            try:
                return json.loads(s)
            except ValueError:
                raise YamlError("bad double-quoted scalar: %s" % s)
        if not s.endswith("'"):
            raise YamlError("bad single-quoted scalar: %s" % s)
        return s[1:-1].replace("''", "'")
    if s[0] in "[{":
        return _flow(s)
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if re.match(r"^[-+]?[0-9]+$", s):
        return int(s)
    if re.match(r"^0x[0-9a-fA-F]+$", s):
        return int(s, 16)
    if re.match(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$", s):
        return float(s)
    return s


def _flow(s):
    try:
        return json.loads(s)
    except ValueError:
        pass
    pos = [0]

    def ws():
        while pos[0] < len(s) and s[pos[0]] in " \t\n":
            pos[0] += 1

    def val():
        ws()
        c = s[pos[0]]
        if c == "[":
            pos[0] += 1
            out = []
            ws()
            if s[pos[0]] == "]":
                pos[0] += 1
                return out
            while True:
                out.append(val())
                ws()
                if s[pos[0]] == ",":
                    pos[0] += 1
                    continue
                if s[pos[0]] == "]":
                    pos[0] += 1
                    return out
                raise YamlError("bad flow sequence")
        if c == "{":
            pos[0] += 1
            out = {}
            ws()
            if s[pos[0]] == "}":
                pos[0] += 1
                return out
            while True:
                ws()
                k = tok(":")
                pos[0] += 1
                out[str(_scalar(k))] = val()
                ws()
                if s[pos[0]] == ",":
                    pos[0] += 1
                    continue
                if s[pos[0]] == "}":
                    pos[0] += 1
                    return out
                raise YamlError("bad flow mapping")
        return _scalar(tok(",]}"))

    def tok(stops):
        ws()
        start = pos[0]
        if s[start] in "\"'":
            q = s[start]
            i = start + 1
            while i < len(s):
                if s[i] == "\\" and q == '"':
                    i += 2
                    continue
                if s[i] == q:
                    if q == "'" and i + 1 < len(s) and s[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            pos[0] = i + 1
            return s[start:i + 1]
        while pos[0] < len(s) and s[pos[0]] not in stops:
            pos[0] += 1
        return s[start:pos[0]]
    try:
        return val()
    except (IndexError, YamlError):
        raise YamlError("bad flow collection: %s" % s)


def _strip_comment(line):
    out, q = [], None
    for i, ch in enumerate(line):
        if q:
            if ch == q:
                q = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " \t:[{,-"):
            q = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def _split_kv(text):
    """Split 'key: value' honouring quoted keys; returns (key, rest) or None."""
    if text[:1] in "\"'":
        q = text[0]
        end = text.find(q, 1)
        while q == "'" and end != -1 and end + 1 < len(text) and text[end + 1] == "'":
            end = text.find(q, end + 2)
        if end == -1:
            return None
        key = _scalar(text[:end + 1])
        rest = text[end + 1:]
        if rest.startswith(":") and (len(rest) == 1 or rest[1] in " \t"):
            return str(key), rest[1:].strip()
        return None
    m = re.match(r"^([^:#{}\[\],][^:]*?|[^\s:]+?):(\s+(.*))?$", text)
    if not m or text[:1] in "[{":
        return None
    return m.group(1).strip(), (m.group(3) or "").strip()


def yaml_load(text):
    raw = text.replace("\r\n", "\n").split("\n")
    docs, cur = [], []
    for ln in raw:
        if ln.strip() == "---" or ln.startswith("--- "):
            if cur:
                docs.append(cur)
            cur = []
            continue
        if ln.strip() == "...":
            break
        cur.append(ln)
    docs.append(cur)
    lines = next((d for d in docs if any(x.strip() and not x.strip().startswith("#") for x in d)), [])
    items = []  # (indent, text, rawline)
    for ln in lines:
        if "\t" in ln[:len(ln) - len(ln.lstrip())]:
            raise YamlError("found character that cannot start any token (tab)")
        items.append((len(ln) - len(ln.lstrip(" ")), ln))
    pos = [0]

    def skip_blank():
        while pos[0] < len(items):
            s = _strip_comment(items[pos[0]][1])
            if s.strip():
                return True
            pos[0] += 1
        return False

    def block_scalar(indicator, parent_indent):
        fold = indicator.startswith(">")
        chomp = "keep" if "+" in indicator else ("strip" if "-" in indicator else "clip")
        body, ind = [], None
        while pos[0] < len(items):
            ind0, ln = items[pos[0]]
            if ln.strip() == "":
                body.append("")
                pos[0] += 1
                continue
            if ind is None:
                if ind0 <= parent_indent:
                    break
                ind = ind0
            if ind0 < ind:
                break
            body.append(ln[ind:])
            pos[0] += 1
        while chomp != "keep" and body and body[-1] == "":
            body.pop()
        if fold:
            s, prev_blank = "", True
            for b in body:
                if b == "":
                    s += "\n"
                    prev_blank = True
                else:
                    s += ("" if prev_blank else " ") + b
                    prev_blank = False
        else:
            s = "\n".join(body)
        if chomp != "strip" and body:
            s += "\n"
        return s

    def parse_value_after(rest, indent):
        if rest.startswith("|") or rest.startswith(">"):
            return block_scalar(rest, indent)
        if rest == "":
            if not skip_blank():
                return None
            ind, ln = items[pos[0]]
            s = _strip_comment(ln).strip()
            if ind > indent or (ind == indent and s.startswith("- ") or s == "-") and ind >= indent:
                if ind == indent and not (s.startswith("-")):
                    return None
                return parse_node(ind)
            return None
        return _scalar(rest)

    def parse_node(indent):
        skip_blank()
        ind, ln = items[pos[0]]
        s = _strip_comment(ln).strip()
        if s.startswith("- ") or s == "-":
            return parse_seq(ind)
        if _split_kv(s) is None:
            # multi-line plain scalar
            parts = []
            while pos[0] < len(items) and items[pos[0]][0] >= indent and _strip_comment(items[pos[0]][1]).strip():
                parts.append(_strip_comment(items[pos[0]][1]).strip())
                pos[0] += 1
            return _scalar(" ".join(parts))
        return parse_map(ind)

    def parse_map(indent, first=None):
        out = {}
        while True:
            if first is not None:
                s, first = first, None
            else:
                if not skip_blank():
                    break
                ind, ln = items[pos[0]]
                if ind < indent:
                    break
                if ind > indent:
                    raise YamlError("bad indentation of a mapping entry")
                s = _strip_comment(ln).strip()
                if s.startswith("- ") or s == "-":
                    break
                pos[0] += 1
            kv = _split_kv(s)
            if kv is None:
                raise YamlError("could not find expected ':' in %r" % s)
            k, rest = kv
            out[k] = parse_value_after(rest, indent)
        return out

    def parse_seq(indent):
        out = []
        while skip_blank():
            ind, ln = items[pos[0]]
            s = _strip_comment(ln).strip()
            if ind != indent or not (s.startswith("- ") or s == "-"):
                break
            pos[0] += 1
            rest = s[1:].strip()
            if rest == "":
                out.append(parse_value_after("", indent))
                continue
            item_indent = ind + (len(ln) - len(ln.lstrip(" ")) - ind) + 2
            # compute real column of the rest
            col = ln.index("-") + 1
            while col < len(ln) and ln[col] == " ":
                col += 1
            if rest.startswith("- "):
                # nested sequence on same line: re-inject
                items.insert(pos[0], (col, " " * col + rest))
                out.append(parse_seq(col))
                continue
            kv = _split_kv(rest)
            if kv is not None and not rest.startswith(("\"", "'")) or (kv is not None and rest[:1] in "\"'"):
                out.append(parse_map(col, first=rest))
            elif rest.startswith("|") or rest.startswith(">"):
                out.append(block_scalar(rest, ind))
            else:
                out.append(_scalar(rest))
            del item_indent
        return out

    if not skip_blank():
        return None
    return parse_node(items[pos[0]][0])


def parse_apply_body(body):
    text = body.decode("utf-8", "replace")
    st = text.lstrip()
    if st.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as e:
            raise bad_request("error decoding YAML: %s" % e)
    try:
        return yaml_load(text)
    except (YamlError, IndexError) as e:
        raise bad_request("error converting YAML to JSON: yaml: %s" % e)
