#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to build and test kvegress: installs the
# Debian packages, creates the daemons' system users, and builds.
#   tools/setup.sh [BUILD_DIR [MESON_OPTIONS...]]
# Must run as root (apt-get, useradd). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build}
shift || true

packages=(
    # build
    gcc meson ninja-build pkg-config
    # libraries (README, "Libraries", says why each is here)
    libsystemd-dev libnl-3-dev libnl-route-3-dev libnftables-dev libnftnl-dev libmnl-dev
    libcap-dev libcurl4-openssl-dev libssl-dev libjansson-dev libyaml-dev check
    # tests: network namespaces, packets, the test API server, sanitizers
    iproute2 nftables conntrack iputils-ping iputils-arping tcpdump socat
    netcat-openbsd python3 openssl util-linux procps psmisc libclang-rt-14-dev clang
    # tests/unit/check-format.py: the C formatting .clang-format declares
    clang-format
    systemd dbus
    # tests/ops scrapes kvctl's metrics with curl and parses them with Prometheus's own parser
    curl python3-prometheus-client
    # the units booted for real (tests/systemd-boot): systemd is not PID 1 here
    systemd-container debootstrap
    # the SELinux module is compiled, linked and queried (no enforcement here)
    selinux-policy-dev selinux-policy-default checkpolicy semodule-utils policycoreutils setools
    # the Debian packages (tools/build-deb.sh: dpkg-buildpackage, debhelper with meson, lintian)
    dpkg-dev debhelper fakeroot lintian
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# kubectl: the image may ship Google's package; Debian's kubernetes-client
# conflicts with it, so install Debian's only where none is present.
if ! command -v kubectl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null ||
        echo "setup: warning: no kubectl available; kubectl tests will be skipped" >&2
fi

# One system user per daemon, as in production; kvpd reaches the two sockets
# through the kvegress group, and kvpd and kvelectd read the API token through
# kvegress-api (systemd/kvegress.sysusers.conf says the same).
getent group kvegress >/dev/null || groupadd --system kvegress
getent group kvegress-api >/dev/null || groupadd --system kvegress-api
for u in kvnetd kvelectd kvpd; do
    getent passwd "$u" >/dev/null ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            --user-group "$u"
done
usermod -a -G kvegress,kvegress-api kvpd
usermod -a -G kvegress-api kvelectd

if [ ! -d "$build_dir" ]; then
    meson setup "$build_dir" "$@" >/dev/null
fi
ninja -C "$build_dir"
