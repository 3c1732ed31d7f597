#!/usr/bin/env python3
"""Static checks of the systemd units, offline (systemd is not PID 1 here):
- `systemd-analyze verify` accepts each unit (with ExecStart pointed at the
  built binaries, since verify insists the binary exists);
- `systemd-analyze security --offline=true` scores each service at or below
  its budget (hardening-and-tooling.md, 2.2);
- every capability named is a real one (verify does not catch a misspelled
  capability: it silently yields an empty set) and carries a comment saying
  what needs it.

usage: check-units.py SOURCE_SYSTEMD_DIR BUILD_DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC, BUILD = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
# Exposure budgets, score x 10 (systemd-analyze's --threshold is an integer).
BUDGET = {"kvnetd.service": 15, "kvelectd.service": 12, "kvpd.service": 12, "kvegress-metrics@.service": 12}
KNOWN_CAPS = {"CAP_NET_ADMIN", "CAP_NET_RAW"}


def prepared_units(tmp):
    for name in os.listdir(SRC):
        if not name.endswith((".service", ".socket", ".target")):
            continue
        with open(os.path.join(SRC, name)) as f:
                text = f.read()
        for d in ("kvnetd", "kvelectd", "kvpd"):
            text = text.replace(f"/usr/sbin/{d}", os.path.join(BUILD, d, d))
        text = text.replace("/usr/bin/kvctl", os.path.join(BUILD, "kvctl", "kvctl"))
        with open(os.path.join(tmp, name), "w") as f:
            f.write(text)
    return tmp


class Units(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("systemd-analyze"):
            raise unittest.SkipTest("systemd-analyze is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="kvegress-units-")
        prepared_units(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_verify(self):
        for name in sorted(os.listdir(self.tmp)):
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(self.tmp, name)],
                               capture_output=True, text=True, cwd=self.tmp)
            # Messages about units we do not ship (sockets.target deps on the
            # host) are not ours; anything naming our unit is.
            ours = [l for l in (p.stdout + p.stderr).splitlines() if name in l]
            self.assertEqual(ours, [], f"{name}: {ours}")

    def test_security_budget(self):
        for name, budget in BUDGET.items():
            p = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--threshold={budget}",
                                os.path.join(self.tmp, name)], capture_output=True, text=True, cwd=self.tmp)
            score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
            self.assertIsNotNone(score, p.stdout + p.stderr)
            print(f"{name}: exposure {score.group(1)} (budget {budget / 10})")
            self.assertEqual(p.returncode, 0, f"{name} exposure {score.group(1)} over budget {budget / 10}")

    def test_capabilities_are_real_and_explained(self):
        for name in BUDGET:
            with open(os.path.join(SRC, name)) as f:
                text = f.read()
            lines = text.splitlines()
            for i, line in enumerate(lines):
                m = re.match(r"(CapabilityBoundingSet|AmbientCapabilities)=(.*)", line)
                if not m:
                    continue
                caps = m.group(2).split()
                for c in caps:
                    self.assertIn(c, KNOWN_CAPS, f"{name}: unknown capability {c}")
                    # The comment block above the capability lines names each one.
                    comments = "\n".join(l for l in lines[:i] if l.startswith("#"))
                    self.assertIn(c, comments, f"{name}: {c} has no comment saying what needs it")

    def test_only_kvnetd_has_capabilities(self):
        for name in ("kvelectd.service", "kvpd.service", "kvegress-metrics@.service"):
            with open(os.path.join(SRC, name)) as f:
                text = f.read()
            self.assertRegex(text, r"(?m)^CapabilityBoundingSet=$")
            self.assertRegex(text, r"(?m)^AmbientCapabilities=$")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
