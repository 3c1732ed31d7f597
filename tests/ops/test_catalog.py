#!/usr/bin/env python3
"""The journal catalogue: every MESSAGE_ID in shared/catalog.h has an entry in systemd/kvegress.catalog and the
other way round, each id is used by a log site in the daemons, and journalctl itself compiles the file (into a
root of our own: journalctl --root=DIR --update-catalog) and lists every entry with its subject.

  python3 tests/ops/test_catalog.py SOURCE_ROOT
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))


def header_ids():
    with open(os.path.join(SRC, "shared", "catalog.h")) as f:
        return dict(re.findall(r'#define (KVEGRESS_MESSAGE_\w+) "MESSAGE_ID=([0-9a-f]{32})"', f.read()))


def catalog_entries():
    with open(os.path.join(SRC, "systemd", "kvegress.catalog")) as f:
        text = f.read()
    return dict(re.findall(r"(?m)^-- ([0-9a-f]{32})\nSubject: (.+)$", text))


class Catalog(unittest.TestCase):
    def test_ids_match(self):
        ids = header_ids()
        self.assertGreaterEqual(len(ids), 11, ids)
        self.assertEqual(len(set(ids.values())), len(ids), "an id is used twice")
        self.assertEqual(set(ids.values()), set(catalog_entries()), "catalog.h and kvegress.catalog differ")

    def test_every_id_is_logged(self):
        code = ""
        for path in glob.glob(os.path.join(SRC, "kv*", "*.c")):
            with open(path) as f:
                code += f.read()
        unused = [name for name in header_ids() if name not in code]
        self.assertEqual(unused, [], "ids no log site uses")

    def test_journalctl_compiles_it(self):
        if not shutil.which("journalctl"):
            self.skipTest("journalctl is not installed")
        root = tempfile.mkdtemp(prefix="kvegress-catalog-")
        try:
            os.makedirs(os.path.join(root, "usr/lib/systemd/catalog"))
            os.makedirs(os.path.join(root, "var/lib/systemd/catalog"))
            shutil.copy(os.path.join(SRC, "systemd", "kvegress.catalog"), os.path.join(root, "usr/lib/systemd/catalog"))
            p = subprocess.run(["journalctl", "--root", root, "--update-catalog"], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stderr.strip(), "", "journalctl complained about the catalogue")
            p = subprocess.run(["journalctl", "--root", root, "--list-catalog"], capture_output=True, text=True)
            listed = dict(l.split(" ", 1) for l in p.stdout.splitlines() if l.strip())
            for mid, subject in catalog_entries().items():
                self.assertEqual(listed.get(mid), "kvegress: " + subject)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
