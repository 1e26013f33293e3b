#!/usr/bin/env bash
# Build and run the Query latency benchmark against the libraries of a casca build tree
# (standalone, not part of the CMake build; a Release build by default).
#
#   test/bench/tsdb_query/run.sh [ITERATIONS]       BUILD=/path/to/build to reuse a build tree
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../../.." && pwd)"
build="${BUILD:-/tmp/casca-bench-build}"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j2 --target tsdb_query_bench >/dev/null
"$build/test/bench/tsdb_query_bench" "$@"
