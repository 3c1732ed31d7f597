#!/usr/bin/env python3
"""A pod's client: sends tagged TCP connections, UDP datagrams and ICMP echo requests to a destination and prints,
one JSON object a line, what came back (the recorder answers TCP/UDP with the source address it saw).

  probe.py batch '[{"proto":"tcp","dst":"192.168.0.250","port":80,"tag":"x"}, ...]'
  probe.py stream --dst 192.168.0.250 --tcp 80 --udp 9000 --icmp --interval 0.05 --duration 20 --tag T
  probe.py send --dst 192.168.0.250 --port 5060 --count 300 --interval 0.01 [--src A] [--sport N]
  probe.py flows --dst 192.168.0.250 --port 5060 --interval 0.005 --duration 20 --tag T [--sport-base N]
A batch probe may name its source address ("src") and port ("sport"); send is one UDP flow of numbered
datagrams ("seq N"), not waiting for answers. flows is a new UDP flow every --interval: one datagram "T seq=N"
from a fresh socket (a new source port, so a new conntrack entry each time), not waiting for answers.
Runs inside a pod's network namespace. Standard library only.
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import time


def family(dst):
    return socket.AF_INET6 if ":" in dst else socket.AF_INET


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def bind_source(s, dst, src=None, sport=None):
    """Binds s to the source address and/or port asked for (none: the kernel picks)."""
    if src or sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src or ("::" if family(dst) == socket.AF_INET6 else "0.0.0.0"), sport or 0))


def tcp(dst, port, tag, timeout, src=None, sport=None):
    with socket.socket(family(dst), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        bind_source(s, dst, src, sport)
        s.connect((dst, port))
        s.sendall((tag + "\n").encode())
        data = b""
        while b"\n" not in data:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data.decode().split()[1] if data.startswith(b"seen ") else None


class Udp:
    """One UDP socket (one source port) for a whole stream, so conntrack keeps one entry for it."""

    def __init__(self, dst, src=None, sport=None):
        self.s = socket.socket(family(dst), socket.SOCK_DGRAM)
        bind_source(self.s, dst, src, sport)

    def send(self, dst, port, tag, timeout):
        self.s.sendto((tag + "\n").encode(), (dst, port))
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("no UDP answer")
            r, _, _ = select.select([self.s], [], [], left)
            if r:
                data, _ = self.s.recvfrom(512)
                txt = data.decode("utf-8", "replace")
                if txt.startswith("seen "):
                    return txt.split()[1]

    def close(self):
        self.s.close()


class Icmp:
    def __init__(self, dst):
        self.v6 = family(dst) == socket.AF_INET6
        if self.v6:
            self.s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        else:
            self.s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    def send(self, dst, tag, timeout):
        self.seq = (self.seq + 1) & 0xFFFF
        payload = (tag + "\n").encode()
        if self.v6:
            pkt = struct.pack("!BBHHH", 128, 0, 0, self.ident, self.seq) + payload
        else:
            hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
            c = csum(hdr + payload)
            pkt = struct.pack("!BBHHH", 8, 0, c, self.ident, self.seq) + payload
        self.s.sendto(pkt, (dst, 0))
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("no echo reply")
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                continue
            data, _ = self.s.recvfrom(4096)
            if self.v6:
                icmp = data
                want = 129
            else:
                icmp = data[(data[0] & 0x0F) * 4:]
                want = 0
            if len(icmp) >= 8 and icmp[0] == want:
                ident, seq = struct.unpack("!HH", icmp[4:8])
                if ident == self.ident and seq == self.seq:
                    return None

    def close(self):
        self.s.close()


def one(p, timeout):
    t0 = time.time()
    res = {"proto": p["proto"], "dst": p["dst"], "port": p.get("port"), "tag": p.get("tag", ""), "t": t0}
    try:
        if p["proto"] == "tcp":
            res["seen"] = tcp(p["dst"], p["port"], p.get("tag", ""), timeout, p.get("src"), p.get("sport"))
        elif p["proto"] == "udp":
            u = Udp(p["dst"], p.get("src"), p.get("sport"))
            try:
                res["seen"] = u.send(p["dst"], p["port"], p.get("tag", ""), timeout)
            finally:
                u.close()
        elif p["proto"] == "icmp":
            i = Icmp(p["dst"])
            try:
                i.send(p["dst"], p.get("tag", ""), timeout)
            finally:
                i.close()
            res["seen"] = None
        res["ok"] = True
    except (OSError, TimeoutError) as e:
        res["ok"] = False
        res["err"] = str(e) or type(e).__name__
    res["rtt"] = time.time() - t0
    return res


def hold(a):
    """One TCP connection held open: a line every --interval, each answer printed as JSON; on SIGTERM the
    connection is closed cleanly and {"closed": true} printed; on any error {"ok": false, "err": ...} and exit 1."""
    import signal
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s = socket.socket(family(a.dst), socket.SOCK_STREAM)
    s.settimeout(2)
    buf = b""
    n = 0
    try:
        s.connect((a.dst, a.port))
        while not stop:
            line = "hold %s" % a.tag if n == 0 else "%s seq=%d" % (a.tag, n)
            t0 = time.time()
            s.sendall((line + "\n").encode())
            while b"\n" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    raise OSError("connection closed by the peer")
                buf += chunk
            answer, _, buf = buf.partition(b"\n")
            print(json.dumps({"t": t0, "seq": n, "ok": True, "seen": answer.decode().split(" ", 1)[-1]}),
                  flush=True)
            n += 1
            time.sleep(a.interval)
    except (OSError, TimeoutError) as e:
        print(json.dumps({"t": time.time(), "seq": n, "ok": False, "err": str(e) or type(e).__name__}), flush=True)
        sys.exit(1)
    s.close()
    print(json.dumps({"t": time.time(), "closed": True, "seq": n}), flush=True)


def send(a):
    """One UDP flow (one socket, one source port): --count datagrams "seq N", one every --interval."""
    s = socket.socket(family(a.dst), socket.SOCK_DGRAM)
    bind_source(s, a.dst, a.src, a.sport)
    for i in range(a.count):
        try:
            s.sendto(("seq %d\n" % i).encode(), (a.dst, a.port))
        except OSError:
            pass
        time.sleep(a.interval)


def flows(a):
    """A new UDP flow every --interval (a fresh socket, so a fresh source port and conntrack entry), until
    --duration or SIGTERM. The last 64 sockets stay open, so the recorder's answers are not refused. With
    --sport-base the source ports go up from there (--sport-count of them) instead of the kernel's random
    choice, which soon picks a port whose conntrack entry (30 s) still exists: an old flow, not a new one."""
    import collections
    import signal
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    open_socks = collections.deque()
    end = time.time() + a.duration
    n = 0
    while not stop and time.time() < end:
        n += 1
        s = socket.socket(family(a.dst), socket.SOCK_DGRAM)
        try:
            if a.sport_base:
                bind_source(s, a.dst, sport=a.sport_base + n % a.sport_count)
            s.sendto(("%s seq=%d\n" % (a.tag, n)).encode(), (a.dst, a.port))
        except OSError:
            pass
        open_socks.append(s)
        if len(open_socks) > 64:
            open_socks.popleft().close()
        time.sleep(a.interval)
    print(json.dumps({"sent": n, "t": time.time()}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("batch")
    b.add_argument("probes")
    b.add_argument("--timeout", type=float, default=2.0)
    st = sub.add_parser("stream")
    st.add_argument("--dst", required=True)
    st.add_argument("--tcp", type=int)
    st.add_argument("--udp", type=int)
    st.add_argument("--icmp", action="store_true")
    st.add_argument("--interval", type=float, default=0.05)
    st.add_argument("--duration", type=float, default=30)
    st.add_argument("--tag", default="stream")
    st.add_argument("--timeout", type=float, default=0.5)
    h = sub.add_parser("hold")
    h.add_argument("--dst", required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--interval", type=float, default=0.1)
    h.add_argument("--tag", default="hold")
    sd = sub.add_parser("send")
    sd.add_argument("--dst", required=True)
    sd.add_argument("--port", type=int, required=True)
    sd.add_argument("--count", type=int, default=100)
    sd.add_argument("--interval", type=float, default=0.01)
    sd.add_argument("--src")
    sd.add_argument("--sport", type=int)
    fl = sub.add_parser("flows")
    fl.add_argument("--dst", required=True)
    fl.add_argument("--port", type=int, required=True)
    fl.add_argument("--interval", type=float, default=0.005)
    fl.add_argument("--duration", type=float, default=30)
    fl.add_argument("--tag", default="flows")
    fl.add_argument("--sport-base", type=int, default=0)
    fl.add_argument("--sport-count", type=int, default=10000)
    a = ap.parse_args()

    if a.cmd == "flows":
        flows(a)
        return
    if a.cmd == "send":
        send(a)
        return
    if a.cmd == "hold":
        hold(a)
        return
    if a.cmd == "batch":
        for p in json.loads(a.probes):
            print(json.dumps(one(p, a.timeout)), flush=True)
        return
    # stream: one UDP socket and one ICMP id for the whole run (long-lived conntrack entries), a new TCP
    # connection each round; until --duration or SIGTERM.
    udp = Udp(a.dst) if a.udp else None
    icmp = Icmp(a.dst) if a.icmp else None
    end = time.time() + a.duration
    n = 0
    while time.time() < end:
        n += 1
        tag = "%s seq=%d" % (a.tag, n)
        for proto in ("udp", "tcp", "icmp"):
            t0 = time.time()
            res = {"proto": proto, "t": t0, "tag": tag}
            try:
                if proto == "udp" and udp:
                    res["seen"] = udp.send(a.dst, a.udp, tag, a.timeout)
                elif proto == "tcp" and a.tcp:
                    res["seen"] = tcp(a.dst, a.tcp, tag, a.timeout)
                elif proto == "icmp" and icmp:
                    icmp.send(a.dst, tag, a.timeout)
                else:
                    continue
                res["ok"] = True
            except (OSError, TimeoutError) as e:
                res["ok"] = False
                res["err"] = str(e) or type(e).__name__
            print(json.dumps(res), flush=True)
        time.sleep(a.interval)


if __name__ == "__main__":
    main()
