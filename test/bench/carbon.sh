#!/usr/bin/env bash
# CarbonService benchmark: first start of cascad on a fresh data dir (loads the bundled carbon
# data into LMDB), a later start on the same data dir (nothing to load), and the round trip of
# GetLocationIntensity (AT, one hour of 2022, bundled data) under h2load: one stream at a time for
# the latency, then 50 concurrent streams for throughput.
#   test/bench/carbon.sh [BUILD_DIR]        (REQUESTS=20000 to change the load)
# A benchmark, not a test: nothing fails.
set -euo pipefail
build=${1:-build}
requests=${REQUESTS:-20000}
cascad=$build/server/cascad
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'server:\n  log_level: info\ncarbon:\n  default_zone: AT\n' >"$work/casca.yaml"

# Starts cascad and sets ms to the milliseconds until it accepts connections.
start() {
  local t0 t1
  t0=$(date +%s%N)
  "$build/server/cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" \
    --data-dir "$work/data" >>"$work/cascad.log" 2>&1 &
  pid=$!
  for _ in $(seq 5000); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.001
  done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
}
stop() { kill $pid; wait $pid || true; pid=; }

start
echo "first start (fresh data dir, bundled data loaded): ${ms} ms to accept connections"
grep -o 'bundled carbon data loaded.*' "$work/cascad.log" | sed 's/^/  cascad: /'
stop
: >"$work/cascad.log"
start
echo "later start (same data dir): ${ms} ms to accept connections"
grep -o 'bundled carbon data up to date.*' "$work/cascad.log" | sed 's/^/  cascad: /'

# A gRPC message: flag byte, 4-byte big-endian length, protobuf. zone "AT", time 2022-01-01T05Z.
/usr/bin/python3 - "$work/req.bin" <<'PY'
import struct, sys
def varint(v):
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
ts = b"\x08" + varint(1641013200)  # Timestamp.seconds
msg = b"\x0a\x02AT" + b"\x12" + bytes([len(ts)]) + ts + b"\x18\x01"
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY
path=/casca.v1.CarbonService/GetLocationIntensity
run() {
  local name=$1 c=$2 m=$3 n=$4
  h2load -n "$n" -c "$c" -m "$m" -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/req.bin" --log-file="$work/$name.log" "http://127.0.0.1:$port$path" >"$work/$name.out"
  grep -q " 0 failed, 0 errored" "$work/$name.out" || grep "^requests:" "$work/$name.out"
  local rps
  rps=$(awk '/^finished in/ {print $4}' "$work/$name.out")
  sort -n -k3 "$work/$name.log" | awk -v name="$name" -v rps="$rps" '
    { d[NR] = $3 }
    END { printf "%-34s %9s req/s   p50 %5d us   p90 %5d us   p99 %5d us\n",
          name, rps, d[int(NR*0.50)], d[int(NR*0.90)], d[int(NR*0.99)] }'
}
run warmup 1 1 2000 >/dev/null
run "GetLocationIntensity, 1 stream" 1 1 "$requests"
run "GetLocationIntensity, 50 streams" 5 10 $((requests * 5))
