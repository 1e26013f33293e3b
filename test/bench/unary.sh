#!/usr/bin/env bash
# Unary-call throughput and latency of cascad under h2load (nghttp2-client): Health.Check and
# AdminService.GetStatus, 50 concurrent streams, plus the daemon's idle RSS.
#   test/bench/unary.sh [BUILD_DIR]     (REQUESTS=200000 STREAMS=50 to change the load)
# Prints requests/s and latency percentiles per method. A benchmark, not a test: nothing fails.
set -euo pipefail
build=${1:-build}
requests=${REQUESTS:-200000}
clients=${CLIENTS:-5}
streams_per_client=$(( ${STREAMS:-50} / clients ))
cascad=$build/server/cascad
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'server:\n  log_level: warn\n' >"$work/casca.yaml"
"$cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" --data-dir "$work/data" \
  2>"$work/cascad.log" &
pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done
sleep 0.5
echo "cascad idle RSS: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
echo "load: $requests requests, $clients connections x $streams_per_client streams, $(nproc) cores shared with h2load"

# A gRPC message on the wire: 1 byte flag (uncompressed), 4 bytes big-endian length, then the
# protobuf. Both requests here are empty messages.
printf '\x00\x00\x00\x00\x00' >"$work/empty.bin"

run() {
  local name=$1 path=$2
  h2load -n "$requests" -c "$clients" -m "$streams_per_client" -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/empty.bin" \
    --log-file="$work/$name.log" "http://127.0.0.1:$port$path" >"$work/$name.out"
  local rps
  rps=$(awk '/^finished in/ {print $4}' "$work/$name.out")
  grep -q " 0 failed, 0 errored" "$work/$name.out" || grep "^requests:" "$work/$name.out"
  sort -n -k3 "$work/$name.log" | awk -v name="$name" -v rps="$rps" '
    { d[NR] = $3 }
    END {
      printf "%-28s %10s req/s   p50 %6.2f ms   p90 %6.2f ms   p99 %6.2f ms   max %6.2f ms\n",
        name, rps, d[int(NR*0.50)]/1000, d[int(NR*0.90)]/1000, d[int(NR*0.99)]/1000, d[NR]/1000
    }'
}

run warmup /grpc.health.v1.Health/Check >/dev/null
run Health.Check /grpc.health.v1.Health/Check
run AdminService.GetStatus /casca.v1.AdminService/GetStatus
echo "cascad RSS after load: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
