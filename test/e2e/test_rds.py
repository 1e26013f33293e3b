"""The RDS agent (agents/rds/casca-rds, bash over the `casca` CLI) against the real cascad: every
value it sets stays within the setting's range (int, double, on a step, enum), checked in its
output, in the audit log and, on the simulated transcoding service (deploy/demo/transcoder.py
--simulate behind an http_json setting), in the service itself; draws are uniform enough to
cover the range and repeatable with --seed; refusals (safety rails, another agent's lease) are
printed and survived; bad flags, unknown or unusable settings and a server that is down give the
documented exit codes; SIGINT and SIGTERM stop it at once."""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
from conftest import carbon_bundle, free_port

ROOT = Path(__file__).resolve().parents[2]
RDS = str(ROOT / "agents" / "rds" / "casca-rds")
TRANSCODER = str(ROOT / "deploy" / "demo" / "transcoder.py")
CLI = os.environ.get("CASCA_CLI", "build/clients/casca")
OP = "op-0123456789abcdef0123"
TOKENS = {"T_OP": OP}
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+?)=(\S+) "
                  r"(applied|refused|unreachable|failed)(?: (.*))?$")

SETTINGS = """\
settings:
  - id: Threads
    type: int
    range: {min: 2, max: 9}
    controller: {memory: {value: 4}}
  - id: Gain
    type: double
    range: {min: 0.5, max: 2.5}
    controller: {memory: {value: 1.0}}
  - id: Quality
    type: double
    range: {min: 10, max: 12}
    step: 0.5
    controller: {memory: {value: 10}}
  - id: Preset
    type: enum
    allowed: [fast, medium, slow]
    controller: {memory: {value: fast}}
  - id: Railed
    type: int
    range: {min: 1, max: 100}
    max_step: 5
    controller: {memory: {value: 50}}
  - id: Fixed
    type: int
    read_only: true
    controller: {memory: {value: 3}}
  - id: Open
    type: int
    range: {min: 0}
    controller: {memory: {value: 3}}
"""

CONFIG = """\
server:
  log_level: debug
store:
  sync: none
auth:
  tokens:
    - {name: ops, role: operator, token_env: T_OP}
carbon: {bundled_data: BUNDLE}
""" + SETTINGS


def rds(d, *args, timeout=60, token=OP, target=None):
    env = dict(os.environ, CASCA=CLI)
    env.pop("CASCA_TOKEN", None)
    cmd = [RDS, "--target", target or d.target, *(["--token", token] if token else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def decisions(out):
    rows = []
    for line in out.splitlines():
        m = LINE.match(line)
        assert m, f"not a decision line: {line!r}"
        rows.append(m.groups())
    return rows


def audit(d, setting):
    stub = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    r = stub.GetAuditLog(admin_pb2.GetAuditLogRequest(setting_id=setting, limit=10000), timeout=10)
    return list(r.entries)


@pytest.fixture
def d(make_daemon, tmp_path):
    bundle = carbon_bundle(tmp_path, hours=24)
    return make_daemon(CONFIG.replace("BUNDLE", str(bundle)), env=TOKENS)


def drive(d, setting, want, seed, budget=30):
    """Runs RDS on setting (50 ms period, a second at a time, seeds seed, seed+1...) until it has
    made `want` decisions: a loaded machine (ASan) makes fewer a second, not fewer in all."""
    rows, i, deadline = [], 0, time.time() + budget
    while len(rows) < want:
        assert time.time() < deadline, f"only {len(rows)} decisions in {budget}s"
        p = rds(d, "--setting", setting, "--period", "0.05", "--duration", "1",
                "--seed", str(seed + i))
        assert p.returncode == 0, p.stderr
        assert re.search(r"stopped after \d+ decisions", p.stderr)
        rows += decisions(p.stdout)
        i += 1
    return rows


def test_values_stay_in_range_for_every_kind_of_setting(d):
    # int [2, 9]: every decision applied, in range, read back as set, and the range is covered
    rows = drive(d, "Threads", 10, seed=11)
    values = [int(v) for _, sid, v, res, _ in rows]
    assert all(sid == "Threads" and res == "applied" for _, sid, _, res, _ in rows), rows
    assert all(2 <= v <= 9 for v in values)
    assert all(detail == f"read-back={v}" for (_, _, v, _, detail) in rows)
    assert len(set(values)) >= 4, values  # uniform over 8 values: not stuck on a few
    applied = [e for e in audit(d, "Threads") if e.outcome == admin_pb2.AUDIT_OUTCOME_APPLIED]
    assert [e.new_value.int_value for e in applied] == values  # the server saw exactly these

    # double anywhere in [0.5, 2.5]; double on a step of 0.5 in [10, 12]; an enum
    gains = [float(v) for _, _, v, res, _ in drive(d, "Gain", 4, seed=3) if res == "applied"]
    assert len(gains) >= 4 and all(0.5 <= g <= 2.5 for g in gains) and len(set(gains)) > 3
    assert all(0.5 <= e.new_value.double_value <= 2.5 for e in audit(d, "Gain"))
    qs = [float(v) for _, _, v, res, _ in drive(d, "Quality", 4, seed=3) if res == "applied"]
    assert len(qs) >= 4 and set(qs) <= {10, 10.5, 11, 11.5, 12}, qs
    ps = [v for _, _, v, res, _ in drive(d, "Preset", 4, seed=3) if res == "applied"]
    assert len(ps) >= 4 and set(ps) <= {"fast", "medium", "slow"} and len(set(ps)) > 1


def test_a_seed_repeats_the_same_draws(d):
    runs = []
    for _ in range(2):
        p = rds(d, "--setting", "Threads", "--period", "0.02", "--duration", "1.5", "--seed", "99")
        runs.append([v for _, _, v, _, _ in decisions(p.stdout)])
    n = min(len(runs[0]), len(runs[1]))
    assert n >= 3 and runs[0][:n] == runs[1][:n]


def test_refusals_are_printed_and_survived(d):
    # max_step 5 on [1, 100]: most random jumps are refused by the rail; none gets through
    p = rds(d, "--setting", "Railed", "--period", "0.05", "--duration", "1.5", "--seed", "5")
    assert p.returncode == 0, p.stderr
    rows = decisions(p.stdout)
    refused = [r for r in rows if r[3] == "refused"]
    assert refused and all("FAILED_PRECONDITION" in r[4] for r in refused), p.stdout
    last = 50
    for e in audit(d, "Railed"):
        if e.outcome == admin_pb2.AUDIT_OUTCOME_APPLIED:
            v = e.new_value.int_value
            assert 1 <= v <= 100 and abs(v - last) <= 5
            last = v

    # while a CONTROL agent holds the lease, every plain SetSetting of RDS is refused
    stop = threading.Event()

    def messages():
        yield agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            agent_name="holder", mode=agent_pb2.AGENT_MODE_CONTROL, setting_ids=["Threads"]))
        stop.wait(30)
        yield agent_pb2.AgentMessage(goodbye=agent_pb2.Goodbye(reason="done"))

    call = agent_pb2_grpc.AgentServiceStub(d.channel(OP)).Session(messages(), timeout=30)
    assert list(next(call).welcome.leased_setting_ids) == ["Threads"]
    try:
        p = rds(d, "--setting", "Threads", "--period", "0.05", "--duration", "0.6")
        rows = decisions(p.stdout)
        assert rows and all(r[3] == "refused" and "holder" in r[4] for r in rows), p.stdout
    finally:
        stop.set()
        for _ in call:
            pass


def test_bad_flags_and_unusable_settings(d):
    for args in [[], ["--setting"], ["--setting", "Threads", "--period", "0"],
                 ["--setting", "Threads", "--period", "soon"],
                 ["--setting", "Threads", "--seed", "-4"],
                 ["--setting", "Threads", "--duration", "-1"], ["--setting", "Threads", "--what"],
                 ["--setting", "Threads", "extra"]]:
        p = rds(d, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "casca-rds:" in p.stderr and "--help" in p.stderr and not p.stdout
    h = rds(d, "--help")
    assert h.returncode == 0 and h.stdout.startswith("usage: casca-rds")

    p = rds(d, "--setting", "Nope")
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr and "Nope" in p.stderr
    p = rds(d, "--setting", "Fixed")
    assert p.returncode == 1 and "read-only" in p.stderr
    p = rds(d, "--setting", "Open")
    assert p.returncode == 1 and "no minimum or no maximum" in p.stderr
    p = rds(d, "--setting", "Threads", token="wrong-0123456789abcdef")
    assert p.returncode == 1 and "UNAUTHENTICATED" in p.stderr
    p = rds(d, "--setting", "Threads", "--no-reconnect", target=f"127.0.0.1:{free_port()}")
    assert p.returncode == 3 and "UNAVAILABLE" in p.stderr
    p = subprocess.run([RDS, "--target", d.target, "--setting", "Threads"], capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, CASCA="/nonexistent/casca"))
    assert p.returncode == 2 and "casca binary" in p.stderr


def test_a_signal_stops_it_at_once(d):
    env = dict(os.environ, CASCA=CLI, CASCA_TOKEN=OP)
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([RDS, "--target", d.target, "--setting", "Threads", "--period", "30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = p.stdout.readline()  # the first decision comes at once
        assert LINE.match(first.rstrip("\n")), first
        time.sleep(0.2)
        t0 = time.time()
        p.send_signal(sig)
        assert p.wait(5) == 0
        assert time.time() - t0 < 2, "it waited for its period instead of stopping"
        assert "stopped after 1 decisions" in p.stderr.read()


def test_simulated_transcoder_stays_within_range(make_daemon, tmp_path):
    """RDS drives the simulated transcoding service through an http_json setting; the service's
    own EncodingThreadCount, sampled all along, never leaves the setting's range."""
    http_port, bus_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}/System/Configuration/encoding"
    config = f"""\
server:
  log_level: debug
store:
  sync: none
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
carbon: {{bundled_data: {carbon_bundle(tmp_path, hours=24)}}}
bus:
  listen: ["tcp://127.0.0.1:{bus_port}"]
hooks:
  - name: player
    topic: "autowatcher/"
    format: json
    values: {{transcoding_fps: "/Transcoding FPS"}}
    time: {{field: "/Time (UTC)", format: "%Y-%m-%d %H:%M:%S", timezone: UTC}}
    tags: {{client: "/Autowatcher ID"}}
settings:
  - id: ServiceParam
    type: int
    range: {{min: 3, max: 10}}
    controller:
      http_json:
        url: "{url}"
        pointer: /EncodingThreadCount
        write: {{method: POST, body: read_modify_write}}
        timeout: 2s
"""
    d = make_daemon(config, env=TOKENS)
    svc = subprocess.Popen(["/usr/bin/python3", TRANSCODER, "--http", f"127.0.0.1:{http_port}",
                            "--bus", f"tcp://127.0.0.1:{bus_port}", "--casca", CLI, "--simulate",
                            "--threads", "4", "--report-interval", "0.5"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    seen.append(json.load(r)["EncodingThreadCount"])
            except OSError:
                pass
            time.sleep(0.02)

    try:
        deadline = time.time() + 10
        while True:  # the service is up when its endpoint answers
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                assert svc.poll() is None and time.time() < deadline, svc.stdout.read()
                time.sleep(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        p = rds(d, "--setting", "ServiceParam", "--period", "0.1", "--duration", "3",
                "--seed", "2024")
        stop.set()
        sampler.join(5)
        assert p.returncode == 0, p.stderr
        rows = decisions(p.stdout)
        values = [int(v) for _, _, v, res, _ in rows if res == "applied"]
        assert len(values) >= 5 and len(values) == len(rows), p.stdout
        assert all(3 <= v <= 10 for v in values)
        assert len(set(values)) >= 3
        assert len(seen) > 20 and all(3 <= v <= 10 for v in seen), seen
        with urllib.request.urlopen(url, timeout=2) as r:
            assert json.load(r)["EncodingThreadCount"] == values[-1]
    finally:
        stop.set()
        svc.send_signal(signal.SIGTERM)
        try:
            svc.wait(10)
        except subprocess.TimeoutExpired:
            svc.kill()
            svc.wait()
