"""Certificates via the openssl CLI: CA, server and client certs (EC P-256), client-cert
verification (cached), and on-demand issuing for credential-rotation tests."""
import ctypes
import hashlib
import os
import ssl
import subprocess
import tempfile
import threading
import time


def _run(args, cwd=None):
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl failed: %s\n%s" % (" ".join(args), p.stderr))
    return p.stdout


def _write_ext(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _sign(d, name, subj, ext_lines, days, ca_crt, ca_key):
    key, csr, crt = [os.path.join(d, name + s) for s in (".key", ".csr", ".crt")]
    ext = os.path.join(d, name + ".ext")
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", key, "-out", csr, "-subj", subj])
    _write_ext(ext, ext_lines)
    serial = "0x" + os.urandom(12).hex()
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-set_serial", serial,
          "-days", str(days), "-sha256", "-extfile", ext, "-out", crt])
    os.unlink(csr)
    os.unlink(ext)
    os.chmod(key, 0o600)
    return crt, key


def ensure_certs(state_dir, sans):
    ca_crt, ca_key = os.path.join(state_dir, "ca.crt"), os.path.join(state_dir, "ca.key")
    if not (os.path.exists(ca_crt) and os.path.exists(ca_key)):
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", ca_key, "-out", ca_crt, "-days", "3650", "-sha256", "-subj", "/CN=kvtest-ca",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"])
        os.chmod(ca_key, 0o600)
        for n in ("server", "client"):
            for s in (".crt", ".key"):
                p = os.path.join(state_dir, n + s)
                if os.path.exists(p):
                    os.unlink(p)
    alt = ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]
    for s in sans:
        e = ("IP:" if _is_ip(s) else "DNS:") + s
        if e not in alt:
            alt.append(e)
    alt_s = ",".join(alt)
    sans_file = os.path.join(state_dir, "server.sans")
    have = open(sans_file).read().strip() if os.path.exists(sans_file) else None
    if have != alt_s or not os.path.exists(os.path.join(state_dir, "server.crt")):
        _sign(state_dir, "server", "/CN=kvtest-apiserver",
              ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               "extendedKeyUsage=serverAuth", "subjectAltName=" + alt_s], 825, ca_crt, ca_key)
        with open(sans_file, "w") as f:
            f.write(alt_s + "\n")
    if not os.path.exists(os.path.join(state_dir, "client.crt")):
        _sign(state_dir, "client", "/O=system:masters/CN=kvtest-admin",
              ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               "extendedKeyUsage=clientAuth"], 825, ca_crt, ca_key)


def _is_ip(s):
    import ipaddress
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def issue_client_cert(state_dir, cn, orgs=(), days=365):
    """Return (cert_pem, key_pem) for a new client certificate signed by the CA."""
    subj = "".join("/O=" + o for o in orgs) + "/CN=" + cn
    with tempfile.TemporaryDirectory() as d:
        crt, key = _sign(d, "c", subj, ["basicConstraints=CA:FALSE",
                                        "keyUsage=critical,digitalSignature,keyEncipherment",
                                        "extendedKeyUsage=clientAuth"], days,
                         os.path.join(state_dir, "ca.crt"), os.path.join(state_dir, "ca.key"))
        return open(crt).read(), open(key).read()


def fingerprint_der(der):
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem(pem):
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(pem))


class ClientCertVerifier:
    """Verifies a presented client certificate (DER) against the CA with `openssl verify`; caches verdicts
    by fingerprint for 30 s. Returns (user, groups) or None."""

    def __init__(self, ca_path):
        self.ca_path = ca_path
        self.cache = {}
        self.revoked = set()
        self.lock = threading.Lock()

    def identify(self, der):
        fp = fingerprint_der(der)
        if fp in self.revoked:
            return None
        now = time.monotonic()
        with self.lock:
            c = self.cache.get(fp)
            if c and c[0] > now:
                return c[1]
        res = self._verify(der)
        with self.lock:
            self.cache[fp] = (now + 30, res)
        return res

    def _verify(self, der):
        pem = ssl.DER_cert_to_PEM_cert(der)
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
            f.write(pem)
            path = f.name
        try:
            p = subprocess.run(["openssl", "verify", "-CAfile", self.ca_path, "-purpose", "sslclient", path],
                               capture_output=True, text=True)
            if p.returncode != 0:
                return None
            info = ssl._ssl._test_decode_cert(path)
        finally:
            os.unlink(path)
        cn, orgs = None, []
        for rdn in info.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
                elif k == "organizationName":
                    orgs.append(v)
        if not cn:
            return None
        return cn, orgs


def _find_libssl():
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "libssl.so" in p:
                    return p
    except OSError:
        pass
    return None


_KEEP = []


def request_cert_without_verify(ctx):
    """Make OpenSSL request a client certificate but accept any (we verify it ourselves so that an
    untrusted cert gets an HTTP 401 like kube-apiserver, not a TLS alert). Returns True on success."""
    try:
        path = _find_libssl()
        if not path:
            return False
        lib = ctypes.CDLL(path)
        cb_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
        cb = cb_t(lambda ok, store: 1)
        ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        if lib.SSL_CTX_get_verify_mode(ptr) != 1:  # sanity check that ptr is the SSL_CTX
            return False
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, cb_t]
        lib.SSL_CTX_set_verify.restype = None
        lib.SSL_CTX_set_verify(ptr, 1, cb)
        _KEEP.append(cb)
        return True
    except Exception:
        return False
