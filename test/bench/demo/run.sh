#!/usr/bin/env bash
# The media-streaming use case's figures per agent (the paper's table): runs the demo in simulate
# mode (and, with REAL=1, on ffmpeg) for DURATION seconds with each agent and prints one markdown
# row per run from its summary.json.
#   test/bench/demo/run.sh [BUILD_DIR]     DURATION=120 AGENTS="gds rds rlds" REAL=0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
duration=${DURATION:-120}
out=$(mktemp -d)
modes=(--simulate)
[ "${REAL:-0}" = 1 ] && modes+=(real)
for mode in "${modes[@]}"; do
  for agent in ${AGENTS:-gds rds rlds}; do
    flag=
    if [ "$mode" = --simulate ]; then flag=--simulate; fi
    # shellcheck disable=SC2086
    /usr/bin/python3 "$root/deploy/demo/run.py" --build "$build" --agent "$agent" $flag \
      --duration "$duration" --out "$out/$agent-${mode#--}" --quiet-agent >"$out/$agent-${mode#--}.out" 2>&1 ||
      { echo "run $agent $mode failed: see $out/$agent-${mode#--}.out" >&2; exit 1; }
  done
done
/usr/bin/python3 - "$out" <<'PY'
import glob, json, os, sys
def f(st, p=1):
    return "-" if not st or not st["n"] else "%.*f ± %.*f" % (p, st["mean"], p, st["sd"])
def ms(st):
    return "-" if not st or not st["n"] else "%.3f / %.3f" % (st["p50"], st["p99"])
print("| mode | agent | s | FPS SLO fulfilled | carbon SLO fulfilled | FPS | threads | power W | "
      "carbon mg/min | decision ms p50/p99 | state to applied ms p50/p99 | changes |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "summary.json"))):
    s = json.load(open(path))
    sh = s["fulfilled_share"]
    pct = lambda v: "-" if v is None else "%.0f%%" % (100 * v)
    print("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        s["mode"], s["agent"], s["duration_s"], pct(sh["ServiceSLO"]), pct(sh["ServiceCarbon"]),
        f(s["fps"]), f(s["threads"], 2), f(s["power_w"]), f(s["carbon_mg_per_min"], 0),
        ms(s["decision_ms_printed"]), ms(s["state_to_applied_ms"]), s.get("setting_changes", "-")))
print("\nrun directories (plots, logs):", sys.argv[1])
PY
