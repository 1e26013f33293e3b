#!/usr/bin/env bash
# Overhead of ServiceControl.GetSetting / SetSetting through cascad against the same operation made
# directly on a local HTTP JSON service, side by side in one run (see control_bench.c).
#   test/bench/control.sh [BUILD_DIR] [ITERATIONS]     (defaults: build, 5000)
# Then 20 changes at a time: of one setting on one connection, and of 20 memory settings by 20
# callers (with the changes per store commit). SetSetting answers once its audit entry is written:
# to audit.wal under the default store.sync (periodic) and none, committed and synced under
# every_commit. STORE_SYNC=none|every_commit|periodic picks the mode, to see what durability
# costs. Needs h2load (nghttp2-client). A benchmark: nothing fails.
set -euo pipefail
build=${1:-build}
iters=${2:-5000}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --build "$build" -j2 --target cascad control_bench >/dev/null
cp "$build/test/bench/control_bench" "$work/"
echo "$(nproc) cores, shared by cascad, the service and the client"
"$work/control_bench" "$build/server/cascad" "$work" "$iters"
