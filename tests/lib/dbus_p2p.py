# SPDX-License-Identifier: Apache-2.0
"""A small peer-to-peer D-Bus client in pure Python (stdlib only).

kvnetd and kvelectd serve sd-bus on a private AF_UNIX socket with no broker,
which busctl cannot talk to (it always sends Hello to a bus driver). This
module speaks the wire protocol directly: EXTERNAL authentication, method
calls with any signature, replies, errors and signals. It is also the tool for
malformed requests: a string argument may be given as `bytes`, which are sent
as they are (e.g. invalid UTF-8), and `call_raw()` sends any signature.

    with Connection("/run/kvnetd/kvnetd.sock") as c:
        c.call("/io/kvegress/Net1", "io.kvegress.Net1", "ListVips")
        -> [[('default/web', '10.0.0.1', 'eth1', 1234)]]

A reply error raises DBusError(name, message).
"""

import os
import select
import socket
import struct
import time

__all__ = ["Connection", "DBusError", "marshal", "unmarshal"]

_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "s": 4, "o": 4,
          "g": 1, "a": 4, "(": 8, "{": 8, "v": 1, "h": 4}
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4


class DBusError(Exception):
    def __init__(self, name, message=""):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _split_signature(sig):
    """Splits a signature into complete types: "sa(sq)t" -> ["s", "a(sq)", "t"]."""
    out, i = [], 0
    while i < len(sig):
        j = _end_of_type(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _end_of_type(sig, i):
    c = sig[i]
    if c == "a":
        return _end_of_type(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        depth, j = 0, i
        while True:
            if sig[j] == c:
                depth += 1
            elif sig[j] == close:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
    return i + 1


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def pad(self, n):
        while len(self.buf) % n:
            self.buf.append(0)

    def write(self, t, v):
        c = t[0]
        self.pad(_ALIGN[c])
        if c in _FIXED:
            self.buf += struct.pack("<" + _FIXED[c], v)
        elif c in "so":
            b = v if isinstance(v, (bytes, bytearray)) else v.encode()
            self.buf += struct.pack("<I", len(b)) + b + b"\0"
        elif c == "g":
            b = v.encode()
            self.buf += struct.pack("<B", len(b)) + b + b"\0"
        elif c == "a":
            elem = t[1:]
            at = len(self.buf)
            self.buf += b"\0\0\0\0"
            self.pad(_ALIGN[elem[0]])
            start = len(self.buf)
            items = v.items() if elem[0] == "{" else v
            for item in items:
                self.write(elem, item)
            struct.pack_into("<I", self.buf, at, len(self.buf) - start)
        elif c in "({":
            for sub, x in zip(_split_signature(t[1:-1]), v):
                self.write(sub, x)
        elif c == "v":
            sig, val = v
            self.write("g", sig)
            self.write(sig, val)
        else:
            raise ValueError(f"unsupported type {t}")


class _Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def align(self, n):
        self.pos = (self.pos + n - 1) // n * n

    def read(self, t):
        c = t[0]
        self.align(_ALIGN[c])
        if c in _FIXED:
            fmt = "<" + _FIXED[c]
            (v,) = struct.unpack_from(fmt, self.data, self.pos)
            self.pos += struct.calcsize(fmt)
            return bool(v) if c == "b" else v
        if c in "so":
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            v = bytes(self.data[self.pos + 4:self.pos + 4 + n])
            self.pos += 4 + n + 1
            return v.decode(errors="replace")
        if c == "g":
            n = self.data[self.pos]
            v = bytes(self.data[self.pos + 1:self.pos + 1 + n]).decode()
            self.pos += 1 + n + 1
            return v
        if c == "a":
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            elem = t[1:]
            self.align(_ALIGN[elem[0]])
            end = self.pos + n
            out = []
            while self.pos < end:
                out.append(self.read(elem))
            return dict(out) if elem[0] == "{" else out
        if c in "({":
            return tuple(self.read(sub) for sub in _split_signature(t[1:-1]))
        if c == "v":
            sig = self.read("g")
            return (sig, self.read(sig))
        raise ValueError(f"unsupported type {t}")


def marshal(signature, values):
    w = _Writer()
    for t, v in zip(_split_signature(signature), values):
        w.write(t, v)
    return bytes(w.buf)


def unmarshal(signature, data):
    r = _Reader(data)
    return [r.read(t) for t in _split_signature(signature)]


class Connection:
    """One authenticated connection to a peer-to-peer D-Bus server."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.serial = 0
        self.rbuf = b""
        self.signals = []  # (member, body) of signals received so far
        self._auth()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def _auth(self):
        # BEGIN is pipelined with AUTH, as sd-bus clients do, and the first
        # message goes only after OK: sd-bus (252) servers that read BEGIN and
        # a message in one recv() do not dispatch the message until more data
        # arrives.
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\nBEGIN\r\n")
        line = self._readline()
        if not line.startswith(b"OK "):
            raise DBusError("org.freedesktop.DBus.Error.AuthFailed", line.decode(errors="replace"))

    def _readline(self):
        while b"\r\n" not in self.rbuf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during authentication")
            self.rbuf += chunk
        line, self.rbuf = self.rbuf.split(b"\r\n", 1)
        return line

    def _recv_exact(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.rbuf)))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.rbuf += chunk
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    def send(self, mtype, path=None, interface=None, member=None, signature="", body=b"", flags=0):
        self.serial += 1
        fields = []
        if path:
            fields.append((1, ("o", path)))
        if interface:
            fields.append((2, ("s", interface)))
        if member:
            fields.append((3, ("s", member)))
        if signature:
            fields.append((8, ("g", signature)))
        w = _Writer()
        w.buf += struct.pack("<cBBBII", b"l", mtype, flags, 1, len(body), self.serial)
        w.write("a(yv)", fields)
        w.pad(8)
        self.sock.sendall(bytes(w.buf) + body)
        return self.serial

    def receive(self):
        """Returns (type, fields dict, body bytes) of the next message."""
        head = self._recv_exact(16)
        _, mtype, _, _, body_len, _ = struct.unpack_from("<cBBBII", head)
        (fields_len,) = struct.unpack_from("<I", head, 12)
        fields_total = (fields_len + 7) // 8 * 8
        rest = self._recv_exact(fields_total + body_len)
        r = _Reader(head + rest, 12)
        fields = dict(r.read("a(yv)"))
        return mtype, {k: v[1] for k, v in fields.items()}, rest[fields_total:]

    def call_raw(self, path, interface, member, signature="", body=b""):
        serial = self.send(METHOD_CALL, path, interface, member, signature, body)
        while True:
            mtype, fields, data = self.receive()
            sig = fields.get(8, "")
            if mtype == SIGNAL:
                self.signals.append((fields.get(3), unmarshal(sig, data) if sig else []))
                continue
            if fields.get(5) != serial:
                continue
            values = unmarshal(sig, data) if sig else []
            if mtype == ERROR:
                raise DBusError(fields.get(4), values[0] if values else "")
            return values

    def call(self, path, interface, member, signature="", *args):
        return self.call_raw(path, interface, member, signature, marshal(signature, args))

    def wait_signal(self, member, timeout):
        """Waits for a signal named member; returns its arguments or None."""
        end = time.monotonic() + timeout
        while True:
            for i, (name, args) in enumerate(self.signals):
                if name == member:
                    del self.signals[i]
                    return args
            left = end - time.monotonic()
            if left <= 0:
                return None
            if not self.rbuf:
                ready, _, _ = select.select([self.sock], [], [], left)
                if not ready:
                    return None
            mtype, fields, data = self.receive()
            if mtype == SIGNAL:
                sig = fields.get(8, "")
                self.signals.append((fields.get(3), unmarshal(sig, data) if sig else []))
