#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fails if two C files of a folder call each other in a circle.

File A depends on file B when A names a function B defines and exports (a
call, or the function's address taken). The files of kvpd must form no
cycle: the loop (controller.c) calls the planner and the adapters, and the
adapters report back through the table they are given (kvpd/reports.h),
never by naming the loop's functions.

    check-call-cycles.py [--graph] DIR...

Prints each folder's edges with --graph; on a cycle, prints it with the
functions behind each edge and exits 1. Reads the files as text (comments,
strings and #include lines left out): no compiler is needed.
"""
import os
import re
import sys

KEYWORDS = {"if", "while", "for", "switch", "return", "sizeof", "typeof", "_Static_assert", "defined", "_Alignof"}
IDENT = re.compile(r"[A-Za-z_]\w*")


def strip(src, keep_macros):
    """The code without comments, string and character literals, and
    preprocessor lines (only #include ones when keep_macros)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    pattern = r"^[ \t]*#[ \t]*include[^\n]*" if keep_macros else r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*"
    return re.sub(pattern, "", code, flags=re.M)


def exported_functions(code):
    """Functions defined at file scope and not static: NAME(...) { at depth 0,
    and those DEFINE_STRING_TABLE_TO_STRING() defines."""
    toks = [(m.group(0), m.start()) for m in re.finditer(r"[A-Za-z_]\w*|[{}();]", code)]
    found = set()
    depth = 0
    for k, (t, pos) in enumerate(toks):
        # shared/macros.h: DEFINE_STRING_TABLE_TO_STRING(name, type, table)
        if depth == 0 and t == "DEFINE_STRING_TABLE_TO_STRING" and k + 2 < len(toks) and toks[k + 1][0] == "(":
            found.add(toks[k + 2][0])
            continue
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
        elif depth == 0 and t not in KEYWORDS and IDENT.fullmatch(t) and k + 1 < len(toks) and toks[k + 1][0] == "(":
            d, j = 0, k + 1
            while j < len(toks):
                if toks[j][0] == "(":
                    d += 1
                elif toks[j][0] == ")":
                    d -= 1
                    if d == 0:
                        break
                j += 1
            if j + 1 < len(toks) and toks[j + 1][0] == "{":
                start = max(code.rfind(";", 0, pos), code.rfind("}", 0, pos), 0)
                if not re.search(r"\bstatic\b", code[start:pos]):
                    found.add(t)
    return found


def graph(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".c"))
    text = {f: open(os.path.join(folder, f), encoding="utf-8").read() for f in files}
    owner = {}
    for f in files:
        for name in exported_functions(strip(text[f], keep_macros=False)):
            owner[name] = f
    edges = {f: {} for f in files}
    for f in files:
        for m in IDENT.finditer(strip(text[f], keep_macros=True)):
            g = owner.get(m.group(0))
            if g and g != f:
                edges[f].setdefault(g, set()).add(m.group(0))
    return files, edges


def cycles(files, edges):
    """The strongly connected components with more than one file (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for f in files:
        if f not in index:
            visit(f)
    return out


def self_test():
    """The check itself: a pair of files that call each other is a cycle."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "a.c"), "w") as f:
            f.write('static int quiet(void)\n{\n        return 0; /* b() */\n}\nint a(void)\n{\n        return b();\n}\n')
        with open(os.path.join(d, "b.c"), "w") as f:
            f.write('int b(void)\n{\n        const char *s = "a()";\n        return s ? a() : 0;\n}\n')
        files, edges = graph(d)
        assert cycles(files, edges) == [["a.c", "b.c"]], edges
        os.remove(os.path.join(d, "a.c"))
        with open(os.path.join(d, "a.c"), "w") as f:
            f.write("int a(void)\n{\n        return 1; /* b() */\n}\n")
        files, edges = graph(d)
        assert cycles(files, edges) == [], edges


def main(argv):
    self_test()
    show = "--graph" in argv
    folders = [a for a in argv if a != "--graph"]
    if not folders:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for folder in folders:
        files, edges = graph(folder)
        n_edges = sum(len(e) for e in edges.values())
        if show:
            for f in files:
                for g, names in sorted(edges[f].items()):
                    print(f"  {f} -> {g}: {', '.join(sorted(names))}")
        found = cycles(files, edges)
        name = os.path.basename(os.path.normpath(folder))
        if not found:
            print(f"{name}: {len(files)} files, {n_edges} file-to-file dependencies, no call cycle")
            continue
        failed = True
        for comp in found:
            print(f"{name}: call cycle between {', '.join(comp)}:")
            for f in comp:
                for g in sorted(edges[f]):
                    if g in comp:
                        print(f"  {f} -> {g}: {', '.join(sorted(edges[f][g]))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
