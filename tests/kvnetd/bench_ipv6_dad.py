#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How long a new IPv6 VIP takes before TCP works over it, with and without
duplicate-address detection (kvnetd's --ipv6-nodad). Two namespaces joined
by a veth; the address is added as kvnetd adds a VIP (/128, preferred_lft
0, with or without nodad); then a host on the link connects to it, a new
attempt every few ms, and the time from the address add to the first
accepted connection is printed. Needs root; removes its namespaces.

    python3 tests/kvnetd/bench_ipv6_dad.py [trials]
"""
import os
import statistics
import subprocess
import sys
import time

NODE, EXT = "kvdad%d-node" % os.getpid(), "kvdad%d-ext" % os.getpid()


def sh(*a, check=True):
    return subprocess.run(a, check=check, capture_output=True, text=True)


def setup():
    for n in (NODE, EXT):
        sh("ip", "netns", "add", n)
    sh("ip", "link", "add", "v0", "netns", NODE, "type", "veth", "peer", "name", "v1", "netns", EXT)
    for n, i, a in ((NODE, "v0", "fd00:77::1/64"), (EXT, "v1", "fd00:77::2/64")):
        sh("ip", "-n", n, "addr", "add", a, "dev", i, "nodad")
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")


def cleanup():
    for n in (NODE, EXT):
        sh("ip", "netns", "del", n, check=False)


CLIENT = """import socket, sys, time
print('ready', flush=True)
sys.stdin.readline()
while True:
    s = socket.socket(socket.AF_INET6)
    s.settimeout(0.05)
    try:
        s.connect((sys.argv[1], 9000))
        print(time.time())
        break
    except OSError:
        time.sleep(0.002)
    finally:
        s.close()
"""
SERVER = """import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', 9000))
s.listen(64)
while True:
    s.accept()[0].close()
"""


def trial(nodad, k):
    vip = "fd00:77::1:%x" % k
    client = subprocess.Popen(["ip", "netns", "exec", EXT, sys.executable, "-c", CLIENT, vip],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client.stdout.readline()
    t0 = time.time()
    sh("ip", "-n", NODE, "addr", "add", vip + "/128", "dev", "v0", "preferred_lft", "0", *(["nodad"] if nodad else []))
    client.stdin.write("go\n")
    client.stdin.flush()
    took = float(client.stdout.readline()) - t0
    client.wait()
    sh("ip", "-n", NODE, "addr", "del", vip + "/128", "dev", "v0")
    return took


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    cleanup()
    try:
        setup()
        server = subprocess.Popen(["ip", "netns", "exec", NODE, sys.executable, "-c", SERVER])
        time.sleep(0.5)
        print("%-22s %8s %8s %8s" % ("new IPv6 VIP", "min s", "median s", "max s"))
        for nodad in (False, True):
            ts = [trial(nodad, i + (0x100 if nodad else 0)) for i in range(trials)]
            print("%-22s %8.3f %8.3f %8.3f" % ("--ipv6-nodad" if nodad else "with DAD (default)", min(ts),
                                               statistics.median(ts), max(ts)))
        server.kill()
        server.wait()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
