#!/usr/bin/env bash
# The same points into casca three ways, in one run: Prometheus remote write (POST /api/v1/write),
# OTLP/gRPC (MetricsService/Export) and casca's own TelemetryService.Publish; points/s of each.
#   test/bench/ingest_formats.sh [BUILD_DIR]    (REQUESTS=2000 BATCH=1000 CONNECTIONS=2 REPEATS=3)
#
# One request holds BATCH samples (10 series with job/instance labels, BATCH/10 samples each, in the
# last minute): a snappy-compressed prometheus.WriteRequest (1.0), an ExportMetricsServiceRequest of
# 10 gauges (the labels as point attributes), and a PublishRequest. h2load (nghttp2-client) sends
# REQUESTS of each over CONNECTIONS connections, one request in flight on each (remote write over
# HTTP/1.1 as Prometheus sends it, the gRPC calls over HTTP/2); cascad answers each once its points
# are committed
# (store.sync: periodic, the default). Every request carries the same points, so the store
# replaces them (a later write wins): the work per point is the same as for new ones.
# A benchmark, not a test: nothing fails.
set -euo pipefail
build=${1:-build}
requests=${REQUESTS:-2000}
batch=${BATCH:-1000}
conns=${CONNECTIONS:-2}
repeats=${REPEATS:-3}
cascad=$build/server/cascad
stubs=$(cd "$build" && pwd)/py
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
hport=$(free_port)
printf 'http:\n  listen: 127.0.0.1:%s\ntsdb:\n  max_publish_points: %s\n' "$hport" "$batch" \
  >"$work/casca.yaml"
"$cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" --data-dir "$work/data" \
  >"$work/cascad.log" 2>&1 &
pid=$!
for _ in $(seq 400); do
  (exec 3<>/dev/tcp/127.0.0.1/$hport) 2>/dev/null && break
  sleep 0.05
done

PYTHONPATH=$stubs /usr/bin/python3 - "$work" "$batch" <<'PY'
import struct, sys, time
from prometheus import remote_pb2
from casca.v1 import telemetry_pb2 as tm
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.common.v1 import common_pb2
work, batch = sys.argv[1], int(sys.argv[2])

def snappy(data):  # snappy's block format, literals only
    out, n = bytearray(), len(data)
    while True:
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            break
    for at in range(0, len(data), 65536):
        chunk = data[at:at + 65536]
        out += bytes([61 << 2]) + (len(chunk) - 1).to_bytes(2, "little") + chunk
    return bytes(out)

now_ms = int(time.time() * 1000) - 60_000
wr, pub, otlp = remote_pb2.WriteRequest(), tm.PublishRequest(), ms.ExportMetricsServiceRequest()
scope = otlp.resource_metrics.add().scope_metrics.add()
for s in range(10):
    gauge = scope.metrics.add(name="node_power_watts").gauge
    ts = wr.timeseries.add()
    for k, v in (("__name__", "node_power_watts"), ("instance", f"host-{s}"), ("job", "node")):
        ts.labels.add(name=k, value=v)
    for i in range(batch // 10):
        ms = now_ms + i * 10
        ts.samples.add(value=30 + (i % 7), timestamp=ms)
        p = pub.points.add(series="node_power_watts", value=30 + (i % 7),
                           tags={"instance": f"host-{s}", "job": "node"})
        p.time.FromMilliseconds(ms)
        dp = gauge.data_points.add(as_double=30 + (i % 7), time_unix_nano=ms * 1_000_000)
        for k, v in (("instance", f"host-{s}"), ("job", "node")):
            dp.attributes.add(key=k, value=common_pb2.AnyValue(string_value=v))
open(f"{work}/write.bin", "wb").write(snappy(wr.SerializeToString()))
for name, m in (("publish", pub), ("otlp", otlp)):
    msg = m.SerializeToString()
    open(f"{work}/{name}.bin", "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY

# run NAME ARGS...: one h2load run; prints requests/s and points/s
run() {
  local name=$1
  shift
  h2load -n "$requests" -c "$conns" -m 1 -t 1 "$@" >"$work/out"
  grep -q " 0 failed, 0 errored" "$work/out" || { grep "^requests:\|^status" "$work/out"; }
  awk -v name="$name" -v batch="$batch" '/^finished in/ {
    gsub(",", "", $4); printf "%-13s %8.0f req/s  %10.0f points/s\n", name, $4, $4 * batch }' "$work/out"
}
write() {
  run "remote write" --h1 -d "$work/write.bin" -H 'content-type: application/x-protobuf' \
    -H 'content-encoding: snappy' -H 'x-prometheus-remote-write-version: 0.1.0' \
    "http://127.0.0.1:$hport/api/v1/write"
}
publish() {
  run "Publish" -d "$work/publish.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/casca.v1.TelemetryService/Publish"
}
otlp() {
  run "OTLP Export" -d "$work/otlp.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
}
requests=200 write >/dev/null
requests=200 otlp >/dev/null
requests=200 publish >/dev/null
echo "$(nproc) cores shared by cascad and h2load; $batch points per request, $conns connections"
for r in $(seq "$repeats"); do
  echo "run $r:"
  write
  otlp
  publish
done
grep -i "warn\|error" "$work/cascad.log" | head -5 || true
