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
cmake --build "$build" -j2 --target cascad_core >/dev/null

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
gcc -std=c11 -O2 -Wall -Wextra -o "$out/tsdb_query_bench" "$here/tsdb_query_bench.c" \
    -I"$src/server" -I"$src/stores" -I"$src/clients" -I"$build/gen" \
    -Wl,--start-group "$build/server/libcascad_core.a" "$build/libcasca_proto.a" \
    "$build/libcasca_descriptors.a" "$build/stores/libcasca_store.a" "$build/libcasca_common.a" \
    -Wl,--end-group \
    $(pkg-config --libs grpc libprotobuf-c lmdb yaml-0.1 jansson libcurl) -lnng -lm -pthread
"$out/tsdb_query_bench" "$@"
