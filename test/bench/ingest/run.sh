#!/usr/bin/env bash
# Ingest benchmark: builds casca (release) and the reporter program, then runs ingest.py.
#   test/bench/ingest/run.sh [--rate POINTS_PER_S] [--seconds N] [--batch N] [--sync MODE]
# BUILD=/path/to/build reuses a build tree (default /tmp/build-bench).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
build="${BUILD:-/tmp/build-bench}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target cascad casca python_stubs >/dev/null
gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$root/clients" -o "$build/ingest_reporter" \
    "$here/ingest_reporter.c" "$build/clients/libcasca.a" "$build/libcasca_common.a" \
    -lnng -pthread -lm
exec /usr/bin/python3 "$here/ingest.py" --build "$build" --reporter "$build/ingest_reporter" "$@"
