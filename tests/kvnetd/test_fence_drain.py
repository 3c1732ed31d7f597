#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A kvnetd that was blocked re-reads its input before it fences anyone
(issue 10 item 2): a fence fires only after every renewal already received
has been applied.

kvnetd is stopped (SIGSTOP: the same as a loop blocked on anything) while
two grants are near their deadline; renewals for both are sent, on two
different connections, while it is stopped, and it is resumed only after
the old deadlines have passed. On resuming, the fence timer is due at once
and comes first (SD_EVENT_PRIORITY_IMPORTANT), but it drains every
connection before it fences: both Services keep their VIPs. A third grant
that nobody renewed is fenced (the fence still works). Needs root."""

import os
import signal
import time
import unittest


import netns
from dbus_p2p import METHOD_CALL, marshal
from kvnet import IFACE, PATH, KvnetClient, Kvnetd, mono_usec

VIPS = {"drain/a": "192.168.0.225", "drain/b": "192.168.0.226", "drain/lost": "192.168.0.227"}


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (network namespaces)")


class FenceDrainTest(unittest.TestCase):
    def setUp(self):
        self.topo = netns.Topology("kvfd")
        self.addCleanup(self.topo.cleanup)
        self.node, lan = self.topo.netns("node"), self.topo.netns("lan")
        self.topo.veth(self.node, "eth1", lan, "eth0")
        self.node.addr("eth1", "192.168.0.240/24")
        lan.addr("eth0", "192.168.0.250/24")
        self.kvnetd = Kvnetd(self.node).start()
        self.addCleanup(self.stop_kvnetd)

    def stop_kvnetd(self):
        if self.kvnetd.alive():
            os.kill(self.kvnetd.proc.pid, signal.SIGCONT)
            rc = self.kvnetd.stop()
            self.assertEqual(rc, 0, "kvnetd exited badly:\n" + self.kvnetd.read_log()[-3000:])

    def vips(self):
        return {a[0] for a in self.node.addresses("eth1")}

    def metric(self, c, name):
        for line in c.call(PATH, IFACE, "GetMetrics")[0].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def test_renewals_received_while_blocked_are_applied_before_the_fence(self):
        a, b = KvnetClient(self.kvnetd.socket), KvnetClient(self.kvnetd.socket)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        ttl = 2.0
        for key, vip in VIPS.items():
            a.grant_vip(key, vip, "eth1", ttl=ttl)
        granted = time.monotonic()
        self.assertLessEqual(set(VIPS.values()), self.vips())

        os.kill(self.kvnetd.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            # Sent in time (deadlines 10 s away), received by the kernel
            # into each connection's socket, not read by kvnetd yet.
            dl = mono_usec() + 10_000_000
            ra = a.send(METHOD_CALL, PATH, IFACE, "RenewGrant", "st", marshal("st", ["drain/a", dl]))
            rb = b.send(METHOD_CALL, PATH, IFACE, "RenewGrant", "st", marshal("st", ["drain/b", dl]))
            # Resumed well after the old deadlines.
            time.sleep(max(0.0, granted + ttl + 1.5 - time.monotonic()))
        finally:
            os.kill(self.kvnetd.proc.pid, signal.SIGCONT)

        for conn, serial in ((a, ra), (b, rb)):
            while True:
                mtype, fields, _ = conn.receive()
                if fields.get(5) == serial:
                    self.assertEqual(mtype, 2, f"RenewGrant refused: {fields.get(4)}")
                    break
        end = time.monotonic() + 5
        while VIPS["drain/lost"] in self.vips() and time.monotonic() < end:
            time.sleep(0.05)
        held = self.vips()
        self.assertIn(VIPS["drain/a"], held, self.kvnetd.read_log()[-2000:])
        self.assertIn(VIPS["drain/b"], held, self.kvnetd.read_log()[-2000:])
        self.assertNotIn(VIPS["drain/lost"], held, "the unrenewed grant was not fenced")
        self.assertEqual(self.metric(a, "kvegress_fences_total"), 1)


if __name__ == "__main__":
    unittest.main()
