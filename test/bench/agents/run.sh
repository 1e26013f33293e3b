#!/usr/bin/env bash
# 1,000 concurrent AgentService sessions against one cascad (see agents_bench.c): state delivery
# latency after the tick, cascad's CPU, and action -> ActionResult latency with memory controllers.
#   test/bench/agents/run.sh [BUILD_DIR]
# Environment: OBSERVE=1000 CONTROL=20 CONNS=(one per session) PERIOD_MS=1000 WARMUP=5 DURATION=30
#   RAMP_MS=(one period: sessions open evenly over it; 0: all at once, every tick together)
#   STORE_SYNC=every_commit|periodic|none (store.sync: an applied change waits for its audit entry's
#   commit, so the disk's sync time is part of action -> ActionResult unless none)
#   PERF=1 also records a CPU profile of cascad over the run (perf, to $work/perf.data, reported).
# Goals: state p99 < 10 ms, CPU < 50% of one core, action p99 < 2 ms. A benchmark: nothing fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
observe=${OBSERVE:-1000}
control=${CONTROL:-20}
conns=${CONNS:-$((observe + control))}
sync=${STORE_SYNC:-every_commit}
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# every session is a connection on both sides: raise the fd limit (cascad inherits it)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((2 * conns + 200)) ] || ulimit -n $((2 * conns + 200))

cmake --build "$build" -j2 --target cascad agents_bench >/dev/null
cp "$build/test/bench/agents_bench" "$work/"

{
  printf 'server:\n  log_level: warn\nstore:\n  sync: %s\ncarbon: {default_zone: AT}\n' "$sync"
  printf 'slos:\n  - {id: fps, series: fps, aggregation: mean, window: 5m, objective: {min: 24, max: 30}}\n'
  printf 'settings:\n  - {id: Shared, type: int, range: {min: 1, max: 8}, controller: {memory: {value: 4}}}\n'
  for i in $(seq 0 $((control - 1))); do
    printf '  - {id: ctl%d, type: int, range: {min: 1, max: 8}, controller: {memory: {value: 4, latency: 0ms}}}\n' "$i"
  done
} >"$work/casca.yaml"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/server/cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" \
  --data-dir "$work/data" 2>"${CASCAD_LOG:-$work/cascad.log}" &
pid=$!
for _ in $(seq 200); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done
echo "$(nproc) cores shared by cascad and the client; fd limit $(ulimit -n); store.sync $sync; load average $(cut -d" " -f1-3 /proc/loadavg)"
echo "cascad idle: threads $(awk '/^Threads/ {print $2}' /proc/$pid/status), RSS $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
if [ "${PERF:-0}" = 1 ]; then
  perf record -g -o "${PERF_DATA:-$work/perf.data}" -p "$pid" -- sleep $(( ${WARMUP:-5} + ${DURATION:-30} + 5 )) \
    >/dev/null 2>&1 &
  perfpid=$!
fi
"$work/agents_bench" --target "127.0.0.1:$port" --pid "$pid" --observe "$observe" \
  --control "$control" --conns "$conns" --period-ms "${PERIOD_MS:-1000}" --ramp-ms "${RAMP_MS:--1}" \
  --warmup "${WARMUP:-5}" --duration "${DURATION:-30}" || echo "agents_bench exited $?"
if [ "${PERF:-0}" = 1 ]; then
  wait "$perfpid" || true
  perf report -i "${PERF_DATA:-$work/perf.data}" --no-children --stdio -g none --percent-limit 0.7 2>/dev/null | cut -c1-150 | \
    grep -v '^$' | head -80
fi
kill -TERM "$pid"
if wait "$pid"; then echo "cascad stopped cleanly"; else echo "cascad exited $?"; fi
pid= # stopped: the exit trap has nothing to stop
grep -E " (error|warn) " "${CASCAD_LOG:-$work/cascad.log}" | head -5 || true
