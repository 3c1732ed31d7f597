#!/usr/bin/env python3
"""Prints the totals of a meson test run as its last line:
"N passed, N failed, N skipped" (timeouts and unexpected passes count as failed)."""
import json
import sys

counts = {"passed": 0, "failed": 0, "skipped": 0}
failed_names = []
# --extra NAME=1|0: a check run outside meson (the release build).
args = sys.argv[1:]
while "--extra" in args:
    i = args.index("--extra")
    name, ok = args[i + 1].split("=")
    del args[i:i + 2]
    if ok == "1":
        counts["passed"] += 1
    else:
        counts["failed"] += 1
        failed_names.append(name)
with open(args[0]) as f:
    for line in f:
        t = json.loads(line)
        result = t.get("result")
        if result in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
        elif result == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
            failed_names.append(t.get("name"))
if failed_names:
    print("failed: " + ", ".join(failed_names))
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
