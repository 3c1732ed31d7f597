#!/usr/bin/env python3
"""The external host's (or a pod's) recorder: logs the source address of every TCP connection, UDP datagram and
ICMP/ICMPv6 echo request it receives, one JSON object a line, and answers TCP/UDP with what it saw.

Runs inside a network namespace (ip netns exec NS python3 recorder.py --log FILE ...). Standard library only.
Each record: {"t": wall-clock seconds, "proto": "tcp"|"udp"|"icmp", "family": 4|6, "src": ..., "sport": ...,
"dst": ..., "dport": ..., "tag": first line the client sent (or the ICMP payload)}.
"""
import argparse
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time

IP_PKTINFO = 8  # linux/in.h; not exported by Python's socket module


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--udp", type=int, action="append", default=[])
    ap.add_argument("--icmp", action="store_true")
    ap.add_argument("--ready", help="file created once every socket is bound")
    a = ap.parse_args()

    out = open(a.log, "a", buffering=1)
    lock = threading.Lock()

    def record(**kw):
        kw["t"] = time.time()
        with lock:
            out.write(json.dumps(kw, sort_keys=True) + "\n")
            out.flush()

    sel = selectors.DefaultSelector()
    for port in a.tcp:
        for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, port))
            s.listen(128)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, ("tcp", fam))
    for port in a.udp:
        for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            s.bind((addr, port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, ("udp", fam))
    if a.icmp:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("icmp", socket.AF_INET))
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        s6.setblocking(False)
        sel.register(s6, selectors.EVENT_READ, ("icmp", socket.AF_INET6))

    if a.ready:
        with open(a.ready, "w") as f:
            f.write("%d\n" % os.getpid())

    def hold_tcp(c, fam, peer, local, data):
        # A long-lived connection (probe.py hold): every further line is recorded and answered on the same
        # connection, until the client closes it ("tcp-held" records, tag = the line).
        c.settimeout(30)
        while True:
            while b"\n" not in data:
                try:
                    chunk = c.recv(512)
                except OSError:
                    chunk = b""
                if not chunk:
                    return
                data += chunk
            line, _, data = data.partition(b"\n")
            record(proto="tcp-held", family=4 if fam == socket.AF_INET else 6, src=peer[0], sport=peer[1],
                   dst=local[0], dport=local[1], tag=line.decode("utf-8", "replace"))
            try:
                c.sendall(("seen %s\n" % peer[0]).encode())
            except OSError:
                return

    def handle_tcp(c, fam):
        try:
            peer = c.getpeername()
            local = c.getsockname()
            c.settimeout(2)
            data = b""
            try:
                while b"\n" not in data and len(data) < 512:
                    chunk = c.recv(512)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            tag, _, rest = data.partition(b"\n")
            tag = tag.decode("utf-8", "replace")
            record(proto="tcp", family=4 if fam == socket.AF_INET else 6, src=peer[0], sport=peer[1],
                   dst=local[0], dport=local[1], tag=tag)
            try:
                c.sendall(("seen %s\n" % peer[0]).encode())
            except OSError:
                pass
            if tag.startswith("hold "):
                hold_tcp(c, fam, peer, local, rest)
        finally:
            c.close()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for key, _ in sel.select():
            proto, fam = key.data
            s = key.fileobj
            try:
                if proto == "tcp":
                    c, _ = s.accept()
                    c.setblocking(True)
                    threading.Thread(target=handle_tcp, args=(c, fam), daemon=True).start()
                elif proto == "udp":
                    data, anc, _, peer = s.recvmsg(2048, 256)
                    dst = None
                    for level, typ, cdata in anc:
                        if fam == socket.AF_INET and typ == IP_PKTINFO and len(cdata) >= 12:
                            dst = socket.inet_ntop(socket.AF_INET, cdata[8:12])
                        elif fam == socket.AF_INET6 and typ == socket.IPV6_PKTINFO and len(cdata) >= 16:
                            dst = socket.inet_ntop(socket.AF_INET6, cdata[:16])
                    tag = data.split(b"\n", 1)[0].decode("utf-8", "replace")
                    record(proto="udp", family=4 if fam == socket.AF_INET else 6, src=peer[0], sport=peer[1],
                           dst=dst, dport=s.getsockname()[1], tag=tag)
                    s.sendto(("seen %s\n" % peer[0]).encode(), peer)
                elif fam == socket.AF_INET:
                    pkt, peer = s.recvfrom(4096)
                    ihl = (pkt[0] & 0x0F) * 4
                    if len(pkt) >= ihl + 8 and pkt[ihl] == 8:  # echo request
                        ident, seq = struct.unpack("!HH", pkt[ihl + 4:ihl + 8])
                        tag = pkt[ihl + 8:].split(b"\n", 1)[0].decode("utf-8", "replace")
                        record(proto="icmp", family=4, src=socket.inet_ntop(socket.AF_INET, pkt[12:16]),
                               dst=socket.inet_ntop(socket.AF_INET, pkt[16:20]), sport=ident, dport=seq, tag=tag)
                else:
                    pkt, anc, _, peer = s.recvmsg(4096, 256)
                    if len(pkt) >= 8 and pkt[0] == 128:  # echo request
                        dst = None
                        for level, typ, cdata in anc:
                            if typ == socket.IPV6_PKTINFO and len(cdata) >= 16:
                                dst = socket.inet_ntop(socket.AF_INET6, cdata[:16])
                        ident, seq = struct.unpack("!HH", pkt[4:8])
                        tag = pkt[8:].split(b"\n", 1)[0].decode("utf-8", "replace")
                        record(proto="icmp", family=6, src=peer[0].split("%")[0], dst=dst, sport=ident, dport=seq,
                               tag=tag)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                sys.stderr.write("recorder: %s: %s\n" % (proto, e))


if __name__ == "__main__":
    main()
