#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fails if a C file of the tree is not formatted as .clang-format says.

    check-format.py SOURCE_ROOT

Runs clang-format --dry-run on every .c and .h file below the source
folders and names the files it would change. To fix them:

    clang-format -i $(git ls-files '*.c' '*.h')
"""
import os
import shutil
import subprocess
import sys

FOLDERS = ["kvpd", "kvnetd", "kvelectd", "kvctl", "shared", "tests"]


def c_files(root):
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.endswith((".c", ".h")):
                    yield os.path.join(dirpath, f)


def main(argv):
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = argv[0]
    tool = shutil.which("clang-format")
    if not tool:
        print("check-format: clang-format is not installed (tools/setup.sh installs it)", file=sys.stderr)
        return 1
    files = list(c_files(root))
    bad = []
    for i in range(0, len(files), 50):
        chunk = files[i : i + 50]
        p = subprocess.run([tool, "--style=file", "--dry-run", "--Werror"] + chunk, cwd=root,
                           capture_output=True, text=True)
        if p.returncode == 0:
            continue
        for f in chunk:
            if f + ":" in p.stderr:
                bad.append(os.path.relpath(f, root))
        if not bad:
            print(p.stderr, file=sys.stderr)
            return 1
    if bad:
        print(f"check-format: {len(bad)} of {len(files)} C files are not formatted as .clang-format says:")
        for f in bad:
            print(f"  {f}")
        print("fix: clang-format -i " + " ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        return 1
    print(f"check-format: {len(files)} C files formatted as .clang-format says")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
