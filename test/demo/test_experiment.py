"""`make experiment`, short: deploy/experiment.py with every agent for one repeat of 30 s (a
replayed day at 2880x), on this build tree: each agent's run ends cleanly, the table, the JSON and
the day's plot are written, and the figures are sane. The goals themselves need the full run
(deploy/demo/README.md, "The experiment"). Plain build only (see test/e2e/CMakeLists.txt)."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CASCA_BUILD", ROOT / "build"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_short_experiment(tmp_path):
    out = tmp_path / "exp"
    r = subprocess.run(["/usr/bin/python3", str(ROOT / "deploy/experiment.py"), "--build",
                        str(BUILD), "--repeats", "1", "--speed", "2880", "--duration", "30",
                        "--out", str(out)], capture_output=True, text=True, timeout=400)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    results = json.loads((out / "experiment.json").read_text())["results"]
    assert sorted(results) == ["cgds", "gds", "rds", "rlds"], text
    for agent, runs in results.items():
        (run,) = runs
        assert run["exit_status"]["cascad"] == 0 and run["exit_status"]["agent"] == 0, (agent, run)
        assert run["samples"] >= 20, (agent, run)
        assert run["replay"] == {"from": "2022-04-10T00:00:00Z", "speed": 2880.0}, run
        assert run["budget"]["target"] == 0.8 and run["budget"]["allowed_s"] == 17280, run
        assert 0 < run["power_w"]["mean"] < 200 and run["carbon_mg_per_min"]["mean"] > 0, run
        assert "replayed: from 2022-04-10T00:00:00Z at 2880x" in run["intensity_note"], run
    assert results["gds"][0]["decision_ms_printed"]["n"] > 10
    md = (out / "experiment.md").read_text()
    for agent in ("RDS", "GDS", "CGDS", "RLDS"):
        assert "\n| %s | " % agent in md, md
    assert "CGDS carbon per minute" in md and "(day.png)" in md, md
    png = (out / "day.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 5000
