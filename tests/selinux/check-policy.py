#!/usr/bin/env python3
"""Builds the SELinux module, links it into a copy of the system policy store
with neverallow checking on (Debian's default expand-check=0 would hide
violations), and asserts what each domain may do with sesearch.

This kernel has no SELinux enforcement (selinux is not in CONFIG_LSM), so
this is a compile/link/query check, not a runtime one.

usage: check-policy.py SELINUX_SOURCE_DIR
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.path.abspath(sys.argv[1])
DEVEL_MAKEFILE = "/usr/share/selinux/devel/Makefile"


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


class Policy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for need in (DEVEL_MAKEFILE, "/var/lib/selinux/default", "/etc/selinux/default"):
            if not os.path.exists(need):
                raise unittest.SkipTest(f"{need} missing (selinux-policy-dev, selinux-policy-default)")
        for tool in ("semodule", "sesearch", "make"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="kvegress-selinux-")
        build = os.path.join(cls.tmp, "build")
        os.mkdir(build)
        for f in glob.glob(os.path.join(SRC, "kvegress.*")):
            shutil.copy(f, build)
        run(["make", "-f", DEVEL_MAKEFILE, "kvegress.pp"], cwd=build)
        cls.pp = os.path.join(build, "kvegress.pp")

        root = os.path.join(cls.tmp, "root")
        os.makedirs(os.path.join(root, "var/lib"))
        os.makedirs(os.path.join(root, "etc"))
        shutil.copytree("/var/lib/selinux", os.path.join(root, "var/lib/selinux"), symlinks=True)
        shutil.copytree("/etc/selinux", os.path.join(root, "etc/selinux"), symlinks=True)
        conf = os.path.join(root, "etc/selinux/semanage.conf")
        with open(conf) as f:
            text = f.read()
        text = text.replace("expand-check=0", "expand-check=1")
        if "expand-check=1" not in text:
            text += "\nexpand-check=1\n"
        with open(conf, "w") as f:
            f.write(text)
        run(["semodule", "-p", root, "-s", "default", "-n", "-i", cls.pp])
        policies = sorted(glob.glob(os.path.join(root, "etc/selinux/default/policy/policy.*")))
        assert policies, "no linked policy"
        cls.policy = policies[-1]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def search(self, *args):
        return run(["sesearch", *args, self.policy])

    def test_daemons_start_in_their_domains(self):
        for d in ("kvnetd", "kvelectd", "kvpd"):
            out = self.search("-T", "-s", "init_t", "-t", f"{d}_exec_t", "-c", "process")
            self.assertIn(f"{d}_t", out, f"init does not transition to {d}_t:\n{out}")

    def test_only_kvnetd_has_network_capabilities(self):
        out = self.search("-A", "-s", "kvnetd_t", "-c", "capability")
        self.assertIn("net_admin", out)
        self.assertIn("net_raw", out)
        for forbidden in ("sys_admin", "sys_module", "dac_override", "setuid"):
            self.assertNotIn(forbidden, out)
        for d in ("kvpd_t", "kvelectd_t"):
            out = self.search("-A", "-s", d, "-c", "capability")
            self.assertEqual(out.strip(), "", f"{d} has capabilities:\n{out}")

    def test_only_kvnetd_changes_the_network(self):
        for cls in ("netlink_netfilter_socket", "packet_socket"):
            out = self.search("-A", "-s", "kvnetd_t", "-c", cls, "-p", "create")
            self.assertIn("kvnetd_t", out, cls)
            for d in ("kvpd_t", "kvelectd_t"):
                out = self.search("-A", "-s", d, "-c", cls, "-p", "create")
                self.assertEqual(out.strip(), "", f"{d} may create {cls}:\n{out}")
        out = self.search("-A", "-s", "kvnetd_t", "-c", "netlink_route_socket", "-p", "nlmsg_write")
        self.assertIn("nlmsg_write", out)
        # The resolver reads rtnetlink (getaddrinfo's AI_ADDRCONFIG); writing
        # it is kvnetd's alone.
        for d in ("kvpd_t", "kvelectd_t"):
            out = self.search("-A", "-s", d, "-c", "netlink_route_socket", "-p", "nlmsg_write")
            self.assertEqual(out.strip(), "", f"{d} may write rtnetlink:\n{out}")

    def test_kvnetd_has_no_tcp(self):
        out = self.search("-A", "-s", "kvnetd_t", "-c", "tcp_socket", "-p", "create")
        self.assertEqual(out.strip(), "", out)

    def test_kvpd_is_the_client_of_both_sockets(self):
        for d in ("kvnetd", "kvelectd"):
            out = self.search("-A", "-s", "kvpd_t", "-t", f"{d}_t", "-c", "unix_stream_socket", "-p", "connectto")
            self.assertIn("connectto", out, d)
        out = self.search("-A", "-s", "kvelectd_t", "-t", "kvnetd_t", "-c", "unix_stream_socket", "-p", "connectto")
        self.assertEqual(out.strip(), "", "kvelectd may connect to kvnetd")

    def test_api_clients_reach_https(self):
        for d in ("kvpd_t", "kvelectd_t"):
            out = self.search("-A", "-s", d, "-t", "http_port_t", "-c", "tcp_socket", "-p", "name_connect")
            self.assertIn("name_connect", out, d)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
