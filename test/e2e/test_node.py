"""agents/README.md's Node agent, run as a Node user would: `@grpc/grpc-js` and `@grpc/proto-loader` from
npm (versions pinned in test/node/package-lock.json, installed with `npm ci` into the build tree
once), the snippet copied from agents/README.md, against the real cascad. It must say Hello, step the
setting toward the SLO and print results with int64 values as plain numbers (the loader options
the README shows), then leave cleanly on SIGINT."""
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from conftest import STUBS

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(STUBS).resolve().parent / "node"


def node_modules():
    """npm ci of test/node into BUILD/node, once per build tree."""
    if (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return NODE_DIR
    for tool in ("node", "npm"):
        assert shutil.which(tool), "%s is missing: deploy/install-deps.sh installs it" % tool
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "test" / "node" / f, NODE_DIR / f)
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return NODE_DIR


def readme_snippet():
    text = (ROOT / "agents" / "README.md").read_text()
    return re.search(r"```js\n(.*?)```", text, re.S).group(1)


def test_readme_node_agent(make_daemon, tmp_path):
    # the README's example config (no tokens, loopback), as the snippet expects
    d = make_daemon((ROOT / "deploy" / "casca.yaml").read_text())
    now = time.time()
    pts = [tm.Point(series="transcoding_fps", value=20) for _ in range(3)]
    for i, pt in enumerate(pts):  # below the objective: the agent steps ServiceParam up
        pt.time.FromNanoseconds(int((now - 3 + i) * 1e9))
    tm_grpc.TelemetryServiceStub(d.channel()).Publish(tm.PublishRequest(points=pts), timeout=10)
    where = node_modules()
    script = where / "agent.js"
    script.write_text(readme_snippet())
    env = dict(os.environ, CASCA_TARGET=d.target, PROTO=str(ROOT / "proto"))
    p = subprocess.Popen(["node", str(script)], cwd=where, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("result") and '"applied":[{' in line:
                break
        out = "".join(lines)
        applied = [l for l in lines if '"applied":[{' in l]
        assert applied, out
        # int64 as a plain number, not a Long's {low, high, unsigned}
        assert re.search(r'"int_value":\d+', applied[0]), applied[0]
        assert '"low"' not in out and '"state_seq":' in applied[0], out
    finally:
        p.send_signal(signal.SIGINT)
        try:
            rest, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            rest, _ = p.communicate()
    assert p.returncode == 0, "".join(lines) + rest
