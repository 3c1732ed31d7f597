#!/usr/bin/env bash
# Sets up and runs every test: unit tests (Check), the test API server's own
# tests, and the integration tests in network namespaces, all built with
# AddressSanitizer and UndefinedBehaviorSanitizer.
#   tools/test.sh [meson test arguments, e.g. --suite unit]
# The last line is the total: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."

build_dir=build-sanitize
tools/setup.sh "$build_dir" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || {
    echo "setup failed"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
}

# The optimiser sees more (-Wmaybe-uninitialized at -O3): the release build
# must compile warning-free too. Counted as one test.
release_ok=1
if [ ! -d build-release ]; then
    meson setup build-release -Dbuildtype=release -Dtests=false >/dev/null || release_ok=0
fi
ninja -C build-release >/tmp/kvegress-release-build.log 2>&1 || {
    release_ok=0
    tail -40 /tmp/kvegress-release-build.log
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
meson test -C "$build_dir" --print-errorlogs --num-processes "$(nproc)" "$@"
rc=$?
if [ $release_ok = 1 ]; then
    echo "release build (-O3, -Werror): OK"
else
    echo "release build (-O3, -Werror): FAILED"
    rc=1
fi
python3 tools/test-summary.py "$build_dir/meson-logs/testlog.json" --extra "release-build=$release_ok"
exit $rc
