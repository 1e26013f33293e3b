#!/bin/sh
# Prints the Debian packages that provide the shared libraries of the given binaries, one per
# line: what a runtime image must install for binaries built in the build stage (ldd + dpkg -S).
#   deploy/docker/runtime-deps.sh /build/server/cascad [...] > /runtime-packages
set -eu
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
for bin in "$@"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
  # dpkg knows the path it installed; /lib is a symlink to /usr/lib on Debian 12, so try both.
  dpkg -S "$lib" 2>/dev/null || dpkg -S "$(echo "$lib" | sed 's#^/usr/lib/#/lib/#')" 2>/dev/null ||
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || { echo "runtime-deps: no package owns $lib" >&2; exit 1; }
done | cut -d: -f1 | sort -u
