#!/usr/bin/env bash
# libcasca's gRPC client (clients/lib/casca_client.c) against a local cascad with a memory setting:
# unary call latency and rate from one and several threads, and an agent session's
# Action -> ActionResult round trip (see client_bench.c).
#   test/bench/client.sh [BUILD_DIR] [CALLS] [THREADS] [ACTIONS]   (defaults: build 5000 4 500)
# A benchmark: nothing fails.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
calls=${2:-5000}
threads=${3:-4}
actions=${4:-500}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
cmake --build "$build" -j2 --target cascad client_bench >/dev/null
cp "$build/test/bench/client_bench" "$work/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/casca.yaml" <<YAML
server: {log_level: info}
store: {sync: none}
settings:
  - {id: Knob, type: int, range: {min: 1, max: 8}, controller: {memory: {value: 4}}}
YAML
"$build/server/cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" \
  --data-dir "$work/data" > "$work/cascad.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "serving on" "$work/cascad.log" 2>/dev/null && break
  sleep 0.1
done
echo "$(nproc) cores, shared by cascad and the client; plaintext on loopback"
"$work/client_bench" "127.0.0.1:$port" "$calls" "$threads" "$actions"
