#!/usr/bin/env bash
# The dashboard's update latency: from a published point to the new value in a real browser.
#   test/bench/dashboard.sh [BUILD_DIR]      (SAMPLES=20 REPEATS=3 INTERVALS="1s 200ms")
#
# cascad with one SLO (aggregation last) and the HTTP listener; Debian's headless chromium opens
# the dashboard (test/e2e/browser.py). Each sample publishes one point with a new value
# (TelemetryService.Publish) and a MutationObserver in the page notes when the SLO's card shows
# it; latency = the page's Date.now() then minus the time just before Publish (same clock). The
# path: Publish -> commit -> the SLO engine's next tick (slo_engine.interval) -> the feed's next
# check (every 250 ms) -> the event stream -> the page's redraw. Per interval: median, p90, max.
# A benchmark, not a test: nothing fails.
set -euo pipefail
build=${1:-build}
samples=${SAMPLES:-20}
repeats=${REPEATS:-3}
intervals=${INTERVALS:-"1s 200ms"}
cascad=$(cd "$build" && pwd)/server/cascad
stubs=$(cd "$build" && pwd)/py
e2e=$(cd "$(dirname "$0")/../e2e" && pwd)
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "$(nproc) cores shared by cascad, chromium and the publisher; $samples samples per run"
for interval in $intervals; do
  for r in $(seq "$repeats"); do
    port=$(free_port)
    hport=$(free_port)
    printf 'http:\n  listen: 127.0.0.1:%s\nslo_engine: {interval: %s}\nslos:\n  - {id: FPS, series: fps, aggregation: last, window: 5m, objective: {min: 24, max: 30}}\n' \
      "$hport" "$interval" >"$work/casca.yaml"
    rm -rf "$work/data"
    "$cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" --data-dir "$work/data" \
      >"$work/cascad.log" 2>&1 &
    pid=$!
    PYTHONPATH=$stubs:$e2e /usr/bin/python3 - "$port" "$hport" "$samples" "$interval" "$work" <<'PY'
import pathlib, statistics, sys, time
import grpc
from casca.v1 import telemetry_pb2 as tm, telemetry_pb2_grpc as tg
from browser import Browser
port, hport, samples, interval, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
stub = tg.TelemetryServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
def publish(v):
    p = tm.Point(series="fps", value=v)
    p.time.FromNanoseconds(time.time_ns())
    stub.Publish(tm.PublishRequest(points=[p]), timeout=10, wait_for_ready=True)
publish(1)
tmp = pathlib.Path(work) / f"chromium-{time.time_ns()}"
tmp.mkdir()
with Browser(tmp) as b:
    b.open(f"http://127.0.0.1:{hport}/")
    b.wait_for("(function(){var c=document.querySelector('[data-slo=FPS] .value');return c && c.dataset.value === '1';})()", 60)
    b.eval("""window.seen = {}; new MutationObserver(function () {
        var c = document.querySelector('[data-slo=FPS] .value');
        if (c && !(c.dataset.value in window.seen)) window.seen[c.dataset.value] = Date.now();
    }).observe(document.getElementById('slos'), {childList: true, subtree: true, attributes: true});""")
    lat = []
    for i in range(samples):
        v = 100 + i
        t0 = time.time() * 1000
        publish(v)
        seen = b.wait_for(f"window.seen['{v}']", 30)
        lat.append(seen - t0)
        time.sleep(0.3)
    lat.sort()
    print(f"engine interval {interval:>5}: median {statistics.median(lat):6.0f} ms, "
          f"p90 {lat[int(len(lat) * 0.9) - 1]:6.0f} ms, max {lat[-1]:6.0f} ms")
PY
    kill "$pid"; wait "$pid" || true; pid=
  done
done
