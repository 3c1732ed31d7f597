#!/usr/bin/python3
"""Runs inside the booted container as kvboot-check.service (root, a oneshot started at boot), and writes what
it saw to /results (bound from the host), step by step, for boot-test.py to judge. It judges nothing itself:
every observation goes into the JSON, so one failed check does not hide the next.

Handshake with the host (files in /results): this script writes ready.json and waits for go-egress (the host
has created the egress Service and seen the VIP); it writes egress.json and stopped.json, waiting for
go-stopped after the latter; it ends with final.json and journal.txt. SuccessAction=/FailureAction=poweroff in
the unit end the boot either way. Every wait is bounded.
"""
import grp
import json
import os
import pwd
import subprocess
import sys
import time
import traceback

sys.path.insert(0, "/usr/local/lib/kvboot")
from dbus_p2p import Connection, DBusError  # noqa: E402

R = "/results"
SERVICES = ("kvnetd", "kvelectd", "kvpd")
SOCKETS = {"kvnetd": "/run/kvnetd/kvnetd.sock", "kvelectd": "/run/kvelectd/kvelectd.sock"}
CALLS = {"kvnetd": ("/io/kvegress/Net1", "io.kvegress.Net1", "ListVips"),
         "kvelectd": ("/io/kvegress/Elect1", "io.kvegress.Elect1", "ListCampaigns")}
with open("/etc/kvboot/params.json") as f:
    P = json.load(f)


def sh(*cmd, timeout=30, check=False, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s: rc=%d %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p


def show(unit, *props):
    args = ["systemctl", "show"] + ([unit] if unit else []) + ["-p", ",".join(props)]
    out = {}
    for line in sh(*args).stdout.splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def write(name, obj):
    tmp = os.path.join(R, "." + name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.rename(tmp, os.path.join(R, name))


def wait_file(name, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(os.path.join(R, name)):
            return True
        time.sleep(0.05)
    return False


def wait(cond, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def active(unit):
    return sh("systemctl", "is-active", unit).stdout.strip()


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                         "Seccomp", "VmRSS"):
                    out[k] = v.strip()
    except OSError as e:
        out["error"] = str(e)
    return out


def pss_kib(pid):
    try:
        with open("/proc/%s/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def call_as(user, target):
    """Calls a read-only method of kvnetd or kvelectd as user (with its primary and supplementary groups, as
    systemd would start it): "ok: ...", or what refused it."""
    path, iface, member = CALLS[target]
    code = ("import sys; sys.path.insert(0, '/usr/local/lib/kvboot')\n"
            "from dbus_p2p import Connection, DBusError\n"
            "try:\n"
            "    with Connection(%r, timeout=10) as c:\n"
            "        print('ok:', c.call(%r, %r, %r))\n"
            "except (DBusError, OSError) as e:\n"
            "    print('refused: %%s: %%s' %% (type(e).__name__, e)); sys.exit(1)\n") % (
                SOCKETS[target], path, iface, member)
    p = sh("setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", "/usr/bin/python3", "-c", code,
           timeout=30)
    return {"rc": p.returncode, "out": (p.stdout + p.stderr).strip()[-500:],
            "groups": [g.gr_name for g in grp.getgrall() if user in g.gr_mem]}


def addrs(ifname):
    out = json.loads(sh("ip", "-j", "addr", "show", "dev", ifname).stdout or "[]")
    return [a["local"] for link in out for a in link.get("addr_info", [])]


def nft_table():
    p = sh("nft", "-j", "list", "table", "inet", P["table"])
    return p.stdout if p.returncode == 0 else None


def boot_phase():
    res = {}
    t0 = int(show(None, "UserspaceTimestampMonotonic")["UserspaceTimestampMonotonic"])
    # All three active (Type=notify: READY=1 seen), or one failed: bounded.
    states = wait(lambda: (lambda s: s if all(v in ("active", "failed") for v in s.values()) else None)(
        {u: active(u + ".service") for u in SERVICES}), 60)
    res["states"] = states or {u: active(u + ".service") for u in SERVICES}
    res["units"] = {}
    for u in SERVICES:
        props = show(u + ".service", "ActiveState", "SubState", "Result", "MainPID", "User", "Group",
                     "SupplementaryGroups", "CapabilityBoundingSet", "AmbientCapabilities", "PrivateUsers",
                     "NRestarts", "ExecMainStartTimestampMonotonic", "InactiveExitTimestampMonotonic",
                     "ActiveEnterTimestampMonotonic", "TriggeredBy", "UnitFileState", "WatchdogUSec",
                     "MemoryCurrent", "StatusText")
        props["status"] = proc_status(props.get("MainPID", "0"))
        res["units"][u] = props
    res["boot_to_ready_ms"] = None
    enter = [int(res["units"][u].get("ActiveEnterTimestampMonotonic") or 0) for u in SERVICES]
    if all(enter):
        res["boot_to_ready_ms"] = round((max(enter) - t0) / 1000, 1)
    res["sockets"] = {}
    for d, path in SOCKETS.items():
        s = show(d + ".socket", "ActiveState", "NAccepted", "NConnections", "UnitFileState")
        try:
            st = os.stat(path)
            s["path_mode"] = "%o" % (st.st_mode & 0o7777)
            s["path_owner"] = "%s:%s" % (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name)
        except (OSError, KeyError) as e:
            s["path_error"] = str(e)
        res["sockets"][d] = s
    res["users"] = {}
    for u in SERVICES + ("kvegress",):
        try:
            res["users"][u] = {"uid": pwd.getpwnam(u).pw_uid} if u != "kvegress" else {}
        except KeyError:
            res["users"][u] = {"error": "no such user"}
        try:
            res["users"][u]["gid"] = grp.getgrnam(u).gr_gid
        except KeyError:
            pass
    res["packages"] = {pkg: dpkg_status(pkg) for pkg in ("kvegress", "kvegress-selinux")}
    res["version_n"] = deb_version(P["debs"]["current"])
    res["conffiles"] = sh("dpkg-query", "-W", "-f=${Conffiles}", "kvegress").stdout
    res["selinux_enabled"] = sh("selinuxenabled").returncode == 0
    res["ipc"] = {
        "kvpd->kvnetd": call_as("kvpd", "kvnetd"),
        "kvpd->kvelectd": call_as("kvpd", "kvelectd"),
        "kvelectd->kvnetd": call_as("kvelectd", "kvnetd"),
        "nobody->kvelectd": call_as("nobody", "kvelectd"),
    }
    return res


def egress_phase():
    res = {"eth1": addrs(P["service_if"]), "nft": nft_table()}
    res["memory"] = {}
    for u in SERVICES:
        s = show(u + ".service", "MemoryCurrent", "MainPID", "TasksCurrent")
        pid = s.get("MainPID", "0")
        res["memory"][u] = {"MemoryCurrent": s.get("MemoryCurrent"), "TasksCurrent": s.get("TasksCurrent"),
                            "VmRSS": proc_status(pid).get("VmRSS"), "Pss_kib": pss_kib(pid)}

    # kvnetd restarted alone: the VIP must not flap (it keeps the address, kvpd replays its state).
    mon_path = os.path.join(R, "ip-monitor-restart.txt")
    with open(mon_path, "w") as out:
        mon = subprocess.Popen(["ip", "-o", "monitor", "address", "dev", P["service_if"]], stdout=out,
                               stderr=subprocess.STDOUT)
        try:
            time.sleep(0.3)
            old = show("kvnetd.service", "MainPID")["MainPID"]
            t = time.monotonic()
            rr = sh("systemctl", "restart", "kvnetd.service", timeout=60)
            restart_ms = round((time.monotonic() - t) * 1000, 1)
            new = show("kvnetd.service", "MainPID")["MainPID"]
            # kvpd reconnects (through the socket) and replays; wait until kvnetd lists the VIP again.
            listed = wait(lambda: P["vip"] in call_as("kvpd", "kvnetd")["out"], 15, 0.2)
            time.sleep(2)  # a flap would be a delete now, or a failed renewal fencing the VIP soon after
        finally:
            mon.terminate()
            try:
                mon.wait(5)
            except subprocess.TimeoutExpired:
                mon.kill()
    with open(mon_path) as f:
        events = f.read().splitlines()
    res["restart"] = {"rc": rr.returncode, "stderr": rr.stderr.strip(), "old_pid": old, "new_pid": new,
                      "restart_ms": restart_ms, "relisted": bool(listed), "monitor": events,
                      "active": active("kvnetd.service"), "eth1_after": addrs(P["service_if"]),
                      "nft_after": nft_table()}

    # Structured journal fields of our own messages.
    res["journal"] = {}
    for u in SERVICES:
        p = sh("journalctl", "-b", "-o", "json", "--no-pager", "_SYSTEMD_UNIT=%s.service" % u, timeout=30)
        entries = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == u]
        with_code = [e for e in ours if e.get("CODE_FILE")]
        sample = with_code[0] if with_code else (ours[0] if ours else {})
        res["journal"][u] = {"entries": len(entries), "ours": len(ours), "with_code_file": len(with_code),
                             "sample": {k: sample.get(k) for k in ("MESSAGE", "SYSLOG_IDENTIFIER", "CODE_FILE",
                                                                   "CODE_LINE", "CODE_FUNC", "PRIORITY")}}

    # Does IPAddressDeny= hold here? (systemd's BPF firewall needs the unified cgroup hierarchy.) A
    # transient unit with IPAddressDeny=any tries the API server; reported, not judged.
    p = sh("systemd-run", "--quiet", "--wait", "--pipe", "-p", "IPAddressDeny=any", "/usr/bin/python3", "-c",
           "import socket; socket.create_connection((%r, %d), 3)" % tuple(P["api"]), timeout=30)
    res["ip_address_deny_enforced"] = p.returncode != 0

    # systemd-analyze security, online (the loaded units, as the manager sees them).
    res["security"] = {}
    for u in SERVICES:
        p = sh("systemd-analyze", "security", "--no-pager", u + ".service", timeout=60)
        line = [x for x in p.stdout.splitlines() if "Overall exposure level" in x]
        score = None
        if line:
            try:
                score = float(line[0].split(":")[1].split()[0])
            except (IndexError, ValueError):
                pass
        res["security"][u] = {"score": score, "line": line[0].strip() if line else p.stderr.strip()[-300:]}
        with open(os.path.join(R, "security-%s.txt" % u), "w") as f:
            f.write(p.stdout)
    return res


# The journal catalogue's ids (shared/catalog.h), as the host passes them.
MSG = P.get("message_ids", {})
METRICS_URL = "http://127.0.0.1:9405/metrics"


def kvctl(*args, user=None, timeout=30):
    """kvctl as root, or as user with group kvegress only (an operator who is not root); rc, output, seconds."""
    cmd = ["kvctl"] + list(args)
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", "nogroup", "--groups", "kvegress", "--"] + cmd
    t = time.monotonic()
    p = sh(*cmd, timeout=timeout)
    return {"rc": p.returncode, "out": p.stdout, "err": p.stderr.strip()[-2000:],
            "seconds": round(time.monotonic() - t, 3)}


def curl(url=METRICS_URL):
    """One scrape with curl, as Prometheus would: HTTP code, body, seconds."""
    t = time.monotonic()
    p = sh("curl", "-sS", "-m", "10", "-w", "\n%{http_code}", url, timeout=30)
    body, _, code = p.stdout.rpartition("\n")
    return {"rc": p.returncode, "code": int(code) if code.isdigit() else 0, "body": body,
            "err": p.stderr.strip(), "seconds": round(time.monotonic() - t, 3)}


def journal(*matches, extra=()):
    """The boot's journal entries matching every FIELD=value (journalctl's own filtering), as JSON."""
    p = sh("journalctl", "-b", "--no-pager", "-o", "json", *extra, *matches, timeout=30)
    out = []
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            out.append({k: e.get(k) for k in ("MESSAGE", "MESSAGE_ID", "SYSLOG_IDENTIFIER", "PRIORITY",
                                              "KVEGRESS_SERVICE", "KVEGRESS_VIP", "KVEGRESS_POD",
                                              "KVEGRESS_NODE", "KVEGRESS_LEASE")})
    return out


def journal_explained(*matches):
    """`journalctl -x` of the matching entries: the catalogue's text under each line."""
    p = sh("journalctl", "-b", "--no-pager", "-x", *matches, timeout=30)
    return p.stdout[-6000:]


def ops_phase():
    """The operator's view under systemd (issue 12): kvctl, the metrics socket, the journal catalogue."""
    svc, vip, pod, lease = P["service"], P["vip"], P["pod"], P["lease"]
    res = {"kvctl": {}, "journal": {}, "metrics": {}}
    k = res["kvctl"]
    k["status_json"] = kvctl("--json", "status")
    k["status_json_operator"] = kvctl("--json", "status", user="nobody")
    k["status"] = kvctl("status")
    k["vips_json"] = kvctl("--json", "vips")
    k["leases"] = kvctl("leases")
    k["rules"] = kvctl("rules", svc)
    k["rules_unknown"] = kvctl("rules", "default/nothere")
    k["nobody_no_group"] = {"rc": sh("setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--",
                                     "kvctl", "--json", "status", timeout=30).returncode}

    # The catalogue: the package's file, compiled by systemd's dpkg trigger (journalctl --update-catalog).
    res["catalog_file"] = os.path.exists("/usr/lib/systemd/catalog/kvegress.catalog")
    res["catalog_listed"] = [line.split(" ", 1)[0] for line in
                             sh("journalctl", "--list-catalog", *MSG.values(), timeout=30).stdout.splitlines()
                             if line.strip()]
    j = res["journal"]
    j["vip_bound"] = journal("MESSAGE_ID=" + MSG["VIP_BOUND"], "KVEGRESS_SERVICE=" + svc)
    j["vip_bound_any"] = journal("MESSAGE_ID=" + MSG["VIP_BOUND"])
    j["vip_bound_by_vip"] = journal("MESSAGE_ID=" + MSG["VIP_BOUND"], "KVEGRESS_VIP=" + vip)
    j["egress_applied"] = journal("MESSAGE_ID=" + MSG["EGRESS_APPLIED"], "KVEGRESS_SERVICE=" + svc)
    j["egress_applied_by_pod"] = journal("MESSAGE_ID=" + MSG["EGRESS_APPLIED"], "KVEGRESS_POD=" + pod)
    j["leadership_gained"] = journal("MESSAGE_ID=" + MSG["LEADERSHIP_GAINED"], "KVEGRESS_LEASE=" + lease)
    j["vip_released"] = journal("MESSAGE_ID=" + MSG["VIP_RELEASED"], "KVEGRESS_SERVICE=" + svc)
    j["fenced"] = journal("MESSAGE_ID=" + MSG["VIP_FENCED"])
    j["refused"] = journal("MESSAGE_ID=" + MSG["EGRESS_REFUSED"])
    j["service_any"] = journal("KVEGRESS_SERVICE=" + svc)
    j["explained"] = journal_explained("MESSAGE_ID=" + MSG["VIP_BOUND"], "KVEGRESS_SERVICE=" + svc)

    # Metrics: off until enabled; then one `kvctl metrics` per connection, as a DynamicUser.
    m = res["metrics"]
    m["before_enable"] = curl()
    e = sh("systemctl", "enable", "--now", "kvegress-metrics.socket", timeout=60)
    m["enable"] = {"rc": e.returncode, "err": e.stderr.strip()}
    m["scrape"] = curl()
    m["not_found"] = curl("http://127.0.0.1:9405/nope")
    m["socket"] = show("kvegress-metrics.socket", "ActiveState", "NAccepted", "NConnections", "Listen")
    # The scrapes' units as systemd logged them (for the record when something fails; one instance per
    # connection, and a failed one would show in final.json's failed units).
    m["scrape_units"] = sh("journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-u",
                           "kvegress-metrics@*.service", timeout=30).stdout[-3000:]

    # A stuck daemon (SIGSTOP): kvctl and a scrape give up on it at their timeout and say which one.
    sh("systemctl", "kill", "-s", "SIGSTOP", "kvelectd.service", timeout=30)
    try:
        k["status_kvelectd_stopped"] = kvctl("--timeout=1", "--json", "status")
        m["scrape_kvelectd_stopped"] = curl()
    finally:
        sh("systemctl", "kill", "-s", "SIGCONT", "kvelectd.service", timeout=30)
    k["healthy_again"] = wait(lambda: kvctl("--json", "status")["rc"] == 0, 20, 0.2)
    m["socket_after"] = show("kvegress-metrics.socket", "ActiveState", "NAccepted", "NConnections")
    k["units_after"] = {u: show(u + ".service", "ActiveState", "NRestarts") for u in SERVICES}
    return res


def dpkg_status(pkg):
    p = sh("dpkg-query", "-W", "-f=${Status} ${Version}", pkg)
    return p.stdout.strip() if p.returncode == 0 else ""


def deb_version(names):
    deb = [n for n in names if n.startswith("kvegress_")][0]
    return deb.split("_")[1]


def pids():
    return {u: show(u + ".service", "MainPID")["MainPID"] for u in SERVICES}


class Monitor:
    """A command's output lines while a step runs (ip monitor, nft monitor)."""

    def __init__(self, name, cmd):
        self.path = os.path.join(R, name)
        self.out = open(self.path, "w")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.out.close()
        with open(self.path) as f:
            return f.read().splitlines()


def upgrade_phase():
    """apt-get install of version N+1 while the VIP is held: the postinst restarts all three daemons
    (kvegress-restart); nothing may happen to the VIP or the table."""
    res = {"version_before": dpkg_status("kvegress").split()[-1], "version_next": deb_version(P["debs"]["next"]),
           "pids_before": pids(), "nft_before": nft_table()}
    ipmon = Monitor("ip-monitor-upgrade.txt", ["ip", "-o", "monitor", "address", "dev", P["service_if"]])
    nftmon = Monitor("nft-monitor-upgrade.txt", ["nft", "monitor"])
    try:
        time.sleep(0.3)
        t = time.monotonic()
        debs = " ".join("./" + n for n in P["debs"]["next"] if not n.startswith("kvegress-dbgsym"))
        p = sh("/bin/sh", "-c", "cd /root/debs-next && DEBIAN_FRONTEND=noninteractive apt-get install -y " + debs,
               timeout=180)
        res["upgrade_ms"] = round((time.monotonic() - t) * 1000, 1)
        # Past kvnetd's grant deadline (renewDeadline): a renewal missed during the restarts would have
        # fenced the VIP by now.
        time.sleep(float(P.get("renew_deadline", 3)) + 1)
    finally:
        res["ip_monitor"] = ipmon.stop()
        res["nft_monitor"] = nftmon.stop()
    res["rc"], res["out"] = p.returncode, (p.stdout + p.stderr)[-4000:]
    res["version_after"] = dpkg_status("kvegress").split()[-1]
    res["pids_after"] = pids()
    res["active_after"] = {u: active(u + ".service") for u in SERVICES}
    res["exe_after"] = {}
    for u, pid in res["pids_after"].items():
        try:
            res["exe_after"][u] = os.readlink("/proc/%s/exe" % pid)
        except OSError as e:
            res["exe_after"][u] = "(%s)" % e
    res["nft_after"] = nft_table()
    res["eth1_after"] = addrs(P["service_if"])
    res["nrestarts"] = {u: show(u + ".service", "NRestarts")["NRestarts"] for u in SERVICES}
    return res


def purge_phase():
    """kvpd started again (the VIP comes back), then apt-get purge: nothing of kvegress may stay."""
    res = {}
    sh("systemctl", "start", "kvpd.service", timeout=60)
    res["eth1_before"] = wait(lambda: (lambda a: a if P["vip"] in a else None)(addrs(P["service_if"])), 30, 0.1) \
        or addrs(P["service_if"])
    t = time.monotonic()
    p = sh("/bin/sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get purge -y kvegress kvegress-selinux", timeout=180)
    res["purge_ms"] = round((time.monotonic() - t) * 1000, 1)
    res["rc"], res["out"] = p.returncode, (p.stdout + p.stderr)[-4000:]
    res["users_left"] = [n for n in ("kvnetd", "kvelectd", "kvpd") if sh("getent", "passwd", n).returncode == 0]
    res["users_left"] += ["group " + g for g in ("kvnetd", "kvelectd", "kvpd", "kvegress", "kvegress-api")
                          if sh("getent", "group", g).returncode == 0]
    paths = ["/etc/kvegress", "/run/kvnetd", "/run/kvelectd", "/usr/sbin/kvnetd", "/usr/sbin/kvelectd",
             "/usr/sbin/kvpd", "/usr/libexec/kvegress", "/usr/bin/kvegress-kubeconfig", "/usr/bin/kvctl",
             "/usr/lib/systemd/catalog/kvegress.catalog", "/usr/share/man/man1/kvctl.1.gz",
             "/usr/lib/sysusers.d/kvegress.conf", "/usr/lib/tmpfiles.d/kvegress.conf",
             "/usr/share/selinux/default/kvegress.pp", "/var/lib/systemd/deb-systemd-helper-enabled/kvegress.target.dsh-also"]
    for u in ("kvnetd.service", "kvnetd.socket", "kvelectd.service", "kvelectd.socket", "kvpd.service",
              "kvpd.socket", "kvegress.target", "kvegress-metrics.socket", "kvegress-metrics@.service"):
        paths += ["/lib/systemd/system/" + u, "/etc/systemd/system/multi-user.target.wants/" + u,
                  "/etc/systemd/system/sockets.target.wants/" + u]
    res["paths_left"] = [x for x in paths if os.path.lexists(x)]
    res["nft_after"] = nft_table()
    res["eth1_after"] = addrs(P["service_if"])
    res["catalog_left"] = [line for line in sh("journalctl", "--list-catalog", *MSG.values(),
                                               timeout=30).stdout.splitlines() if line.strip()]
    res["units_left"] = sh("systemctl", "list-units", "--all", "--no-legend", "--plain", "kvnetd*", "kvelectd*",
                           "kvpd*", "kvegress*").stdout.strip()
    res["dpkg_status"] = {pkg: sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg).stdout.strip()
                          for pkg in ("kvegress", "kvegress-selinux")}
    return res


def stop_phase():
    t = time.monotonic()
    p = sh("systemctl", "stop", "kvpd.service", timeout=60)
    res = {"rc": p.returncode, "stop_ms": round((time.monotonic() - t) * 1000, 1),
           "kvpd": show("kvpd.service", "ActiveState", "Result", "ExecMainStatus")}
    # kvpd's stop is a graceful job: VIP and rules are gone before it exits.
    res["eth1"] = addrs(P["service_if"])
    res["nft"] = nft_table()
    res["kvnetd_active"] = active("kvnetd.service")
    # kvpd down: kvctl says so (exit 2, down) at once, and the scrape still answers for the other two.
    res["kvctl"] = kvctl("--json", "status")
    res["scrape"] = curl()
    res["vip_released"] = journal("MESSAGE_ID=" + MSG["VIP_RELEASED"], "KVEGRESS_SERVICE=" + P["service"])
    res["egress_removed"] = journal("MESSAGE_ID=" + MSG["EGRESS_REMOVED"], "KVEGRESS_SERVICE=" + P["service"])
    return res


def main():
    final = {"error": None}
    try:
        write("ready.json", boot_phase())
        if not wait_file("go-egress", 90):
            final["error"] = "the host never said go-egress"
            return
        write("egress.json", egress_phase())
        write("ops.json", ops_phase())
        write("upgrade.json", upgrade_phase())
        if not wait_file("go-upgraded", 60):
            final["error"] = "the host never said go-upgraded"
            return
        write("stopped.json", stop_phase())
        if not wait_file("go-stopped", 60):
            final["error"] = "the host never said go-stopped"
            return
        write("purge.json", purge_phase())
    except Exception:  # noqa: BLE001 - report everything to the host
        final["error"] = traceback.format_exc()
    finally:
        final["units"] = {u: show(u + ".service", "ActiveState", "Result", "NRestarts") for u in SERVICES}
        final["failed"] = sh("systemctl", "list-units", "--failed", "--no-legend", "--plain").stdout
        with open(os.path.join(R, "journal.txt"), "w") as f:
            f.write(sh("journalctl", "-b", "--no-pager", "-o", "short-monotonic", timeout=60).stdout)
        write("final.json", final)


if __name__ == "__main__":
    main()
