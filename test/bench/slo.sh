#!/usr/bin/env bash
# SloService.GetSlo round trip and the reload of a file with 1,000 SLOs, on loopback.
#   test/bench/slo.sh [BUILD_DIR]     (REQUESTS=20000 to change the number of GetSlo calls)
#
# Setup: cascad with one SLO (mean over a 5-minute window) on a series that gets 1 Hz data: the
# last 10 minutes are published first (TelemetryService.Publish), and a publisher keeps adding a
# point a second during the whole run.
# GetSlo: h2load (nghttp2's C client) sends a prebuilt gRPC request body over one HTTP/2
# connection with one stream in flight, so every call is a full round trip and its latency (from
# the request's first byte out to the response's last byte in, as h2load logs it, in µs) is the
# server's plus loopback, not Python's. Measured with 1 SLO declared and again with 1,000.
# Reload: AdminService.Reload of the config whose slo_files holds 1,000 SLOs, alternating two
# versions that change every SLO's objective (so each reload rebuilds all 1,000, and each GetSlo
# afterwards evaluates afresh); timed from a Python client round trip (its own overhead, about
# 0.3 ms, is included) and from cascad's log.
# A benchmark, not a test: nothing fails. Goals: GetSlo p50 < 100 µs, p99 < 500 µs; reload < 20 ms.
set -euo pipefail
build=${1:-build}
requests=${REQUESTS:-20000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cascad=$build/server/cascad
stubs=$(cd "$build" && pwd)/py
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/slos.yaml" <<'EOF'
slos:
  - {id: ServiceSLO, series: transcoding_fps, aggregation: mean, window: 5m, objective: {min: 24, max: 30}}
EOF
printf 'server:\n  log_level: info\n%bslo_files: [slos.yaml]\n' "${THREADS:+  threads: $THREADS\n}" >"$work/casca.yaml"
"$cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" --data-dir "$work/data" \
  2>"$work/cascad.log" &
pids+=($!)
cascad_pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done
sleep 0.3

# 1 Hz data: the last 10 minutes now, then a point a second until the end
PYTHONPATH=$stubs /usr/bin/python3 - "$port" <<'EOF'
import sys, time, grpc
from casca.v1 import telemetry_pb2 as tm, telemetry_pb2_grpc as tg
stub = tg.TelemetryServiceStub(grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}"))
now = int(time.time())
pts = []
for i in range(600, 0, -1):
    p = tm.Point(series="transcoding_fps", value=25 + (i % 7), tags={"client": "a"})
    p.time.FromSeconds(now - i)
    pts.append(p)
print("preloaded points:", stub.Publish(tm.PublishRequest(points=pts), timeout=30).accepted)
EOF
PYTHONPATH=$stubs /usr/bin/python3 - "$port" <<'EOF' &
import sys, time, grpc
from casca.v1 import telemetry_pb2 as tm, telemetry_pb2_grpc as tg
stub = tg.TelemetryServiceStub(grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}"))
while True:
    p = tm.Point(series="transcoding_fps", value=25 + int(time.time()) % 7, tags={"client": "a"})
    try:
        stub.Publish(tm.PublishRequest(points=[p]), timeout=5)
    except grpc.RpcError:
        break
    time.sleep(1)
EOF
pids+=($!)

# GetSloRequest{id}: field 1 (tag 0x0a), length, bytes; framed as a gRPC message (flag 0, BE length)
frame() {
  /usr/bin/python3 -c '
import sys, struct
sid = sys.argv[1].encode()
msg = b"\x0a" + bytes([len(sid)]) + sid
sys.stdout.buffer.write(b"\x00" + struct.pack(">I", len(msg)) + msg)' "$1" >"$2"
}

getslo() {
  local name=$1 id=$2
  frame "$id" "$work/req.bin"
  h2load -n 2000 -c 1 -m 1 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/req.bin" "http://127.0.0.1:$port/casca.v1.SloService/GetSlo" >/dev/null
  h2load -n "$requests" -c 1 -m 1 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/req.bin" --log-file="$work/$name.log" \
    "http://127.0.0.1:$port/casca.v1.SloService/GetSlo" >"$work/$name.out"
  grep -q " 0 failed, 0 errored" "$work/$name.out" || grep "^requests:" "$work/$name.out"
  # each h2load log line: start (µs since epoch), HTTP status, latency (µs)
  sort -n -k3 "$work/$name.log" | awk -v name="$name" -v n="$requests" '
    $2 != 200 { bad++ } { d[NR] = $3 }
    END {
      printf "%-34s %6d calls  p50 %5d us  p90 %5d us  p99 %5d us  max %6d us%s\n",
        name, NR, d[int(NR*0.50)], d[int(NR*0.90)], d[int(NR*0.99)], d[NR],
        bad ? "  (" bad " not HTTP 200)" : ""
    }'
}

echo "$(nproc) cores shared by cascad, h2load and the publisher; 1 connection, 1 call in flight"
getslo "GetSlo (1 SLO declared)" ServiceSLO
# a correct answer, for the record
PYTHONPATH=$stubs /usr/bin/python3 - "$port" <<'EOF'
import sys, grpc
from casca.v1 import slo_pb2 as s, slo_pb2_grpc as sg
r = sg.SloServiceStub(grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")).GetSlo(
    s.GetSloRequest(id="ServiceSLO"), timeout=5)
print(f"  ServiceSLO: value {r.value:.4f} over {r.sample_count} points, fulfilled {r.fulfilled}")
EOF

# 1,000 SLOs in one file, two versions
/usr/bin/python3 - "$work" <<'EOF'
import sys
work = sys.argv[1]
for version, top in (("a", 30), ("b", 31)):
    with open(f"{work}/slos-{version}.yaml", "w") as f:
        f.write("slos:\n")
        for i in range(1000):
            f.write(f"  - id: S{i}\n    description: SLO number {i}\n    unit: fps\n"
                    f"    series: transcoding_fps\n    tags: {{client: a}}\n"
                    f"    aggregation: {('mean', 'p90', 'max', 'last')[i % 4]}\n"
                    f"    window: 5m\n    objective: {{min: 24, max: {top}}}\n")
EOF
PYTHONPATH=$stubs /usr/bin/python3 - "$port" "$work" <<'EOF'
import os, shutil, statistics, sys, time, grpc
from casca.v1 import admin_pb2 as a, admin_pb2_grpc as ag, slo_pb2 as s, slo_pb2_grpc as sg
port, work = sys.argv[1], sys.argv[2]
ch = grpc.insecure_channel(f"127.0.0.1:{port}")
admin, slo = ag.AdminServiceStub(ch), sg.SloServiceStub(ch)
admin.GetStatus(a.GetStatusRequest(), timeout=5)
times = []
for i in range(20):
    shutil.copy(f"{work}/slos-{'ab'[i % 2]}.yaml", f"{work}/slos.yaml")
    t0 = time.perf_counter()
    r = admin.Reload(a.ReloadRequest(), timeout=30)
    times.append((time.perf_counter() - t0) * 1000)
    assert r.ok, r.errors
    assert len(slo.ListSlos(s.ListSlosRequest(), timeout=5).slos) == 1000
times.sort()
print(f"{'Reload (1,000 SLOs, all changed)':34s} {len(times):6d} runs   p50 {statistics.median(times):6.2f} ms"
      f"  max {times[-1]:6.2f} ms  (gRPC round trip from Python)")
EOF
grep "SLOs reloaded" "$work/cascad.log" | tail -1 | sed 's/^/  cascad: /'
# cascad's own time for a reload (its log), without the client's share of the round trip
server_reload_times() {
  grep -o "configuration reloaded in [0-9.]* ms" "$work/cascad.log" | tail -n +"$(( $1 + 1 ))" |
    awk '{print $4}' | sort -n | awk '{v[NR] = $1} END {
      printf "  cascad side: p50 %.2f ms  max %.2f ms\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[NR]}'
}
server_reload_times 0
# the same reloads while WATCHES WatchSlos streams (every SLO) and SESSIONS OBSERVE agent sessions
# are open, in another process (their reading must not slow the timing client): each reload
# re-evaluates what they watch, and none of them may be dropped
PYTHONPATH=$stubs:$root/clients/python /usr/bin/python3 - "$port" "$work" "${WATCHES:-100}" \
  "${SESSIONS:-20}" >"$work/watchers.out" 2>&1 <<'EOF' &
import os, sys, threading, time, grpc
from casca.v1 import slo_pb2 as s, slo_pb2_grpc as sg
import casca
port, work, nwatch, nsess = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ended, got = [], [0]

def watch():
    try:
        for _ in sg.SloServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}")).WatchSlos(
                s.WatchSlosRequest(), timeout=600):
            got[0] += 1
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            ended.append(e.code())
for _ in range(nwatch):
    threading.Thread(target=watch, daemon=True).start()
sessions = [casca.Session(name=f"obs{i}", mode="observe", slos=["S1", "S2"], period=1.0,
                          reconnect=False, target=f"127.0.0.1:{port}") for i in range(nsess)]
for x in sessions:
    x.hello(timeout=30)
open(f"{work}/watchers.ready", "w").close()
while not os.path.exists(f"{work}/watchers.stop"):
    time.sleep(0.1)
alive = sum(1 for x in sessions if not x.ended)
print(f"{nwatch} WatchSlos, {nsess} sessions; ended: {len(ended)} watches, {nsess - alive} "
      f"sessions; {got[0]:,} statuses watched")
for x in sessions:
    x.goodbye()
os._exit(0)
EOF
watchers=$!
pids+=($watchers)
for _ in $(seq 600); do [ -e "$work/watchers.ready" ] && break; sleep 0.1; done
sleep 2
reloads_before=$(grep -c "configuration reloaded in" "$work/cascad.log")
PYTHONPATH=$stubs /usr/bin/python3 - "$port" "$work" <<'EOF'
import shutil, statistics, sys, time, grpc
from casca.v1 import admin_pb2 as a, admin_pb2_grpc as ag
port, work = sys.argv[1], sys.argv[2]
admin = ag.AdminServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
times = []
for i in range(20):
    shutil.copy(f"{work}/slos-{'ab'[i % 2]}.yaml", f"{work}/slos.yaml")
    t0 = time.perf_counter()
    r = admin.Reload(a.ReloadRequest(), timeout=30)
    times.append((time.perf_counter() - t0) * 1000)
    assert r.ok, r.errors
    time.sleep(0.2)
times.sort()
print(f"{'Reload, with streams open':34s} {len(times):6d} runs   p50 {statistics.median(times):6.2f} ms"
      f"  max {times[-1]:6.2f} ms", end="  ")
EOF
touch "$work/watchers.stop"
wait "$watchers" || true
echo "($(cat "$work/watchers.out"))"
server_reload_times "$reloads_before"
getslo "GetSlo (1,000 SLOs declared)" S500
echo "cascad RSS: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$cascad_pid/status)"
