#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# kvnetd holds CAP_NET_ADMIN: no HTTP, TLS or YAML code may be loaded into
# it, directly or through another library. Fails naming the library.
#   check-linkage.sh KVNETD_BINARY
set -eu
bin=$1
libs=$(ldd "$bin") || { echo "ldd $bin failed"; exit 1; }
echo "$libs"
bad=$(printf '%s\n' "$libs" | grep -E 'lib(curl|yaml|ssl|crypto|gnutls|nghttp2)[.-]' || true)
if [ -n "$bad" ]; then
    echo "kvnetd loads a library it must not:"
    echo "$bad"
    exit 1
fi
# and the ones it needs for its job are really there (a vacuous pass otherwise)
for want in libnftables libnl-route-3 libsystemd libcap; do
    printf '%s\n' "$libs" | grep -q "$want" || { echo "expected $want in kvnetd's libraries"; exit 1; }
done
echo "kvnetd: no curl, yaml, ssl or crypto libraries"
