#!/usr/bin/env python3
"""Benchmark (not a test): the informer against the test API server. Prints a table: time to
list N objects (paged, 500 per page) until synced, and events per second through a watch while
the server is fed writes as fast as it takes them, with the server's own write rate beside it as
the reference (the Python server, not the client, is the bottleneck when the two are equal).
    python3 tests/kube/bench_informer.py [N]"""
import os
import sys
import threading
import time
import http.client
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeharness import Informer, Server, cm, ensure_ns  # noqa: E402


def writer(s, ns, names, out):
    c = http.client.HTTPSConnection("127.0.0.1", s.port, context=s.ctx, timeout=30)
    h = {"Authorization": "Bearer " + s.token, "Content-Type": "application/json"}
    t = time.monotonic()
    for n in names:
        c.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, body=json.dumps(cm(n, ns)), headers=h)
        r = c.getresponse()
        r.read()
    out.append(time.monotonic() - t)
    c.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    s = Server()
    try:
        ensure_ns(s, "bench")
        out = []
        threads = [threading.Thread(target=writer, args=(s, "bench", ["c%06d" % i for i in range(k, n, 4)], out))
                   for k in range(4)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        fill = time.monotonic() - t

        t = time.monotonic()
        inf = Informer(s.kubeconfig, ["configmaps"], ["--quiet", "--namespace", "bench"])
        inf.wait_synced(timeout=300)
        list_s = time.monotonic() - t
        size = inf.synced[0]["size"]

        m = n // 4
        out = []
        t = time.monotonic()
        threads = [threading.Thread(target=writer, args=(s, "bench", ["w%06d" % i for i in range(k, m, 4)], out))
                   for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        write_s = time.monotonic() - t
        while True:
            _, end = inf.dump()
            cache = end["size"]["configmaps"]
            if cache >= n + m:
                break
            time.sleep(0.05)
        watch_s = time.monotonic() - t
        inf.stop()
        print("%-44s %10s" % ("measure", "value"))
        print("%-44s %10d" % ("objects listed", size))
        print("%-44s %10.2f" % ("list until synced (s)", list_s))
        print("%-44s %10.0f" % ("list rate (objects/s)", size / list_s))
        print("%-44s %10.0f" % ("server write rate, reference (writes/s)", m / write_s))
        print("%-44s %10.0f" % ("watch events into the cache (events/s)", m / watch_s))
        print("%-44s %10.2f" % ("initial fill, %d creates (s)" % n, fill))
    finally:
        s.close()


if __name__ == "__main__":
    main()
