#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kvnetd never touches an address it did not add (issue 11, item 5).

The topology's VIP ranges (192.168.0.224/27, fd00:192::200/120) contain the
node's own addresses on eth1 (192.168.0.240/24, fd00:192::240/64): the easy
mistake of a range drawn inside the node's subnet. A Service whose VIP is
such an address is refused as a Conflict naming the owner; the address
keeps its prefix, lifetimes and flags through the request and the release
that follows; an operator's /32 or /128 inside a range is neither adopted
nor removed; and what kvnetd adds carries its marker (IFA_PROTO 0x6b), by
which a restarted kvnetd knows its own addresses even without its state
file. Real namespaces and the real kvnetd; needs root."""

import json
import os
import socket
import struct
import sys
import time
import unittest


import netns
from kvnet import NODE_SVC4, NODE_SVC6, POD4, POD6, VIP4, VIP6, DBusError, EgressTopology, Kvnetd, KvnetdTestCase

SVC = "default/web"
CONFLICT = "io.kvegress.Net1.Error.Conflict"
KVNETD_PROTO = 0x6B

# rtnetlink, for what iproute2 6.1 does not print: an address's IFA_PROTO.
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
IFA_ADDRESS, IFA_LOCAL, IFA_PROTO = 1, 2, 11


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (network namespaces)")


def dump_addresses(ns):
    """{(address, prefixlen, ifindex): proto} of every address in ns, read
    with an RTM_GETADDR dump by this file run inside the namespace."""
    out = ns.run("python3", os.path.abspath(__file__), "--dump").stdout
    return {(a, p, i): proto for a, p, i, proto in json.loads(out)}


def _dump_here():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    out = []
    with s:
        req = struct.pack("=LHHLL", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        s.send(req + struct.pack("=BBBBI", 0, 0, 0, 0, 0))
        done = False
        while not done:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, typ = struct.unpack_from("=LH", data, off)
                if typ in (NLMSG_DONE, NLMSG_ERROR):
                    done = True
                    break
                if typ == RTM_NEWADDR:
                    family, plen, _flags, _scope, index = struct.unpack_from("=BBBBI", data, off + 16)
                    attrs, a = {}, off + 24
                    while a + 4 <= off + length:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        attrs[atype] = data[a + 4:a + alen]
                        a += (alen + 3) & ~3
                    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
                    addr = socket.inet_ntop(family, raw)
                    proto = attrs[IFA_PROTO][0] if IFA_PROTO in attrs else 0
                    out.append((addr, plen, index, proto))
                off += (length + 3) & ~3
    return out


class ForeignAddressTest(KvnetdTestCase):
    PREFIX = "kvfa"
    KVNETD_ARGS = {"grace": "2s"}

    @classmethod
    def prepare(cls, net):
        # Someone else's addresses inside the VIP ranges: an operator's
        # host addresses on the VIP interface (there before kvnetd
        # starts), and addresses of other prefixes on other interfaces.
        node = net.node
        node.addr("eth1", "192.168.0.231/32")
        node.addr("eth1", "fd00:192::231/128")
        node.addr("eth0", "192.168.0.232/28")
        node.addr("lo", "fd00:192::232/128")

    def setUp(self):
        super().setUp()
        self.remove_all_services()

    def addresses(self):
        """Every address of the node with everything `ip` shows of it but
        the counting-down lifetimes: prefix, flags, forever or not."""
        out = {}
        for link in self.net.node.ip_json("addr", "show"):
            for a in link.get("addr_info", []):
                out[(link["ifname"], a["local"], a["prefixlen"])] = (
                    a.get("preferred_life_time"), a.get("valid_life_time"), bool(a.get("deprecated")),
                    bool(a.get("nodad")), bool(a.get("noprefixroute")), a.get("scope"))
        return out

    def refused(self, address, owner):
        with self.assertRaises(DBusError) as cm:
            self.c.grant_vip(SVC, address, "eth1")
        self.assertEqual(cm.exception.name, CONFLICT, cm.exception.message)
        self.assertIn(owner, cm.exception.message)
        self.assertIn("address", cm.exception.message)
        return cm.exception.message

    def test_the_nodes_own_addresses_are_refused_and_left_as_they_are(self):
        before = self.addresses()
        # The node's /64 and /24: kvnetd used to rewrite the /64 to
        # preferred_lft 0 (NLM_F_REPLACE matches IPv6 on the address alone)
        # and add a second, /32, IPv4 address next to the /24.
        self.refused(NODE_SVC6, f"{NODE_SVC6}/64 on eth1")
        self.refused(NODE_SVC4, f"{NODE_SVC4}/24 on eth1")
        self.assertEqual(self.addresses(), before)
        # The release a client sends after a refusal changes nothing either.
        self.c.release_vip(SVC, NODE_SVC6)
        self.c.release_vip(SVC, NODE_SVC4)
        self.c.remove_service(SVC)
        self.assertEqual(self.addresses(), before)
        self.assertEqual(self.c.list_vips(), [])

    def test_any_prefix_on_any_interface_is_refused(self):
        before = self.addresses()
        self.refused("192.168.0.232", "192.168.0.232/28 on eth0")
        self.refused("fd00:192::232", "fd00:192::232/128 on lo")
        # A host address on the VIP interface itself, in the range, that
        # kvnetd did not add: not kvnetd's either.
        msg = self.refused("192.168.0.231", "192.168.0.231/32 on eth1")
        self.assertIn("not kvnetd's", msg)
        self.refused("fd00:192::231", "fd00:192::231/128 on eth1")
        self.assertEqual(self.addresses(), before)

    def test_others_host_addresses_are_not_adopted_nor_removed(self):
        # There before kvnetd started, in range, on an allowed interface:
        # never listed as kvnetd's, and still there after the grace period
        # (2 s) and after a restart with another grace period.
        vips = [v[1] for v in self.c.list_vips()]
        self.assertNotIn("192.168.0.231", vips)
        self.assertNotIn("fd00:192::231", vips)
        self.c.close()
        self.assertEqual(self.kvnetd.stop(), 0)
        self.kvnetd.start()
        self.c = self.kvnetd.client()
        self.addCleanup(self.c.close)
        self.assertEqual(self.c.list_vips(), [])
        time.sleep(2.5)
        have = self.addresses()
        self.assertIn(("eth1", "192.168.0.231", 32), have)
        self.assertIn(("eth1", "fd00:192::231", 128), have)

    def test_its_own_addresses_carry_the_marker_and_are_known_after_a_restart_without_state(self):
        self.c.grant_vip(SVC, VIP4, "eth1")
        self.c.grant_vip(SVC, VIP6, "eth1")
        self.c.set_egress(SVC, VIP4, VIP6, [POD4, POD6])
        index = self.net.node.ip_json("link", "show", "eth1")[0]["ifindex"]
        protos = dump_addresses(self.net.node)
        self.assertEqual(protos[(VIP4, 32, index)], KVNETD_PROTO)
        self.assertEqual(protos[(VIP6, 128, index)], KVNETD_PROTO)
        self.assertEqual(protos[(NODE_SVC4, 24, index)], 0)
        self.assertEqual(protos[("192.168.0.231", 32, index)], 0)
        # A crash that loses the state file: the marker alone says which
        # addresses are kvnetd's. Adopted (unowned) for the grace period,
        # then removed; the operator's addresses stay.
        self.c.close()
        self.kvnetd.stop()
        os.unlink(os.path.join(self.kvnetd.rundir, "vips"))
        self.kvnetd.start()
        self.c = self.kvnetd.client()
        self.addCleanup(self.c.close)
        self.assertEqual(sorted(v[1] for v in self.c.list_vips()), sorted([VIP4, VIP6]))
        time.sleep(2.5)
        self.assertEqual(self.c.list_vips(), [])
        have = self.addresses()
        self.assertNotIn(("eth1", VIP4, 32), have)
        self.assertNotIn(("eth1", VIP6, 128), have)
        self.assertIn(("eth1", "192.168.0.231", 32), have)
        self.assertIn(("eth1", NODE_SVC6, 64), have)

    def test_a_vip_taken_over_while_kvnetd_was_down_is_not_its_own_any_more(self):
        # kvnetd stops (its VIP stays, its state file names it); meanwhile
        # someone replaces the VIP with their own /64 of the same address.
        # The restarted kvnetd does not adopt it (no marker), refuses the
        # client's replay as a Conflict instead of rewriting the /64 (a
        # replace would make it deprecated), and leaves it after the grace
        # period.
        self.c.grant_vip(SVC, "fd00:192::233", "eth1")
        self.c.close()
        self.assertEqual(self.kvnetd.stop(), 0)
        self.net.node.ip("addr", "del", "fd00:192::233/128", "dev", "eth1")
        self.net.node.addr("eth1", "fd00:192::233/64")
        self.addCleanup(self.net.node.ip, "addr", "del", "fd00:192::233/64", "dev", "eth1")
        with open(os.path.join(self.kvnetd.rundir, "vips")) as f:
            self.assertIn("fd00:192::233", f.read())
        before = self.addresses()
        self.kvnetd.start()
        self.c = self.kvnetd.client()
        self.addCleanup(self.c.close)
        self.assertEqual(self.c.list_vips(), [])
        self.refused("fd00:192::233", "fd00:192::233/64 on eth1")
        time.sleep(2.5)
        self.assertEqual(self.addresses(), before)

class SkipDadTest(unittest.TestCase):
    """kube-vip's vip_skipdad=true binds IPv6 VIPs with IFA_F_NODAD, as --ipv6-nodad does; without either,
    a new IPv6 VIP goes through DAD, and GrantVip is answered only once it has ended (the VIP is no longer
    tentative: kvpd moves SNAT to a new VIP only then)."""

    def setUp(self):
        self.topo = netns.Topology("kvsd")
        self.addCleanup(self.topo.cleanup)
        self.net = EgressTopology(self.topo)
        # netns.Topology turns DAD off everywhere; this test is about it.
        self.net.node.sysctl("net.ipv6.conf.eth1.accept_dad", 1)

    def flags_of_new_vip(self, env):
        k = Kvnetd(self.net.node, grace="1s")
        k.args.remove("--ipv6-nodad")
        old = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            k.start()
        finally:
            for key, v in old.items():
                if v is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = v
        try:
            with k.client() as c:
                t0 = time.monotonic()
                c.grant_vip(SVC, VIP6, "eth1")
                self.answered_after = time.monotonic() - t0
                for link in self.net.node.ip_json("addr", "show", "dev", "eth1"):
                    for a in link.get("addr_info", []):
                        if a["local"] == VIP6:
                            return {f for f in ("nodad", "tentative") if a.get(f)}
                c.remove_service(SVC)
        finally:
            self.assertEqual(k.stop(), 0)
        return None

    def test_vip_skipdad(self):
        self.assertEqual(self.flags_of_new_vip({"vip_skipdad": "true"}), {"nodad"})
        self.assertLess(self.answered_after, 0.5)

    def test_dad_by_default(self):
        # DAD: a random delay of up to 1 s (rtr_solicit_delay), then one probe and 1 s (retrans_time).
        self.assertEqual(self.flags_of_new_vip({}), set(), "answered while the VIP was still tentative")
        self.assertGreater(self.answered_after, 0.9)
        print("\nGrantVip of a new IPv6 VIP with DAD answered after %.2f s" % self.answered_after)


if __name__ == "__main__":
    if sys.argv[1:] == ["--dump"]:
        print(json.dumps(_dump_here()))
    else:
        unittest.main()
