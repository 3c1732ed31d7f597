#!/usr/bin/env python3
"""The units, booted for real: a Debian bookworm root booted by systemd-nspawn (systemd is not PID 1 on the
build machines), with the just-built daemons, the units of systemd/, their sysusers file, an environment
file and a kubeconfig for the project's test API server. Checks, from inside (guest/check.py, a oneshot unit
started at boot) and from the host:

  - kvpd, kvelectd and kvnetd reach READY; kvnetd is started by kvpd's first connection to kvnetd.socket
    (only the socket is enabled), kvelectd through its socket too;
  - each runs as its own user with the capability sets its unit promises (systemctl show and
    /proc/PID/status), behind sockets of mode 0660, group kvegress;
  - kvpd (user kvpd, group kvegress) can call kvnetd and kvelectd; kvelectd cannot call kvnetd;
  - a Service with kube-vip's egress annotation, created at the API with kubectl from the host, gives the
    VIP on the service interface and the SNAT table, seen from the host in the container's namespace;
  - restarting kvnetd alone does not flap the VIP (ip monitor, inside and from the host, over the whole run);
  - `systemctl stop kvpd` removes VIP and rules;
  - the journal has our structured fields (SYSLOG_IDENTIFIER, CODE_FILE);
  - online `systemd-analyze security` scores within the budgets of tests/systemd/check-units.py;
  - the operator's view (issue 12): kvctl (status, vips, leases, rules; a daemon stuck by SIGSTOP or stopped),
    kvegress-metrics.socket scraped with curl, and the journal filtered by MESSAGE_ID and KVEGRESS_* fields
    with `journalctl -x` explaining the lines from the package's catalogue.
It prints the measured figures (boot to all-ready, scores, memory) at the end.

Topology (all namespaces are the test's own; the host's is never touched):

    kvboot<pid>-api  eth0 172.31.0.2  ---veth---  eth0 172.31.0.11   kvboot<pid>-node: the container
    (kvtest-apiserver :6443)                      eth1 192.168.0.11  (systemd-nspawn --network-namespace-path)
    kvboot<pid>-ext  eth0 192.168.0.250 ---veth--- eth1              VIPs from 192.168.0.240/28 go on eth1

The root is built once with debootstrap (minbase, Debian's mirror found in /etc/apt/sources.list*) and kept
under /var/cache/kvegress-nspawn/<key>/ROOT, keyed by suite, architecture and package list; each run boots
an overlay of it, so runs never change the cache and a cached root needs no network. No mirror reachable
and no cached root: exit 77 (skip) with the reason.

usage: boot-test.py --kvnetd PATH --kvelectd PATH --kvpd PATH   (or --build-dir DIR)
Environment: KVBOOT_CACHE (cache directory), KVBOOT_MIRROR (a Debian mirror URL), KVBOOT_KEEP=1 (keep the
run's directory: results, container console, API server log). Needs root. Standard library only.
"""
import argparse
import atexit
import base64
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
APISERVER = os.path.join(SRC, "tests", "apiserver", "kvtest-apiserver")
DBUS_P2P = os.path.join(SRC, "tests", "lib", "dbus_p2p.py")
SKIP = 77

SUITE = "bookworm"
# systemd and the tools the probe uses, and the daemons' runtime libraries (README, "Libraries").
PACKAGES = sorted([
    "systemd", "systemd-sysv", "dbus", "iproute2", "nftables", "python3", "util-linux",
    # the metrics scrape (kvegress-metrics.socket) is done with curl, as an operator would
    "curl",
    "libnl-3-200", "libnl-route-3-200", "libnl-nf-3-200", "libnftables1", "libcap2", "libcurl4",
    "libjansson4", "libyaml-0-2", "libsystemd0", "libssl3",
    # kvegress-selinux's dependencies (it installs here; SELinux is not enabled, so it loads nothing)
    "policycoreutils", "selinux-utils",
])
CACHE = os.environ.get("KVBOOT_CACHE", "/var/cache/kvegress-nspawn")

API_IP, API_PORT, NODE_IP = "172.31.0.2", 6443, "172.31.0.11"
SVC_IF, NODE_SVC_IP, EXT_IP = "eth1", "192.168.0.11", "192.168.0.250"
VIP_RANGE, VIP = "192.168.0.240/28", "192.168.0.241"
NODE_NAME, POD_IP, POD_CIDR, SVC_CIDR = "kvboot-node", "10.244.1.10", "10.244.0.0/16", "10.96.0.0/12"
TABLE = "kvegress"
SERVICE, LEASE = "default/web", "default/kubevip-web"
METRICS_DAEMONS = ("kvpd", "kvnetd", "kvelectd")
# Exposure budgets, as tests/systemd/check-units.py holds them offline.
BUDGET = {"kvnetd": 1.5, "kvelectd": 1.2, "kvpd": 1.2}
CAPS_KVNETD = "0000000000003000"  # CAP_NET_ADMIN (12) and CAP_NET_RAW (13)
CAPS_NONE = "0000000000000000"


def message_ids():
    """The journal catalogue's ids, from shared/catalog.h: {"VIP_BOUND": "d5d3...", ...}."""
    with open(os.path.join(SRC, "shared", "catalog.h")) as f:
        return dict(re.findall(r'#define KVEGRESS_MESSAGE_(\w+) "MESSAGE_ID=([0-9a-f]{32})"', f.read()))


def parse_metrics(text):
    """Prometheus's text format, enough to judge a scrape (standard library only): {(name, labels): value},
    with labels a sorted tuple of (key, value); and each family's TYPE lines, to check each appears once."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            w = line.split()
            types.setdefault(w[2], []).append(w[3])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$', line)
        if not m:
            raise ValueError("not a sample line: %r" % line)
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
        key = (m.group(1), labels)
        if key in samples:
            raise ValueError("sample twice: %r" % line)
        samples[key] = float(m.group(3))
    return samples, types


def build_debs(script, deb_dir):
    """tools/build-deb.sh (cached: once per tree, under a lock); its figures and lintian's verdict."""
    t = time.monotonic()
    p = subprocess.run([script, deb_dir], capture_output=True, text=True, timeout=1200)
    sys.stdout.write(p.stdout + p.stderr)
    if p.returncode != 0:
        raise SystemExit("tools/build-deb.sh failed (exit %d)" % p.returncode)
    say("packages ready in %.0f s" % (time.monotonic() - t))


class Skip(Exception):
    pass


def run(cmd, timeout=60, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def say(msg):
    sys.stderr.write("boot-test: %s\n" % msg)
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ the root
def find_mirror():
    """Debian's archive as this machine's apt knows it (one-line and deb822 sources), for SUITE."""
    if os.environ.get("KVBOOT_MIRROR"):
        return os.environ["KVBOOT_MIRROR"].rstrip("/")
    found = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        try:
            with open(path) as f:
                for line in f:
                    line = line.split("#", 1)[0].strip()
                    if not line.startswith("deb "):
                        continue
                    rest = line[4:].strip()
                    if rest.startswith("["):  # options: deb [signed-by=...] URI SUITE COMPONENTS
                        rest = rest.split("]", 1)[-1]
                    w = rest.split()
                    if len(w) >= 2 and w[1] == SUITE:
                        found.append(w[0])
        except OSError:
            pass
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            with open(path) as f:
                stanzas = f.read().split("\n\n")
        except OSError:
            continue
        for st in stanzas:
            fields = {}
            for line in st.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.split()
            if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []) and \
                    fields.get("enabled", ["yes"])[0] != "no":
                found += fields.get("uris", [])
    found = [u.rstrip("/") for u in found if u.startswith(("http://", "https://"))]
    if not found:
        raise Skip("no Debian %s mirror in /etc/apt/sources.list*, and no cached root" % SUITE)
    return found[0]


def mirror_reachable(mirror):
    req = urllib.request.Request("%s/dists/%s/Release" % (mirror, SUITE), method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status == 200, "HTTP %d" % r.status
    except (urllib.error.URLError, OSError) as e:
        return False, str(e)


def cached_root():
    """The cached root for PACKAGES, built if missing (under a lock: parallel runs build it once)."""
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    key = hashlib.sha256(("%s %s %s" % (SUITE, arch, " ".join(PACKAGES))).encode()).hexdigest()[:16]
    base = os.path.join(CACHE, "%s-%s-%s" % (SUITE, arch, key))
    root, done = os.path.join(base, "ROOT"), os.path.join(base, "complete")
    if os.path.exists(done):
        return root
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        end = time.monotonic() + 1200
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise RuntimeError("another run has held %s/.lock for 20 minutes" % CACHE)
                time.sleep(1)
        if os.path.exists(done):
            return root
        if not shutil.which("debootstrap"):
            raise Skip("debootstrap is not installed and no root is cached in %s" % base)
        mirror = find_mirror()
        ok, why = mirror_reachable(mirror)
        if not ok:
            raise Skip("mirror %s unreachable (%s) and no root cached in %s" % (mirror, why, base))
        shutil.rmtree(base, ignore_errors=True)
        tmp = base + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        say("building the root with debootstrap from %s into %s (once; about a minute)" % (mirror, base))
        t = time.monotonic()
        try:
            p = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE,
                     os.path.join(tmp, "ROOT"), mirror], timeout=1200, check=False)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Skip("debootstrap from %s did not finish in 20 minutes" % mirror)
        if p.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            out = (p.stdout + p.stderr).strip().splitlines()[-15:]
            if re.search(r"Failed getting release|Couldn't download|Failure trying to run|resolve|timed out",
                         "\n".join(out)):
                raise Skip("debootstrap could not fetch from %s:\n%s" % (mirror, "\n".join(out)))
            raise RuntimeError("debootstrap failed:\n%s" % "\n".join(out))
        for deb in glob.glob(os.path.join(tmp, "ROOT", "var", "cache", "apt", "archives", "*.deb")):
            os.unlink(deb)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump({"suite": SUITE, "arch": arch, "packages": PACKAGES, "mirror": mirror,
                       "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "seconds": round(time.monotonic() - t, 1)}, f, indent=1)
        os.rename(tmp, base)
        with open(done, "w") as f:
            f.write("ok\n")
        say("root built in %.0fs" % (time.monotonic() - t))
        return root


# ------------------------------------------------------------------------------------------------ one boot
def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Namespaces and overlay mounts of runs that died without cleaning up (their pid is in the name)."""
    for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        m = re.match(r"kvboot(\d+)-", ns)
        if m and not pid_alive(int(m.group(1))):
            run(["ip", "netns", "del", ns], check=False)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mp in mounts:
        m = re.match(r"(/var/tmp/kvboot-(\d+)-[^/]+)/root$", mp)
        if m and not pid_alive(int(m.group(2))):
            run(["umount", "-l", mp], check=False)
            shutil.rmtree(m.group(1), ignore_errors=True)


class Boot:
    def __init__(self, root, deb_dir):
        self.lower, self.deb_dir = root, deb_dir
        self.prefix = "kvboot%d" % os.getpid()
        self.ns_node, self.ns_api, self.ns_ext = (self.prefix + s for s in ("-node", "-api", "-ext"))
        self.dir = tempfile.mkdtemp(prefix="kvboot-%d-" % os.getpid(), dir="/var/tmp")
        self.root = os.path.join(self.dir, "root")
        self.results = os.path.join(self.dir, "results")
        self.namespaces, self.procs, self.mounted = [], [], False
        self.nspawn = None
        self.closed = False
        self.host = {}  # what the host saw
        self.t = {}  # timings, seconds

    # ------------------------------------------------------------------ set-up
    def setup(self):
        # lintian on the packages this run installs, beside the boot (it takes ~40 s); judged by test_16.
        self.lintian_path = os.path.join(self.dir, "lintian.txt")
        debs = sorted(glob.glob(os.path.join(self.deb_dir, "current", "kvegress*.deb")))
        self.lintian = self._popen("lintian", ["lintian", "--tag-display-limit", "0"] + debs, self.lintian_path) \
            if shutil.which("lintian") and debs else None
        sweep_stale()
        for d in ("upper", "work", "root", "results", "api", "kube-cache"):
            os.makedirs(os.path.join(self.dir, d))
        os.chmod(self.results, 0o777)
        run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (
            self.lower, os.path.join(self.dir, "upper"), os.path.join(self.dir, "work")), self.root])
        self.mounted = True
        self._network()
        self._apiserver()
        self._install()

    def _netns(self, name):
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _network(self):
        for ns in (self.ns_node, self.ns_api, self.ns_ext):
            self._netns(ns)
        run(["ip", "-n", self.ns_api, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", self.ns_node])
        run(["ip", "-n", self.ns_ext, "link", "add", "eth0", "type", "veth", "peer", "name", SVC_IF,
             "netns", self.ns_node])
        for ns, cmds in ((self.ns_api, ["addr add %s/24 dev eth0" % API_IP, "link set eth0 up"]),
                         (self.ns_ext, ["addr add %s/24 dev eth0" % EXT_IP, "link set eth0 up"]),
                         (self.ns_node, ["addr add %s/24 dev eth0" % NODE_IP, "link set eth0 up",
                                         "addr add %s/24 dev %s" % (NODE_SVC_IP, SVC_IF),
                                         "link set %s up" % SVC_IF])):
            run(["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n")
        # Every address event on the service interface over the whole run (a flap anywhere shows here).
        self.monitor_path = os.path.join(self.dir, "host-ip-monitor.txt")
        self._popen("ip-monitor", ["ip", "-n", self.ns_node, "-o", "monitor", "address", "dev", SVC_IF],
                    self.monitor_path)

    def _popen(self, name, cmd, log):
        f = open(log, "ab", buffering=0)
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((name, p, f))
        return p

    def _apiserver(self):
        state = os.path.join(self.dir, "api")
        self.token = base64.b32encode(os.urandom(15)).decode().lower()
        self.api = self._popen("apiserver", ["ip", "netns", "exec", self.ns_api, sys.executable or "python3",
                                             APISERVER, "--state-dir", state, "--bind", API_IP, "--port",
                                             str(API_PORT), "--san", API_IP, "--reset", "--token",
                                             "%s=system:serviceaccount:kube-system:kvegress" % self.token],
                               os.path.join(self.dir, "apiserver.log"))
        ready = os.path.join(state, "ready")
        if not wait(lambda: os.path.exists(ready) or self.api.poll() is not None, 30):
            raise RuntimeError("the API server did not start in 30 s")
        if self.api.poll() is not None:
            raise RuntimeError("the API server exited:\n" + tail(os.path.join(self.dir, "apiserver.log")))
        with open(ready) as f:
            self.api_url = f.read().strip()
        self.kubeconfig_admin = os.path.join(state, "kubeconfig")

    def _put(self, rel, data=None, src=None, mode=0o644):
        path = os.path.join(self.root, rel.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if src:
            shutil.copyfile(src, path)
        else:
            with open(path, "w") as f:
                f.write(data)
        os.chown(path, 0, 0)
        os.chmod(path, mode)

    def _install(self):
        """What an operator does on a node: the packages with apt-get, then configuration."""
        debs = {}
        for which in ("current", "next"):
            found = sorted(glob.glob(os.path.join(self.deb_dir, which, "kvegress*.deb")))
            if not any(os.path.basename(f).startswith("kvegress_") for f in found):
                raise RuntimeError("no kvegress_*.deb in %s/%s (tools/build-deb.sh builds them)" % (
                    self.deb_dir, which))
            for f in found:
                self._put("/root/debs-%s/%s" % (which, os.path.basename(f)), src=f)
            debs[which] = [os.path.basename(f) for f in found]
        self.debs = debs
        # apt-get inside the root (nspawn, not booted: the maintainer scripts see no running systemd, so
        # they create users and directories and start nothing). Dependencies are in the cached root.
        p = run(["systemd-nspawn", "-q", "-D", self.root, "-M", self.prefix + "-apt", "--register=no",
                 "--keep-unit", "--private-network", "--pipe", "--resolv-conf=off", "--timezone=off",
                 "--chdir=/root/debs-current", "--", "/bin/sh", "-c",
                 "DEBIAN_FRONTEND=noninteractive apt-get install -y ./kvegress_*.deb ./kvegress-selinux_*.deb"],
                timeout=300, check=False)
        self.t["apt_install"] = p.returncode
        with open(os.path.join(self.dir, "apt-install.txt"), "w") as f:
            f.write(p.stdout + p.stderr)
        if p.returncode != 0:
            raise RuntimeError("apt-get install in the root failed:\n" + (p.stdout + p.stderr)[-3000:])
        self.host["installed_files"] = run(["chroot", self.root, "dpkg", "-L", "kvegress"]).stdout.split()
        self._put("/etc/kvegress/kvegress.env", self._env(os.path.join(SRC, "systemd", "kvegress.env.example")))
        with open(os.path.join(self.dir, "api", "ca.crt"), "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        # As kvegress-kubeconfig writes them: the kubeconfig (root only, reaches the daemons through
        # LoadCredential=) names the token file, which kvpd and kvelectd read through group kvegress-api.
        self._put("/etc/kvegress/kubeconfig", mode=0o600, data="""apiVersion: v1
kind: Config
clusters:
- name: kvboot
  cluster: {server: "%s", certificate-authority-data: %s}
users:
- name: kvegress
  user: {tokenFile: /etc/kvegress/token}
contexts:
- name: kvboot
  context: {cluster: kvboot, user: kvegress}
current-context: kvboot
""" % (self.api_url, ca))
        self._put("/etc/kvegress/token", self.token + "\n", mode=0o640)
        gid = int(run(["chroot", self.root, "getent", "group", "kvegress-api"]).stdout.split(":")[2])
        os.chown(os.path.join(self.root, "etc/kvegress/token"), 0, gid)
        self._put("/usr/local/lib/kvboot/check.py", src=os.path.join(HERE, "guest", "check.py"), mode=0o755)
        self._put("/usr/local/lib/kvboot/dbus_p2p.py", src=DBUS_P2P)
        self._put("/etc/kvboot/params.json", json.dumps({"service_if": SVC_IF, "vip": VIP, "table": TABLE,
                                                     "api": [API_IP, API_PORT], "debs": debs, "renew_deadline": 6,
                                                     "service": SERVICE, "pod": POD_IP, "lease": LEASE,
                                                     "message_ids": message_ids()}))
        self._put("/etc/systemd/system/kvboot-check.service", src=os.path.join(HERE, "guest",
                                                                             "kvboot-check.service"))
        # No login prompt on the console.
        os.symlink("/dev/null", os.path.join(self.root, "etc/systemd/system/console-getty.service"))
        # What an operator enables: kvegress.target (kvpd, kvelectd and the two sockets; kvnetd then starts
        # at kvpd's first connection, which this test checks).
        run(["systemctl", "--root=" + self.root, "enable", "kvegress.target", "kvboot-check.service"])

    def _env(self, example):
        """The shipped example, with this node's values."""
        # Lease 10/6/1 s, as tests/cluster/test_restart.py: the upgrade's restarts must fit inside kvnetd's
        # grant deadline (renewDeadline less retryPeriod and the margin: 4.5 s), as with kube-vip's 15/10/2.
        want = {"vip_nodename": NODE_NAME, "vip_servicesinterface": SVC_IF, "egress_podcidr": POD_CIDR,
                "vip_leaseduration": "10", "vip_renewdeadline": "6", "vip_retryperiod": "1",
                "egress_servicecidr": SVC_CIDR,
                "KVNETD_OPTIONS": "--vip-range=%s --interface=%s --log-level=debug" % (VIP_RANGE, SVC_IF),
                "KVELECTD_OPTIONS": "--log-level=debug", "KVEGRESS_LOG_LEVEL": "debug"}
        out = []
        with open(example) as f:
            for line in f:
                k = re.match(r"#?\s*([A-Za-z_]+)=", line)
                if k and k.group(1) in want:
                    line = "%s=%s\n" % (k.group(1), want.pop(k.group(1)))
                out.append(line)
        out += ["%s=%s\n" % kv for kv in want.items()]
        return "".join(out)

    # ------------------------------------------------------------------ the boot
    def kubectl(self, *args, input=None, check=True):
        return run(["ip", "netns", "exec", self.ns_api, "kubectl", "--kubeconfig", self.kubeconfig_admin,
                    "--cache-dir", os.path.join(self.dir, "kube-cache")] + list(args), input=input, check=check,
                   timeout=60)

    def service(self):
        return json.loads(self.kubectl("get", "service", "web", "-n", "default", "-o", "json").stdout)

    def node_addrs(self):
        out = json.loads(run(["ip", "-n", self.ns_node, "-j", "addr", "show", "dev", SVC_IF]).stdout or "[]")
        return [a["local"] for link in out for a in link.get("addr_info", [])]

    def node_table(self):
        p = run(["ip", "netns", "exec", self.ns_node, "nft", "-j", "list", "table", "inet", TABLE], check=False)
        return p.stdout if p.returncode == 0 else None

    def result(self, name):
        try:
            with open(os.path.join(self.results, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def wait_result(self, name, timeout):
        return wait(lambda: os.path.exists(os.path.join(self.results, name)) or self.nspawn.poll() is not None,
                    timeout) and os.path.exists(os.path.join(self.results, name))

    def go(self, name):
        with open(os.path.join(self.results, name), "w") as f:
            f.write("go\n")

    def boot(self):
        cmd = ["systemd-nspawn", "-q", "-D", self.root, "-M", self.prefix, "-b", "--register=no", "--keep-unit",
               "--network-namespace-path=/run/netns/" + self.ns_node, "--capability=CAP_NET_ADMIN",
               "--bind=%s:/results" % self.results, "--console=read-only", "--link-journal=no",
               "--resolv-conf=off", "--timezone=off"]
        t0 = time.monotonic()
        self.nspawn = self._popen("nspawn", cmd, os.path.join(self.dir, "console.txt"))
        try:
            self._drive(t0)
        finally:
            # The probe powers off at its end; bound the wait, then stop the container ourselves.
            try:
                self.nspawn.wait(60)
            except subprocess.TimeoutExpired:
                say("the container did not power off in 60 s; stopping it")
                self._stop_nspawn()
            self.t["whole_boot"] = time.monotonic() - t0
            self.host["nspawn_rc"] = self.nspawn.returncode

    def _drive(self, t0):
        if not self.wait_result("ready.json", 120):
            return
        self.t["host_boot_to_ready"] = time.monotonic() - t0
        # The operator's part: this node, a Service with the egress annotation, and the EndpointSlice
        # controller's (one ready local endpoint).
        objs = [
            {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
             "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": "default",
                          "annotations": {"kube-vip.io/egress": "true", "kube-vip.io/loadbalancerIPs": VIP}},
             "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web-v4", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
             "endpoints": [{"addresses": [POD_IP], "nodeName": NODE_NAME,
                            "conditions": {"ready": True, "serving": True, "terminating": False},
                            "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1"}}]},
        ]
        t = time.monotonic()
        self.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in objs))
        # Seen from the host, in the container's namespace.
        got = wait(lambda: VIP in self.node_addrs() and VIP in (self.node_table() or "") and POD_IP in (
            self.node_table() or ""), 30, 0.1)
        self.t["service_to_vip_and_rules"] = time.monotonic() - t
        self.host["egress"] = {"ok": bool(got), "addrs": self.node_addrs(), "table": self.node_table()}
        # kvpd writes the status once kvnetd confirmed the VIP.
        wait(lambda: VIP in ingress_ips(self.service()), 15, 0.2)
        self.host["service"] = self.service()
        self.go("go-egress")
        # The probe upgrades the packages to N+1 while the VIP is held.
        if not self.wait_result("upgrade.json", 240):
            return
        self.host["upgraded"] = {"addrs": self.node_addrs(), "table": self.node_table(), "service": self.service()}
        self.go("go-upgraded")
        if not self.wait_result("stopped.json", 180):
            return
        self.host["stopped"] = {"addrs": self.node_addrs(), "table": self.node_table(), "service": self.service()}
        self.go("go-stopped")
        # The probe starts kvpd again (the VIP comes back), then purges the packages.
        if not self.wait_result("purge.json", 240):
            return
        self.host["purged"] = {"addrs": self.node_addrs(), "table": self.node_table(), "service": self.service()}

    def _stop_nspawn(self):
        if self.nspawn and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn: shut the container down
            try:
                self.nspawn.wait(20)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(10)

    # ------------------------------------------------------------------ clean-up
    def close(self):
        if self.closed:
            return
        self.closed = True
        self._stop_nspawn()
        for name, p, f in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            f.close()
        if self.mounted:
            if run(["umount", self.root], check=False).returncode != 0:
                run(["umount", "-l", self.root], check=False)
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        # nspawn's own per-machine directory (it cannot remove it itself when /run is not a tmpfs).
        shutil.rmtree("/run/systemd/nspawn/propagate/" + self.prefix, ignore_errors=True)
        if os.environ.get("KVBOOT_KEEP"):
            say("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def ingress_ips(svc):
    return [i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]


def wait(cond, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def tail(path, lines=80):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError as e:
        return "(%s)" % e


# ------------------------------------------------------------------------------------------------ the checks
BOOT = None


class BootTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = BOOT
        cls.ready = BOOT.result("ready.json") or {}
        cls.egress = BOOT.result("egress.json") or {}
        cls.stopped = BOOT.result("stopped.json") or {}
        cls.final = BOOT.result("final.json") or {}

    def need(self, d, what):
        if not d:
            self.fail("the probe wrote no %s (it failed earlier; see the console and journal)" % what)

    def test_00_probe_ran_to_the_end(self):
        self.need(self.final, "final.json")
        self.assertIsNone(self.final.get("error"), self.final.get("error"))
        self.assertEqual(self.final.get("failed", "").strip(), "", "failed units")

    def test_01_all_ready(self):
        self.need(self.ready, "ready.json")
        self.assertEqual(self.ready["states"], {u: "active" for u in ("kvnetd", "kvelectd", "kvpd")})
        for u, props in self.ready["units"].items():
            self.assertEqual(props["NRestarts"], "0", "%s restarted before the checks" % u)

    def test_02_kvnetd_socket_activated_by_kvpd(self):
        self.need(self.ready, "ready.json")
        net, kvpd = self.ready["units"]["kvnetd"], self.ready["units"]["kvpd"]
        self.assertNotEqual(net["UnitFileState"], "enabled", "kvnetd.service is enabled; only its socket is")
        self.assertIn("kvnetd.socket", net["TriggeredBy"])
        self.assertGreaterEqual(int(net["InactiveExitTimestampMonotonic"]),
                                int(kvpd["ExecMainStartTimestampMonotonic"]), "kvnetd started before kvpd")
        self.assertEqual(self.ready["sockets"]["kvnetd"]["ActiveState"], "active")

    def test_03_users_and_capabilities(self):
        self.need(self.ready, "ready.json")
        users = self.ready["users"]
        for u, props in self.ready["units"].items():
            st = props["status"]
            with self.subTest(unit=u):
                self.assertEqual(props["User"], u)
                self.assertEqual(st["Uid"].split()[0], str(users[u]["uid"]), "%s runs as uid %s" % (u, st["Uid"]))
                self.assertEqual(st["Gid"].split()[0], str(users[u]["gid"]))
                self.assertEqual(st["NoNewPrivs"], "1")
                self.assertEqual(st["Seccomp"], "2")
                if u == "kvnetd":
                    self.assertEqual(props["CapabilityBoundingSet"], "cap_net_admin cap_net_raw")
                    self.assertEqual(props["AmbientCapabilities"], "cap_net_admin cap_net_raw")
                    for k in ("CapPrm", "CapEff", "CapBnd"):
                        self.assertEqual(st[k], CAPS_KVNETD, "%s %s" % (u, k))
                    # systemd hands them over as ambient; kvnetd clears its ambient set at start (it runs
                    # no program, and none should inherit them).
                    self.assertEqual(st["CapAmb"], CAPS_NONE, "kvnetd CapAmb")
                else:
                    self.assertEqual(props["CapabilityBoundingSet"], "")
                    self.assertEqual(props["AmbientCapabilities"], "")
                    for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb", "CapInh"):
                        self.assertEqual(st[k], CAPS_NONE, "%s %s" % (u, k))
        kvpd_groups = self.ready["units"]["kvpd"]["status"]["Groups"].split()
        self.assertIn(str(users["kvegress"]["gid"]), kvpd_groups, "kvpd is not in group kvegress")

    def test_04_sockets(self):
        self.need(self.ready, "ready.json")
        for d in ("kvnetd", "kvelectd"):
            s = self.ready["sockets"][d]
            with self.subTest(socket=d):
                self.assertEqual(s.get("path_mode"), "660", s)
                self.assertEqual(s.get("path_owner"), "%s:kvegress" % d, s)

    def test_05_ipc_admission(self):
        self.need(self.ready, "ready.json")
        ipc = self.ready["ipc"]
        self.assertEqual(ipc["kvpd->kvnetd"]["rc"], 0, ipc["kvpd->kvnetd"])
        self.assertEqual(ipc["kvpd->kvelectd"]["rc"], 0, ipc["kvpd->kvelectd"])
        self.assertNotEqual(ipc["kvelectd->kvnetd"]["rc"], 0, ipc["kvelectd->kvnetd"])
        self.assertIn("refused", ipc["kvelectd->kvnetd"]["out"])
        self.assertNotEqual(ipc["nobody->kvelectd"]["rc"], 0, ipc["nobody->kvelectd"])

    def test_06_egress_service_gives_vip_and_rules(self):
        h = self.b.host.get("egress")
        self.assertIsNotNone(h, "the host never got to create the Service")
        self.assertIn(VIP, h["addrs"], "VIP not on %s (host view)" % SVC_IF)
        self.assertIsNotNone(h["table"], "no table inet %s (host view)" % TABLE)
        self.assertIn(VIP, h["table"])
        self.assertIn(POD_IP, h["table"])
        self.need(self.egress, "egress.json")
        self.assertIn(VIP, self.egress["eth1"], "VIP not on %s (container view)" % SVC_IF)
        self.assertIn(VIP, self.egress["nft"] or "")
        svc = self.b.host["service"]
        self.assertIn(VIP, ingress_ips(svc), "status.loadBalancer.ingress")
        self.assertEqual(svc["metadata"]["annotations"].get("kube-vip.io/vipHost"), NODE_NAME)

    def test_07_kvnetd_restart_does_not_flap(self):
        self.need(self.egress, "egress.json")
        r = self.egress["restart"]
        self.assertEqual(r["rc"], 0, r["stderr"])
        self.assertNotEqual(r["old_pid"], r["new_pid"], "kvnetd was not restarted")
        self.assertEqual(r["active"], "active")
        self.assertTrue(r["relisted"], "kvpd did not replay its state to the new kvnetd")
        self.assertEqual([e for e in r["monitor"] if VIP in e], [], "VIP events during the restart")
        self.assertIn(VIP, r["eth1_after"])
        self.assertIn(VIP, r["nft_after"] or "")

    def test_08_whole_run_vip_added_twice_removed_twice(self):
        # Added at the Service, removed by `systemctl stop kvpd`; added again when kvpd starts before the
        # purge, removed by the purge. Nothing at the kvnetd restart or the upgrade.
        with open(self.b.monitor_path) as f:
            events = [line.strip() for line in f if VIP + "/" in line]
        added = [e for e in events if not e.startswith("Deleted")]
        deleted = [e for e in events if e.startswith("Deleted")]
        self.assertEqual((len(added), len(deleted)), (2, 2), "\n".join(events))

    # ---------------------------------------------------------------- the operator's view (issue 12)
    def ops(self):
        o = self.b.result("ops.json")
        self.need(o, "ops.json")
        return o

    def web(self, st):
        web = [s for s in st["services"] if s["service"] == SERVICE]
        self.assertEqual(len(web), 1, json.dumps(st, indent=1))
        return web[0]

    def test_17_kvctl_status_and_rules(self):
        """kvctl, installed by the package, against the daemons systemd runs: the Service held, its VIP bound,
        its SNAT rule as nft prints it; the same for an operator in group kvegress; exit codes."""
        k = self.ops()["kvctl"]
        for which in ("status_json", "status_json_operator"):
            with self.subTest(which=which):
                r = k[which]
                self.assertEqual(r["rc"], 0, r)
                st = json.loads(r["out"])
                self.assertEqual(st["health"], "healthy")
                self.assertEqual(st["node"], NODE_NAME)
                self.assertEqual({d: v["reachable"] for d, v in st["daemons"].items()},
                                 {d: True for d in METRICS_DAEMONS})
                self.assertEqual(len(st["services"]), 1, st["services"])
                web = self.web(st)
                self.assertEqual((web["state"], web["role"], web["lease"]), ("ready", "holder", LEASE))
                self.assertEqual([(v["address"], v["interface"]) for v in web["vips_bound"]], [(VIP, SVC_IF)])
                self.assertGreater(web["vips_bound"][0]["grant_expires_in_ms"], 0)
                self.assertEqual(web["vips_wanted"], [VIP])
                self.assertEqual(web["pods"], [POD_IP])
                self.assertEqual(web["snat"]["vip4"], VIP)
                self.assertEqual(web["snat"]["pods"], [POD_IP])
                self.assertTrue(web["programmed"])
                self.assertIsNone(web["last_error"])
                self.assertEqual((web["campaign"]["leading"], web["campaign"]["holder"]), (True, NODE_NAME))
                self.assertEqual(list(st["campaigns"]), [LEASE])
        self.assertEqual(k["status"]["rc"], 0, k["status"])
        self.assertIn("node %s (kvegress " % NODE_NAME, k["status"]["out"])
        self.assertIn("%s: ready, holder of lease %s" % (SERVICE, LEASE), k["status"]["out"])
        self.assertIn("%s on %s" % (VIP, SVC_IF), k["status"]["out"])
        self.assertEqual(k["vips_json"]["rc"], 0)
        self.assertEqual([(v["service"], v["address"]) for v in json.loads(k["vips_json"]["out"])], [(SERVICE, VIP)])
        self.assertRegex(k["leases"]["out"], r"(?m)^%s +yes +%s " % (re.escape(LEASE), NODE_NAME))
        rules = k["rules"]
        self.assertEqual(rules["rc"], 0, rules)
        # The class chain (kvnetd/nft.h) and the Service's one pod's VIP map element.
        self.assertEqual(rules["out"].count("snat ip to ip saddr map @vip4"), 1, rules["out"])
        self.assertEqual(rules["out"].count('comment "%s" : %s' % (SERVICE, VIP)), 1, rules["out"])
        self.assertEqual(k["rules_unknown"]["rc"], 1, k["rules_unknown"])
        self.assertIn("default/nothere has no egress on this node", k["rules_unknown"]["err"])
        # Neither root nor group kvegress: refused by the daemons, so down (2).
        self.assertEqual(k["nobody_no_group"]["rc"], 2)

    def test_18_kvctl_stuck_and_stopped_daemons(self):
        """kvelectd stopped with SIGSTOP: kvctl gives up at its timeout (1 s) and names it (exit 1), and
        everything is healthy once it runs again; kvpd stopped by systemctl: exit 2, kvpd down."""
        k = self.ops()["kvctl"]
        r = k["status_kvelectd_stopped"]
        st = json.loads(r["out"])
        self.assertEqual(r["rc"], 1, r)
        self.assertEqual(st["health"], "degraded")
        self.assertFalse(st["daemons"]["kvelectd"]["reachable"])
        self.assertIn("no answer within 1.0s", st["daemons"]["kvelectd"]["error"])
        self.assertTrue(st["daemons"]["kvnetd"]["reachable"] and st["daemons"]["kvpd"]["reachable"])
        self.assertLess(r["seconds"], 2.0, "kvctl --timeout=1 took %.2f s" % r["seconds"])
        self.assertTrue(k["healthy_again"], "kvctl status not healthy in 20 s after SIGCONT")
        self.assertEqual({u: v["NRestarts"] for u, v in k["units_after"].items()}, {u: "0" for u in METRICS_DAEMONS})
        self.need(self.stopped, "stopped.json")
        r = self.stopped["kvctl"]
        st = json.loads(r["out"])
        self.assertEqual(r["rc"], 2, r)
        self.assertEqual(st["health"], "down")
        self.assertFalse(st["daemons"]["kvpd"]["reachable"])
        self.assertTrue(st["daemons"]["kvnetd"]["reachable"])
        self.assertEqual(st["services"], [], "kvnetd still holds something after kvpd's graceful stop")

    def scraped(self, r):
        self.assertEqual((r["rc"], r["code"]), (0, 200), r)
        samples, types = parse_metrics(r["body"])
        self.assertEqual({n: t for n, t in types.items() if len(t) != 1}, {}, "a family's TYPE not once")
        return samples

    def test_19_metrics_socket(self):
        """kvegress-metrics.socket: nothing listens until it is enabled; then curl gets the three daemons'
        metrics (kube-vip's names), one kvctl per connection; a stuck daemon is reported as down within the
        unit's 2 s timeout; with kvpd stopped the scrape still answers for the other two."""
        m = self.ops()["metrics"]
        self.assertEqual(m["before_enable"]["code"], 0, "something answered on :9405 before the socket was enabled")
        self.assertEqual(m["enable"]["rc"], 0, m["enable"])
        s = self.scraped(m["scrape"])
        for d in METRICS_DAEMONS:
            self.assertEqual(s.get(("kvegress_daemon_up", (("daemon", d),))), 1.0, d)
        self.assertEqual(s.get(("kube_vip_is_leader", (("lease", LEASE),))), 1.0)
        self.assertEqual(s.get(("kube_vip_leader_election_transitions_total", ())), 1.0)
        self.assertEqual(s.get(("kvegress_failover_duration_seconds_count", ())), 0.0)  # nobody held it before
        self.assertEqual(s.get(("kvegress_vips_bound", ())), 1.0)
        self.assertEqual(s.get(("kvegress_egress_services", ())), 1.0)
        self.assertEqual(s.get(("kvegress_egress_pods", ())), 1.0)
        self.assertEqual(s.get(("kvegress_fences_total", ())), 0.0)
        # kvnetd was restarted (test_07): kvpd's replay to the new kvnetd changed nothing, so the new kvnetd
        # has made no nft transaction at all (an empty batch is not one).
        self.assertEqual(s.get(("kvegress_nft_transactions_total", (("result", "failed"),))), 0.0)
        self.assertEqual(s.get(("kvegress_nft_transactions_total", (("result", "ok"),))), 0.0)
        self.assertEqual(s.get(("kvegress_nft_transaction_duration_seconds_count", ())), 0.0)
        self.assertGreaterEqual(s.get(("kvegress_change_to_snat_seconds_count", ())) or 0, 1.0)
        names = {n for n, _ in s}
        for fam in ("kube_vip_build_info", "kube_vip_service_reconcile_errors_total",
                    "kube_vip_service_reconcile_duration_seconds_bucket", "kvegress_failover_duration_seconds_count",
                    "kvegress_nft_transaction_duration_seconds_bucket", "kvegress_conntrack_entries_deleted_total",
                    "kvegress_api_watch_restarts_total", "kvegress_api_relists_total",
                    "kvegress_event_writes_dropped_total", "kvegress_event_loop_lag_seconds_bucket"):
            self.assertIn(fam, names)
        for d in METRICS_DAEMONS:
            self.assertIn(("kvegress_event_loop_lag_seconds_count", (("daemon", d),)), s, d)
        self.assertEqual(m["not_found"]["code"], 404, m["not_found"])
        self.assertEqual(m["socket"]["ActiveState"], "active")
        self.assertEqual(m["socket"]["Listen"], "127.0.0.1:9405 (Stream)")
        # Two connections so far (the scrape and the 404), each its own kvctl.
        self.assertEqual(m["socket"]["NAccepted"], "2", m["socket"])
        st = self.scraped(m["scrape_kvelectd_stopped"])
        self.assertEqual(st.get(("kvegress_daemon_up", (("daemon", "kvelectd"),))), 0.0)
        self.assertEqual(st.get(("kvegress_daemon_up", (("daemon", "kvnetd"),))), 1.0)
        self.assertIsNone(st.get(("kube_vip_is_leader", (("lease", LEASE),))), "kvelectd's metric from a stopped kvelectd")
        self.assertLess(m["scrape_kvelectd_stopped"]["seconds"], 4.0)
        self.assertEqual(m["socket_after"]["NAccepted"], "3", m["socket_after"])
        self.need(self.stopped, "stopped.json")
        st = self.scraped(self.stopped["scrape"])
        self.assertEqual([st.get(("kvegress_daemon_up", (("daemon", d),))) for d in METRICS_DAEMONS], [0.0, 1.0, 1.0])
        self.assertEqual(st.get(("kvegress_vips_bound", ())), 0.0)
        # kvelectd withdrew the campaign at kvpd's stop: no lease left to report.
        self.assertIsNone(st.get(("kube_vip_is_leader", (("lease", LEASE),))))

    def test_20_journal_catalogue(self):
        """journalctl filters by MESSAGE_ID and by KVEGRESS_SERVICE/_VIP/_POD/_LEASE and finds exactly the expected
        lines; `journalctl -x` explains them from the catalogue the package installed (systemd's dpkg trigger
        ran journalctl --update-catalog)."""
        o = self.ops()
        ids = message_ids()
        self.assertTrue(o["catalog_file"])
        self.assertEqual(sorted(o["catalog_listed"]), sorted(ids.values()), "journalctl --list-catalog")
        j = o["journal"]
        # Bound once, when the Service came: not again at the kvnetd restart (adopted, not re-added).
        self.assertEqual(len(j["vip_bound"]), 1, j["vip_bound"])
        self.assertEqual(j["vip_bound_any"], j["vip_bound"])
        self.assertEqual(j["vip_bound_by_vip"], j["vip_bound"])
        b = j["vip_bound"][0]
        self.assertEqual((b["SYSLOG_IDENTIFIER"], b["KVEGRESS_SERVICE"], b["KVEGRESS_VIP"], b["PRIORITY"]),
                         ("kvnetd", SERVICE, VIP, "6"))
        self.assertEqual(b["MESSAGE"], "bound VIP %s on %s for %s" % (VIP, SVC_IF, SERVICE))
        # Applied once, naming the pod (the replay after the kvnetd restart changed nothing).
        self.assertEqual(len(j["egress_applied"]), 1, j["egress_applied"])
        self.assertEqual(j["egress_applied_by_pod"], j["egress_applied"])
        self.assertEqual(j["egress_applied"][0]["KVEGRESS_POD"], POD_IP)
        self.assertEqual(len(j["leadership_gained"]), 1, j["leadership_gained"])
        self.assertEqual(j["leadership_gained"][0]["KVEGRESS_NODE"], NODE_NAME)
        for what in ("vip_released", "fenced", "refused"):
            self.assertEqual(j[what], [], what)
        # Every line about the Service is one of the catalogue's (bound, applied) or a plain log line of kvpd.
        self.assertEqual(sorted(e["MESSAGE_ID"] for e in j["service_any"] if e["MESSAGE_ID"]),
                         sorted([ids["VIP_BOUND"], ids["EGRESS_APPLIED"]]), j["service_any"])
        x = j["explained"]
        self.assertIn("Subject: VIP %s bound for %s" % (VIP, SERVICE), x)
        self.assertIn("Defined-By: kvegress", x)
        self.assertIn("kvnetd bound the VIP %s of Service %s on this" % (VIP, SERVICE), x)
        # At kvpd's graceful stop: released once, egress removed once.
        self.need(self.stopped, "stopped.json")
        self.assertEqual(len(self.stopped["vip_released"]), 1, self.stopped["vip_released"])
        self.assertEqual(self.stopped["vip_released"][0]["KVEGRESS_VIP"], VIP)
        self.assertEqual(len(self.stopped["egress_removed"]), 1, self.stopped["egress_removed"])
        self.assertEqual(self.stopped["egress_removed"][0]["KVEGRESS_POD"], POD_IP)

    def test_16_lintian_clean(self):
        """lintian at its default level, on the packages this run installed: no error, no warning (the
        overrides in debian/*.lintian-overrides each say why)."""
        self.assertIsNotNone(self.b.lintian, "lintian is not installed (tools/setup.sh installs it)")
        try:
            rc = self.b.lintian.wait(300)
        except subprocess.TimeoutExpired:
            self.fail("lintian did not finish in 5 minutes")
        with open(self.b.lintian_path) as f:
            out = f.read()
        # lintian exits 0 (clean or only overridden/info tags) or 1 (tags at the fail-on level: errors).
        self.assertIn(rc, (0, 1), out)
        tags = [line.strip() for line in out.splitlines() if re.match(r"[EWX]: ", line)]
        self.assertEqual(tags, [], out)

    def test_13_installed_with_apt(self):
        files = self.b.host.get("installed_files") or []
        for f in ("/usr/sbin/kvnetd", "/usr/sbin/kvelectd", "/usr/sbin/kvpd", "/lib/systemd/system/kvegress.target",
                  "/usr/lib/sysusers.d/kvegress.conf", "/usr/lib/tmpfiles.d/kvegress.conf",
                  "/etc/kvegress/kvegress.env", "/usr/bin/kvegress-kubeconfig", "/usr/bin/kvctl",
                  "/usr/share/man/man1/kvctl.1.gz", "/lib/systemd/system/kvegress-metrics.socket",
                  "/lib/systemd/system/kvegress-metrics@.service", "/lib/systemd/system/kvpd.socket",
                  "/usr/lib/systemd/catalog/kvegress.catalog"):
            self.assertIn(f, files)
        self.need(self.ready, "ready.json")
        self.assertEqual(self.ready["packages"].get("kvegress"), "install ok installed " + self.ready["version_n"])
        self.assertEqual(self.ready["packages"].get("kvegress-selinux"),
                         "install ok installed " + self.ready["version_n"])
        self.assertIn("/etc/kvegress/kvegress.env", self.ready["conffiles"])
        # SELinux is not enabled here: the module is shipped, not loaded.
        self.assertFalse(self.ready["selinux_enabled"])

    def test_14_upgrade_moves_nothing(self):
        u = self.b.result("upgrade.json")
        self.need(u, "upgrade.json")
        self.assertEqual(u["rc"], 0, u["out"])
        self.assertEqual(u["version_after"], u["version_next"], "not upgraded")
        self.assertNotEqual(u["version_before"], u["version_after"])
        for d in ("kvnetd", "kvelectd", "kvpd"):
            with self.subTest(daemon=d):
                self.assertNotEqual(u["pids_before"][d], u["pids_after"][d], "%s was not restarted" % d)
                self.assertEqual(u["active_after"][d], "active")
                self.assertNotIn("(deleted)", u["exe_after"][d], "%s still runs the old binary" % d)
        self.assertEqual([e for e in u["ip_monitor"] if VIP in e], [], "VIP events during the upgrade")
        self.assertEqual(u["nft_monitor"], [], "nft events during the upgrade")
        self.assertEqual(u["nft_before"], u["nft_after"], "table inet kvegress changed during the upgrade")
        self.assertIn(VIP, u["eth1_after"])
        h = self.b.host.get("upgraded")
        self.assertIsNotNone(h)
        self.assertIn(VIP, h["addrs"])
        self.assertIn(VIP, ingress_ips(h["service"]), "status.loadBalancer.ingress after the upgrade")

    def test_15_purge_leaves_nothing(self):
        p = self.b.result("purge.json")
        self.need(p, "purge.json")
        self.assertIn(VIP, p["eth1_before"], "kvpd did not bind the VIP again before the purge")
        self.assertEqual(p["rc"], 0, p["out"])
        self.assertEqual(p["users_left"], [], "users or groups left")
        self.assertEqual(p["paths_left"], [], "files left")
        self.assertIsNone(p["nft_after"], "table inet kvegress left")
        self.assertNotIn(VIP, p["eth1_after"])
        self.assertEqual(p["units_left"], "", "units still loaded")
        self.assertEqual(p["catalog_left"], [], "the catalogue's entries outlived the package")
        for pkg, st in p["dpkg_status"].items():
            self.assertIn(st, ("", "un", "pn"), "%s not purged: %s" % (pkg, st))
        h = self.b.host.get("purged")
        self.assertIsNotNone(h)
        self.assertNotIn(VIP, h["addrs"])
        self.assertIsNone(h["table"])

    def test_09_stop_kvpd_removes_vip_and_rules(self):
        self.need(self.stopped, "stopped.json")
        self.assertEqual(self.stopped["rc"], 0)
        self.assertEqual(self.stopped["kvpd"]["ActiveState"], "inactive", self.stopped["kvpd"])
        self.assertEqual(self.stopped["kvpd"]["Result"], "success", self.stopped["kvpd"])
        self.assertNotIn(VIP, self.stopped["eth1"])
        self.assertNotIn(VIP, self.stopped["nft"] or "")
        self.assertNotIn(POD_IP, self.stopped["nft"] or "")
        h = self.b.host.get("stopped")
        self.assertIsNotNone(h)
        self.assertNotIn(VIP, h["addrs"])
        self.assertNotIn(VIP, h["table"] or "")
        # A graceful stop also clears what kvpd wrote on the Service.
        self.assertEqual(ingress_ips(h["service"]), [])
        self.assertNotIn("kube-vip.io/vipHost", h["service"]["metadata"].get("annotations", {}))
        self.assertEqual(self.stopped["kvnetd_active"], "active", "kvnetd is independent of kvpd")

    def test_10_journal_structured_fields(self):
        self.need(self.egress, "egress.json")
        for u, j in self.egress["journal"].items():
            with self.subTest(unit=u):
                self.assertGreater(j["ours"], 0, "no message with SYSLOG_IDENTIFIER=%s" % u)
                self.assertGreater(j["with_code_file"], 0, "no CODE_FILE in %s's messages: %s" % (u, j["sample"]))

    def test_11_online_security_scores(self):
        self.need(self.egress, "egress.json")
        for u, s in self.egress["security"].items():
            with self.subTest(unit=u):
                self.assertIsNotNone(s["score"], s["line"])
                self.assertLessEqual(s["score"], BUDGET[u], s["line"])


def report(b):
    """The measured figures, one table."""
    ready = b.result("ready.json") or {}
    egress = b.result("egress.json") or {}
    stopped = b.result("stopped.json") or {}
    rows = [("boot to all three ready (container's clock)", "%s ms" % ready.get("boot_to_ready_ms")),
            ("nspawn start to probe's first report (host)", "%.0f ms" % (1000 * b.t.get("host_boot_to_ready", 0))),
            ("Service created to VIP and rules (host view)",
             "%.0f ms" % (1000 * b.t.get("service_to_vip_and_rules", 0))),
            ("systemctl restart kvnetd", "%s ms" % egress.get("restart", {}).get("restart_ms")),
            ("systemctl stop kvpd (VIP and rules removed)", "%s ms" % stopped.get("stop_ms")),
            ("whole boot, test and poweroff", "%.1f s" % b.t.get("whole_boot", 0))]
    upgrade = b.result("upgrade.json") or {}
    purge = b.result("purge.json") or {}
    rows.append(("apt-get install of N+1 (restarts included)", "%s ms" % upgrade.get("upgrade_ms")))
    rows.append(("VIP / nft events during the upgrade", "%s / %s" % (
        len([e for e in upgrade.get("ip_monitor", []) if VIP in e]), len(upgrade.get("nft_monitor", [])))))
    rows.append(("apt-get purge (VIP held before)", "%s ms" % purge.get("purge_ms")))
    ops = b.result("ops.json") or {}
    k, m = ops.get("kvctl") or {}, ops.get("metrics") or {}
    for label, r in (("kvctl --json status (all three answer)", k.get("status_json")),
                     ("kvctl --timeout=1 status, kvelectd SIGSTOPped", k.get("status_kvelectd_stopped")),
                     ("kvctl --json status, kvpd stopped", stopped.get("kvctl")),
                     ("curl /metrics (one kvctl per connection)", m.get("scrape")),
                     ("curl /metrics, kvelectd SIGSTOPped (unit: --timeout=2)", m.get("scrape_kvelectd_stopped"))):
        if r:
            rows.append((label, "%.0f ms (%s)" % (1000 * r["seconds"], "exit %d" % r["rc"] if "code" not in r
                                                  else "HTTP %d, %d bytes" % (r["code"], len(r["body"])))))
    rows.append(("IPAddressDeny= enforced in this container", str(egress.get("ip_address_deny_enforced"))))
    for u, s in (egress.get("security") or {}).items():
        rows.append(("systemd-analyze security %s (online)" % u, "%s (budget %s)" % (s["score"], BUDGET[u])))
    for u, m in (egress.get("memory") or {}).items():
        rows.append(("memory %s: MemoryCurrent / Pss / VmRSS" % u,
                     "%s / %s kB / %s" % (m["MemoryCurrent"], m["Pss_kib"], m["VmRSS"])))
    w = max(len(r[0]) for r in rows)
    print("\n%-*s  %s" % (w, "measured", "value"))
    for k, v in rows:
        print("%-*s  %s" % (w, k, v))


def main():
    global BOOT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb-dir", required=True, help="tools/build-deb.sh's output (current/ and next/)")
    ap.add_argument("--build-deb", help="tools/build-deb.sh: run first (it builds once per tree)")
    ap.add_argument("unittest_args", nargs="*")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, mounts, systemd-nspawn)")
        return SKIP
    for tool in ("systemd-nspawn", "kubectl", "nft", "ip", "openssl", "chroot"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed (tools/setup.sh installs it)" % tool)
            return SKIP
    if a.build_deb:
        build_debs(a.build_deb, a.deb_dir)
    try:
        root = cached_root()
    except Skip as e:
        print("SKIP: %s" % e)
        return SKIP

    BOOT = Boot(root, os.path.abspath(a.deb_dir))
    atexit.register(BOOT.close)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        BOOT.setup()
        BOOT.boot()
        prog = unittest.main(argv=[sys.argv[0], "-v"] + a.unittest_args, exit=False)
        report(BOOT)
        ok = prog.result.wasSuccessful()
        if not ok:
            print("\n----- container console (tail)\n" + tail(os.path.join(BOOT.dir, "console.txt"), 40))
            print("\n----- container journal (tail)\n" + tail(os.path.join(BOOT.results, "journal.txt"), 150))
            try:
                with open(os.path.join(BOOT.results, "journal.txt")) as f:
                    ours = [line.rstrip() for line in f if re.search(r" (kvnetd|kvelectd|kvpd)\[\d+\]: ", line)]
                print("\n----- the daemons' own journal lines (first 200)\n" + "\n".join(ours[:200]))
            except OSError:
                pass
            print("\n----- API server (tail)\n" + tail(os.path.join(BOOT.dir, "apiserver.log"), 20))
        return 0 if ok else 1
    finally:
        BOOT.close()


if __name__ == "__main__":
    sys.exit(main())
