#!/usr/bin/env bash
# Builds the Debian packages with Debian's own tools, from a copy of this tree
# (the files git knows, committed or not, minus ignored ones), so the source
# tree stays clean:
#   tools/build-deb.sh OUTDIR
# OUTDIR/current/  kvegress_V_ARCH.deb, kvegress-selinux_V_all.deb (V from debian/changelog)
# OUTDIR/next/     the same packages as version V+1, for the upgrade test: the
#                  built tree's changelog gets a new entry and dpkg-buildpackage
#                  runs again without cleaning (dh skips the build it already did)
# Cached: nothing is rebuilt while the copied files are unchanged (a hash of
# their contents, OUTDIR/stamp). Needs dpkg-dev, debhelper, fakeroot, lintian
# and the Build-Depends (tools/setup.sh installs them). lintian is run by
# tests/systemd-boot/boot-test.py, beside the boot (it takes ~40 s).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: build-deb.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
flock 9

cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -d '' files < <(git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
        [ -e "$f" ] && printf '%s\0' "$f"
    done)
else
    mapfile -d '' files < <(find . -path ./.git -prune -o -path './build*' -prune -o -type f -printf '%P\0')
fi
hash=$(printf '%s\0' "${files[@]}" | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && ls "$out"/next/kvegress_*.deb >/dev/null 2>&1; then
    echo "build-deb: up to date ($hash)"
    exit 0
fi
rm -rf "$out/tree" "$out/current" "$out/next" "$out/stamp"
mkdir -p "$out/tree/kvegress" "$out/current" "$out/next"
printf '%s\0' "${files[@]}" | tar --null -T - -cf - | tar -C "$out/tree/kvegress" -xf -

cd "$out/tree/kvegress"
export DEB_BUILD_OPTIONS="nocheck noddebs parallel=$(nproc)"
t0=$(date +%s.%N)
dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1 || {
    tail -40 "$out/build.log"
    echo "build-deb: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
    exit 1
}
t1=$(date +%s.%N)
mv ../*.deb "$out/current/"

# N+1: a new changelog entry, same build.
version=$(dpkg-parsechangelog -S Version)
next="$version+1"
{
    printf 'kvegress (%s) %s; urgency=medium\n\n  * Rebuilt for the upgrade test (tests/systemd-boot).\n\n' \
        "$next" "$(dpkg-parsechangelog -S Distribution)"
    printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -S Maintainer)" "$(date -R)"
    cat debian/changelog
} >debian/changelog.new
mv debian/changelog.new debian/changelog
dpkg-buildpackage -us -uc -b -nc >"$out/build-next.log" 2>&1 || {
    tail -40 "$out/build-next.log"
    echo "build-deb: dpkg-buildpackage (next) failed (whole log: $out/build-next.log)" >&2
    exit 1
}
t2=$(date +%s.%N)
mv ../*.deb "$out/next/"
rm -f ../*.buildinfo ../*.changes

echo "$hash" >"$out/stamp"
printf 'build-deb: %s built in %.0f s, %s in %.0f s\n' "$version" \
    "$(awk "BEGIN{print $t1 - $t0}")" "$next" "$(awk "BEGIN{print $t2 - $t1}")"
