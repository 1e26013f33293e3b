#!/usr/bin/env bash
# GET /metrics: scrape time with 1,000 SLOs declared, and cascad's idle memory with the HTTP
# listener on and off.
#   test/bench/metrics.sh [BUILD_DIR]      (SCRAPES=50, SLOS=1000 to change them)
#
# Scrape time: cascad with SLOS SLOs (a mean over a 5-minute window, each on one of 100 series
# that hold the last 10 minutes of 1 Hz data), 10 settings (memory controller) and the listener on
# loopback; SCRAPES sequential scrapes with curl, 0.2 s apart, timed by curl (request sent to last
# byte in); the median, p90 and max are printed, with the size of one answer. The SLO engine's
# interval is the default (1 s), so most scrapes read statuses the tick cached and some evaluate.
# Idle memory: VmRSS of cascad with a minimal config, 3 s after start, without http:, with it
# (never scraped), and with it after SCRAPES scrapes.
# A benchmark, not a test: nothing fails.
set -euo pipefail
build=${1:-build}
scrapes=${SCRAPES:-50}
nslos=${SLOS:-1000}
cascad=$build/server/cascad
stubs=$(cd "$build" && pwd)/py
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start CONFIG: cascad on a fresh data dir, waiting until gRPC accepts connections
start() {
  rm -rf "$work/data"
  port=$(free_port)
  "$cascad" --config "$1" --listen "127.0.0.1:$port" --data-dir "$work/data" \
    >>"$work/cascad.log" 2>&1 &
  pid=$!
  for _ in $(seq 400); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return
    sleep 0.05
  done
  echo "cascad did not start:"; cat "$work/cascad.log"; exit 1
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }
rss() { awk '/^VmRSS/ {print $2 " kB"}' "/proc/$pid/status"; }

# scrape N: times N scrapes of http://127.0.0.1:$hport/metrics; prints median, p90, max in ms
scrape() {
  for _ in $(seq "$1"); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$hport/metrics"
    sleep 0.2
  done | sort -n | awk '{v[NR]=$1*1000} END {printf "median %.2f ms, p90 %.2f ms, max %.2f ms (%d scrapes)\n", v[int((NR+1)/2)], v[int(NR*0.9)], v[NR], NR}'
}

# ---- scrape time with $nslos SLOs ----
hport=$(free_port)
/usr/bin/python3 - "$work/slos.yaml" "$nslos" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("slos:\n")
    for i in range(int(sys.argv[2])):
        f.write(f"  - {{id: slo_{i}, series: fps_{i % 100}, aggregation: mean, window: 5m, "
                f"objective: {{min: 24, max: 30}}}}\n")
PY
{
  printf 'server:\n  log_level: info\nhttp:\n  listen: 127.0.0.1:%s\nslo_files: [slos.yaml]\nsettings:\n' "$hport"
  for i in $(seq 0 9); do
    printf '  - {id: s%d, type: int, range: {min: 0, max: 100}, controller: {memory: {value: %d}}}\n' "$i" "$i"
  done
} >"$work/casca.yaml"
start "$work/casca.yaml"
PYTHONPATH=$stubs /usr/bin/python3 - "$port" <<'PY'
import sys, time, grpc
from casca.v1 import telemetry_pb2 as tm, telemetry_pb2_grpc as tg
stub = tg.TelemetryServiceStub(grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}"))
now = int(time.time())
for s in range(100):
    pts = []
    for i in range(600, 0, -1):
        p = tm.Point(series=f"fps_{s}", value=25 + (i % 7))
        p.time.FromSeconds(now - i)
        pts.append(p)
    stub.Publish(tm.PublishRequest(points=pts), timeout=30)
print("published 60,000 points on 100 series")
PY
sleep 2
curl -s "http://127.0.0.1:$hport/metrics" >"$work/one.txt"
echo "one answer: $(wc -c <"$work/one.txt") bytes, $(grep -vc '^#' "$work/one.txt") samples," \
  "$(grep -c 'casca_slo_value{' "$work/one.txt") SLO values"
echo "scrape with $nslos SLOs: $(scrape "$scrapes")"
stop

# ---- idle memory ----
printf 'server:\n  log_level: info\n' >"$work/off.yaml"
printf 'server:\n  log_level: info\nhttp:\n  listen: 127.0.0.1:%s\n' "$hport" >"$work/on.yaml"
start "$work/off.yaml"; sleep 3; echo "idle RSS, no http listener: $(rss)"; stop
start "$work/on.yaml"; sleep 3; echo "idle RSS, http listener on: $(rss)"
scrape "$scrapes" >/dev/null
sleep 1; echo "idle RSS, http listener on, after $scrapes scrapes: $(rss)"
stop
