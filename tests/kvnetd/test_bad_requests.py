#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A peer with the right credentials sending hostile requests to kvnetd, and
peers with the wrong ones (issue 11, item 4; the ordinary malformed fields
are in test_kvnetd_netns.py's RequestValidationTest).

One topology and one kvnetd for every case. A Service "default/good" has
its VIP and SNAT in place throughout; each case asserts a clear error that
names the field (or a closed connection, for what is not D-Bus at all),
then that kvnetd still serves, that default/good's state and rules are
unchanged and that nothing of the hostile request reached the kernel. At
the end, default/good's pod is still seen with its VIP by the external
host. Real namespaces; needs root."""

import os
import re
import socket
import struct
import subprocess
import time
import unittest


import netns
from dbus_p2p import METHOD_CALL, Connection, marshal
from kvnet import (EXT4, POD4, POD4_B, POD_CIDRS, SVC_CIDRS, VIP4, VIP4_B, DBusError,
                   KvnetdTestCase, mono_usec)

PATH, IFACE = "/io/kvegress/Net1", "io.kvegress.Net1"
GOOD = "default/good"
INVALID = "org.freedesktop.DBus.Error.InvalidArgs"
CONFLICT = "io.kvegress.Net1.Error.Conflict"
LIMIT = "io.kvegress.Net1.Error.LimitExceeded"


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (network namespaces)")


# (case, method, signature, args as a function of the deadline, error name,
#  text the message must contain). Every one is a well-formed D-Bus call
# from an admitted peer.
def _d(ttl=60):
    return mono_usec() + int(ttl * 1e6)


SVC = "default/evil"
CALLS = [
    ("nft text in the service key", "GrantVip", "ssst",
     lambda: (SVC + ";flush ruleset", VIP4_B, "eth1", _d()), INVALID, "service:"),
    ("a newline in the key (state file injection)", "GrantVip", "ssst",
     lambda: ("default/evil\nvip 192.168.0.250 eth1 0 default/x", VIP4_B, "eth1", _d()), INVALID, "service:"),
    ("a path in the key", "GrantVip", "ssst", lambda: ("../../etc/passwd", VIP4_B, "eth1", _d()), INVALID,
     "service:"),
    ("a key of three parts", "GrantVip", "ssst", lambda: ("default/evil/x", VIP4_B, "eth1", _d()), INVALID,
     "service:"),
    ("an IPv4-mapped IPv6 VIP", "GrantVip", "ssst", lambda: (SVC, "::ffff:192.168.0.246", "eth1", _d()),
     INVALID, "address:"),
    ("a VIP with a zone", "GrantVip", "ssst", lambda: (SVC, "fd00:192::246%eth1", "eth1", _d()), INVALID,
     "address:"),
    ("a VIP with spaces", "GrantVip", "ssst", lambda: (SVC, " 192.168.0.246", "eth1", _d()), INVALID,
     "address:"),
    ("the network address of a range as /27", "GrantVip", "ssst",
     lambda: (SVC, "192.168.0.224/27", "eth1", _d()), INVALID, "address:"),
    ("an interface name with a newline", "GrantVip", "ssst", lambda: (SVC, VIP4_B, "eth1\n", _d()), INVALID,
     "ifname:"),
    ("an interface name of 16 bytes", "GrantVip", "ssst", lambda: (SVC, VIP4_B, "e" * 16, _d()), INVALID,
     "ifname:"),
    ("the largest deadline", "GrantVip", "ssst", lambda: (SVC, VIP4_B, "eth1", 2 ** 64 - 1), INVALID,
     "deadline_usec:"),
    ("a deadline of 0", "GrantVip", "ssst", lambda: (SVC, VIP4_B, "eth1", 0), INVALID, "deadline_usec:"),
    ("another service's VIP", "GrantVip", "ssst", lambda: (SVC, VIP4, "eth1", _d()), CONFLICT,
     "granted to service default/good"),
    ("the node's own address", "GrantVip", "ssst", lambda: (SVC, "192.168.0.240", "eth1", _d()), CONFLICT,
     "192.168.0.240/24 on eth1"),
    ("renewing another service's grant past the bound", "RenewGrant", "st", lambda: (GOOD, _d(10 ** 6)),
     INVALID, "deadline_usec:"),
    ("releasing another service's VIP", "ReleaseVip", "ss", lambda: (SVC, VIP4), "io.kvegress.Net1.Error.NotGranted",
     "not granted to default/evil"),
    ("nft text in a network", "SetEgress", "sssasa(sq)asasas",
     lambda: (GOOD, VIP4, "", [POD4, "10.244.1.7"], [], [], [], ["10.0.0.0/8 ; flush"]), INVALID, "excluded[0]:"),
    ("a port protocol in capitals", "SetEgress", "sssasa(sq)asasas",
     lambda: (GOOD, VIP4, "", [POD4], [("TCP", 80)], [], [], []), INVALID, "ports[0]:"),
    ("a pod address that is a network", "SetEgress", "sssasa(sq)asasas",
     lambda: (GOOD, VIP4, "", ["10.244.1.0/24"], [], [], [], []), INVALID, "pods[0]:"),
    ("a denied network with host bits and a huge prefix", "SetEgress", "sssasa(sq)asasas",
     lambda: (GOOD, VIP4, "", [POD4], [], [], ["10.0.0.1/4294967328"], []), INVALID, "denied[0]:"),
    ("an allowed network of 100 kB", "SetEgress", "sssasa(sq)asasas",
     lambda: (GOOD, VIP4, "", [POD4], [], ["1" * 100000], [], []), LIMIT, "allowed[0]:"),
    ("a signature with a file descriptor", "GrantVip", "ssh", lambda: (SVC, VIP4_B, 0), INVALID, ""),
]


class BadRequestsTest(KvnetdTestCase):
    PREFIX = "kvbr"

    @classmethod
    def started(cls):
        with cls.kvnetd.client() as c:
            c.grant_vip(GOOD, VIP4, "eth1", ttl=280)
            c.set_egress(GOOD, VIP4, "", [POD4], excluded=POD_CIDRS + SVC_CIDRS)

    def setUp(self):
        super().setUp()
        self.c.renew(GOOD, ttl=280)
        self.vips_before = self.c.list_vips()
        self.egress_before = self.c.list_egress()
        self.table_before = self.table()

    def tearDown(self):
        super().tearDown()
        with self.kvnetd.client() as c:
            self.assertEqual([v[:3] for v in c.list_vips()], [v[:3] for v in self.vips_before])
            self.assertEqual(c.list_egress(), self.egress_before)
        self.assertEqual(self.table(), self.table_before)
        self.assertNotIn("192.168.0.246", [a[0] for a in self.net.node.addresses("eth1")])

    def table(self):
        out = self.net.node.run("nft", "-a", "list", "table", "inet", "kvegress").stdout
        return re.sub(r"packets \d+ bytes \d+", "", out)

    def test_hostile_calls_from_an_admitted_peer(self):
        for case, member, sig, args, name, text in CALLS:
            with self.subTest(case):
                with self.assertRaises(DBusError) as cm:
                    self.c.call(PATH, IFACE, member, sig, *args())
                self.assertEqual(cm.exception.name, name, f"{case}: {cm.exception.message}")
                self.assertIn(text, cm.exception.message, case)
                self.c.list_vips()  # the same connection still serves

    def test_unknown_object_interface_and_method(self):
        for path, iface, member in (("/", IFACE, "ListVips"), (PATH, "org.example.Evil", "ListVips"),
                                    (PATH, IFACE, "FlushRuleset"),
                                    (PATH, "org.freedesktop.DBus.Properties", "Set")):
            with self.subTest(path=path, iface=iface, member=member):
                with self.assertRaises(DBusError) as cm:
                    self.c.call(path, iface, member)
                self.assertTrue(cm.exception.name.startswith("org.freedesktop.DBus.Error."), cm.exception.name)
        self.c.list_vips()

    def raw_session(self, payload):
        """Authenticates as an admitted peer, sends payload as it is, and
        returns what came back before kvnetd closed the connection (or
        after 2 s of silence)."""
        c = Connection(self.kvnetd.socket, timeout=5)
        got = b""
        try:
            c.sock.sendall(payload)
            c.sock.settimeout(2)
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionError, OSError):
            pass
        finally:
            c.close()
        return got

    def header(self, body_len, fields_sig_ok=True, endian=b"l", version=1, serial=1):
        fields = marshal("a(yv)", [[(1, ("o", PATH)), (2, ("s", IFACE)), (3, ("s", "ListVips"))]])
        head = struct.pack("<cBBBII", endian, METHOD_CALL, 0, version, body_len, serial) + fields
        return head + b"\0" * (-len(head) % 8)

    def test_malformed_wire_messages_close_only_that_connection(self):
        cases = {
            "a body longer than sent": self.header(1000) + b"x" * 10,
            "a body of 200 MB announced": self.header(200 * 1024 * 1024) + b"x" * 4096,
            "protocol version 2": self.header(0, version=2),
            "an unknown byte order": self.header(0, endian=b"X"),
            "serial 0": self.header(0, serial=0),
            "garbage": os.urandom(4096),
        }
        for case, payload in cases.items():
            with self.subTest(case):
                t0 = time.monotonic()
                self.raw_session(payload)
                # kvnetd still serves everyone else, at once.
                with self.kvnetd.client() as c:
                    c.list_vips()
                self.assertLess(time.monotonic() - t0, 10, case)
        # A string without its NUL and one with a NUL inside: refused.
        for case, s in (("a NUL inside a string", b"default/good\0evil"),):
            with self.subTest(case):
                with self.assertRaises((DBusError, ConnectionError, OSError)):
                    with Connection(self.kvnetd.socket, timeout=5) as c:
                        c.call(PATH, IFACE, "RemoveService", "s", s)

    def test_a_peer_claiming_another_uid_is_judged_by_its_real_one(self):
        # nobody claims uid 0 in its EXTERNAL AUTH line: kvnetd goes by
        # SO_PEERCRED, so it is refused and nothing is read from it.
        code = ("import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5)\n"
                f"s.connect({self.kvnetd.socket!r})\n"
                "s.sendall(b'\\0AUTH EXTERNAL 30\\r\\nBEGIN\\r\\n')\n"
                "try:\n    print(s.recv(100))\nexcept Exception as e:\n    print('error', e)\n")
        p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "python3",
                            "-c", code], capture_output=True, text=True, timeout=30)
        self.assertNotIn("OK", p.stdout, p.stdout + p.stderr)
        self.assertIn("not in the allowed uids/gids", self.kvnetd.read_log())
        # A peer that never authenticates does not hold kvnetd up.
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(self.kvnetd.socket)
        try:
            with self.kvnetd.client() as c:
                c.list_vips()
        finally:
            idle.close()

    def test_zz_the_good_service_still_leaves_with_its_vip(self):
        self.assertEqual(netns.probe(self.net.pod, "tcp", EXT4, 8080, src=POD4), VIP4)
        self.assertNotEqual(netns.probe(self.net.pod, "tcp", EXT4, 8080, src=POD4_B), VIP4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
