#!/usr/bin/env bash
# Ingest benchmark: builds casca (release) and the reporter program, then runs ingest.py.
#   test/bench/ingest/run.sh [--rate POINTS_PER_S] [--seconds N] [--batch N] [--sync MODE]
#                            [--transport tcp|udp]
# BUILD=/path/to/build reuses a build tree (default /tmp/build-bench).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
build="${BUILD:-/tmp/build-bench}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target cascad python_stubs ingest_reporter >/dev/null
exec /usr/bin/python3 "$here/ingest.py" --build "$build" --reporter "$build/test/bench/ingest_reporter" "$@"
