#!/usr/bin/env bash
# The benchmarks: figures, not tests (nothing here passes or fails on a
# number, and `tools/test.sh` does not run it). Builds the release build
# with the bench tools, runs each part in network namespaces it creates and
# removes, prints the tables and writes them, with the machine described, to
# BENCHMARKS.md.
#   tools/bench.sh [--quick] [--parts kvnetd,conntrack,cluster] [--sizes 1,100,1000]
#                  [--out FILE]
# --quick: small sizes only (a few minutes). --sizes: kvnetd's N list.
# Parts (tools/bench/):
#   kvnetd     kvnetd_scale.py: N Services over kvnetd's socket vs `nft -f` in
#              kube-vip's shape, and new flows/s through kvnetd's ruleset
#   conntrack  conntrack_change.py: one change on a node with 10^5, 10^6 entries
#   cluster    cluster_scale.py: kvpd, kvelectd, kvnetd against the test API
#              server holding 10,000 Services and EndpointSlices
# Each point has a time limit; one over it is printed as "> limit" and the
# larger sizes of its series are skipped. A hand-written section of the
# previous BENCHMARKS.md that starts with "## Notes" is kept at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# All of it in one block, read by bash before the first line runs: editing
# this file while a run is under way does not change that run.
{

quick=()
parts=kvnetd,conntrack,cluster
sizes=()
out=BENCHMARKS.md
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=(--quick) ;;
    --parts) parts=$2; shift ;;
    --sizes) sizes=(--sizes "$2"); shift ;;
    --out) out=$2; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

# The same release build tools/test.sh checks (no tests in it), plus the
# two bench tools.
build_dir=build-release
echo "building $build_dir (release, -Dbench=true)"
if [ -d "$build_dir" ]; then
    tools/setup.sh "$build_dir" >/dev/null
    meson setup --reconfigure "$build_dir" -Dbuildtype=release -Dtests=false -Dbench=true >/dev/null
    ninja -C "$build_dir" >/dev/null
else
    tools/setup.sh "$build_dir" -Dbuildtype=release -Dtests=false -Dbench=true >/dev/null
fi
export KVB_BUILD=$PWD/$build_dir PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

tmp=$(mktemp -d /tmp/kvbench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

describe() {
    local cpu load
    cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "($(git log -1 --format=%cd --date=short 2>/dev/null || true))"
    echo "- CPU: ${cpu:-unknown}, $(nproc) cores online"
    echo "- kernel: $(uname -r); $(nft --version)"
    echo "- build: $build_dir, buildtype $(meson introspect --buildoptions "$build_dir" |
        python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="buildtype"))')"
    echo "- load average (1, 5, 15 min) at the start: $load"
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
describe >"$tmp/machine"
cat "$tmp/machine"

failed=()
run_part() {
    local name=$1 script=$2
    shift 2
    echo
    echo "== $name ($(date -u +%H:%M:%S))"
    if ! python3 "tools/bench/$script" "${quick[@]}" --out "$tmp/$name.md" "$@"; then
        failed+=("$name")
        echo "(the $name part failed; see above)" >"$tmp/$name.md"
    fi
}
IFS=, read -ra want <<<"$parts"
for p in "${want[@]}"; do
    case "$p" in
    kvnetd) run_part kvnetd kvnetd_scale.py "${sizes[@]}" ;;
    conntrack) run_part conntrack conntrack_change.py ;;
    cluster) run_part cluster cluster_scale.py ;;
    *) echo "bench: unknown part $p" >&2; exit 2 ;;
    esac
done

notes=""
if [ -f "$out" ] && grep -q '^## Notes' "$out"; then
    notes=$(sed -n '/^## Notes/,$p' "$out")
fi
{
    echo "# Benchmarks"
    echo
    echo "Written by \`tools/bench.sh${quick[*]:+ ${quick[*]}}\` (parts: $parts), run $started to" \
        "$(date -u '+%H:%M UTC'). One run; figures, not tests. The machine is shared with other" \
        "work, so absolute times carry its load; ratios within one table were taken minutes apart."
    echo
    cat "$tmp/machine"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    for p in "${want[@]}"; do
        cat "$tmp/$p.md"
        echo
    done
    if [ -n "$notes" ]; then
        echo "$notes"
    fi
} >"$out"
echo
echo "written to $out"
if [ ${#failed[@]} -gt 0 ]; then
    echo "parts that failed: ${failed[*]}"
    exit 1
fi
exit 0
}
