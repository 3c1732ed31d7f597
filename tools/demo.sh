#!/usr/bin/env bash
# The main job: sets up the machine, builds, and runs the demonstration in
# network namespaces, saying in plain words what an external host sees as the
# source address of a pod's traffic. Leaves nothing behind.
#   tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh build
if [ -x tests/cluster/demo.py ]; then
    # The simulated cluster: API server, three daemons per node, pods, an
    # external host.
    exec env PYTHONPATH=tests/lib python3 tests/cluster/demo.py --build-dir build
fi
exec tools/demo-kvnetd.sh build
