"""`make demo SIMULATE=1 DURATION=60` as CI runs it: deploy/demo.sh (what `make demo` runs after
building) on this build tree, with the real cascad, the simulated service, the power meter and the
real GDS agent, then the run's figures and plots are checked. Plain build only (see
test/e2e/CMakeLists.txt)."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CASCA_BUILD", ROOT / "build"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_demo(out, duration, agent="gds", extra=""):
    env = dict(os.environ, SIMULATE="1", DURATION=str(duration), AGENT=agent,
               DEMO_ARGS=("--out %s %s" % (out, extra)).strip())
    return subprocess.Popen([str(ROOT / "deploy/demo.sh"), str(BUILD)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def check_common(out, text):
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "simulate"
    assert summary["exit_status"]["cascad"] == 0, text
    # Plots: four non-empty PNG files, named in the output.
    assert len(summary["plots"]) == 4
    for p in summary["plots"]:
        data = Path(p).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000, p
        assert "plot: %s" % p in text
    errors = [l for l in (out / "cascad.log").read_text().splitlines() if re.search(r"Z error ", l)]
    assert not errors, "cascad logged errors:\n" + "\n".join(errors)
    return summary


def test_make_demo_simulate_with_gds(tmp_path):
    out = tmp_path / "run"
    p = run_demo(out, 60)
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 0, text
    s = check_common(out, text)
    assert s["agent"] == "gds" and s["exit_status"]["agent"] == 0, text
    assert 55 <= s["duration_s"] <= 62 and s["samples"] >= 50
    # GDS fulfils the FPS SLO most of the time: it starts at 4 threads (16.8 fps) and needs two
    # steps (with its settle time) to reach 6 (25.2 fps), which meets [24, 30].
    assert s["fulfilled_share"]["ServiceSLO"] >= 0.6, s["fulfilled_share"]
    assert s["server_compliance"]["ServiceSLO"] >= 0.6, s["server_compliance"]
    assert s["server_compliance"]["covered_s"]["ServiceSLO"] >= 50
    assert 18 <= s["fps"]["mean"] <= 30 and s["fps"]["sd"] > 0
    samples = (out / "samples.csv").read_text().splitlines()
    last_threads = int(samples[-1].split(",")[samples[0].split(",").index("threads")])
    assert last_threads in (6, 7), "GDS should end at 6 or 7 threads, not %d" % last_threads
    # Power and carbon follow the model: 10 W + 12 W per thread, times the grid's intensity.
    assert 50 <= s["power_w"]["mean"] <= 100 and s["carbon_mg_per_min"]["n"] >= 50
    assert s["carbon_total_mg"] > 0
    # The agent's decision time, from its own lines (one per state, ~1 s period).
    assert s["decision_ms_printed"]["n"] >= 50 and 0 < s["decision_ms_printed"]["p50"] < 50
    assert s["state_to_applied_ms"]["n"] >= 2 and s["setting_changes"] >= 2
    # The terminal showed the live view and the figures, and said where the data came from.
    assert re.search(r"^\s+\d+s \| +[\d.]+ +\d+ +[\d.]+ W", text, re.M), text[:2000]
    assert "share of time fulfilled" in text and "decision time" in text
    assert "estimate_from_nearest_year" in text and "2022" in text


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) ends the run early, with its figures, and
    leaves no process behind."""
    out = tmp_path / "run"
    p = run_demo(out, 300)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "gds.log").exists():
        time.sleep(0.5)
    time.sleep(8)
    os.killpg(p.pid, signal.SIGINT)
    text, _ = p.communicate(timeout=120)
    assert p.returncode == 0, text
    s = check_common(out, text)
    assert 3 <= s["duration_s"] < 60, s["duration_s"]
    assert set(s["pids"]) == {"cascad", "transcoder", "powermeter", "gds"}
    for name, pid in s["pids"].items():
        assert not os.path.exists("/proc/%d" % pid), "%s (pid %d) was left running" % (name, pid)
