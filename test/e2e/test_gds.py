"""The GDS agent (agents/gds, on libcasca's C gRPC client) end to end: the real cascad, the demo's
simulated transcoder (deploy/demo/transcoder.py --simulate: fps = 4.2 x threads, reported through
`casca report` and the player hook) reached through its Jellyfin-shaped endpoint by an http_json
setting, and for the carbon case the demo's simulated power meter (deploy/demo/powermeter.py).

GDS drives the FPS SLO [24, 30] into range from below (1 thread) and from above (16 threads),
compounds with a carbon SLO, refuses to start when another CONTROL session holds the setting, talks
TLS, and fails clearly on bad flags, a bad config file and an unreachable server."""
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
import json
from pathlib import Path

import grpc
import pytest

from conftest import SANITIZED, carbon_bundle, free_port

from casca.v1 import slo_pb2, slo_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
GDS = os.environ.get("CASCA_GDS", str(ROOT / "build/agents/gds/casca-gds"))
CLI = os.environ.get("CASCA_CLI", str(ROOT / "build/clients/casca"))
TRANSCODER = str(ROOT / "deploy/demo/transcoder.py")
POWERMETER = str(ROOT / "deploy/demo/powermeter.py")
PYTHON = "/usr/bin/python3"
ENDPOINT = "/System/Configuration/encoding"

OP = "op-0123456789abcdef0123"
AGENT = "gds-0123456789abcdef0123"
SLOW = 3 if SANITIZED else 1  # ASan builds start and run slower


def config(http_port, bus_port, bundle, tls="", replay="", slos=""):
    return f"""\
server:
  log_level: debug
{tls}store:
  sync: none
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: gds-token, role: agent, token_env: T_AGENT}}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true{replay}}}
bus:
  listen: ["tcp://127.0.0.1:{bus_port}"]
hooks:
  - name: player
    topic: "autowatcher/"
    format: json
    values:
      transcoding_fps: "/Transcoding FPS"
    time: {{field: "/Time (UTC)", format: "%Y-%m-%d %H:%M:%S", timezone: UTC}}
    tags: {{client: "/Autowatcher ID"}}
  - name: plug
    topic: "tele/"
    format: json
    values:
      power_w: /ENERGY/Power
    time: {{field: /Time, format: rfc3339, timezone: UTC, default: $RECEIVED}}
settings:
  - id: EncodingThreadCount
    type: int
    range: {{min: 1, max: 16}}
    controller:
      http_json:
        url: "http://127.0.0.1:{http_port}{ENDPOINT}"
        pointer: /EncodingThreadCount
        write: {{method: POST, body: read_modify_write}}
        timeout: 2s
slo_engine: {{interval: 100ms, compliance_step: 10s, compliance_period: 10m}}
slos:
  - id: FPS
    series: transcoding_fps
    aggregation: mean
    window: 2s
    objective: {{min: 24, max: 30}}
  - id: WideFPS
    series: transcoding_fps
    aggregation: mean
    window: 2s
    objective: {{min: 10, max: 60}}
  - id: Footprint
    kind: carbon_footprint
    power_series: power_w
    zone: AT
    window: 2s
    objective: {{max: 120}}
  - id: Silent
    series: nobody_writes_this
    aggregation: mean
    window: 2s
    objective: {{min: 1}}
{slos}"""


class Proc:
    """A child process whose output lines are collected as they come."""

    def __init__(self, args, **kw):
        self.args = args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  **kw)
        self.lines, self.err = [], []
        self.q = queue.Queue()
        self.t_out = threading.Thread(target=self._read, args=(self.p.stdout, self.lines, True),
                                      daemon=True)
        self.t_err = threading.Thread(target=self._read, args=(self.p.stderr, self.err, False),
                                      daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _read(self, f, into, notify):
        for line in f:
            into.append(line.rstrip("\n"))
            if notify:
                self.q.put(line)

    def wait_line(self, pred, timeout):
        """The first output line (already seen or coming) for which pred is true, else None."""
        deadline = time.time() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if pred(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.time()
            if left <= 0 or self.p.poll() is not None and seen == len(self.lines):
                return None
            try:
                self.q.get(timeout=min(left, 0.2))
            except queue.Empty:
                pass

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError(f"{self.args[0]} did not stop on {sig!r}")
        self._drain()
        return rc

    def wait(self, timeout):
        rc = self.p.wait(timeout)
        self._drain()
        return rc

    def _drain(self):
        # a grandchild (the transcoder's `casca report`) may hold the pipes a little longer
        self.t_out.join(5)
        self.t_err.join(5)

    def text(self):
        return "\n".join(self.lines) + "\n" + "\n".join(self.err)


class Stack:
    def __init__(self, make_daemon, tmp_path, threads, power=False, tls="", carbon=lambda i: 100,
                 replay="", slos=""):
        self.tmp = tmp_path
        self.http_port, self.bus_port = free_port(), free_port()
        bundle = carbon_bundle(tmp_path, value=carbon)
        self.d = make_daemon(config(self.http_port, self.bus_port, bundle, tls, replay, slos),
                             env={"T_OP": OP, "T_AGENT": AGENT}, start=not tls)
        self.procs = []
        self.transcoder = self.spawn([PYTHON, TRANSCODER, "--http", f"127.0.0.1:{self.http_port}",
                                      "--bus", f"tcp://127.0.0.1:{self.bus_port}", "--casca", CLI,
                                      "--simulate", "--threads", str(threads),
                                      "--report-interval", "0.2"])
        self.url = f"http://127.0.0.1:{self.http_port}{ENDPOINT}"
        deadline = time.time() + 10
        while True:
            try:
                self.threads()
                break
            except OSError:
                assert time.time() < deadline, "transcoder did not start:\n" + \
                    self.transcoder.text()
                time.sleep(0.05)
        if power:
            self.spawn([PYTHON, POWERMETER, "--bus", f"tcp://127.0.0.1:{self.bus_port}",
                        "--casca", CLI, "--simulate", "--http", self.url, "--interval", "0.2"])

    def spawn(self, args):
        p = Proc(args)
        self.procs.append(p)
        return p

    def threads(self):
        with urllib.request.urlopen(self.url, timeout=2) as r:
            return json.load(r)["EncodingThreadCount"]

    def slo(self, slo_id):
        stub = slo_pb2_grpc.SloServiceStub(self.d.channel(OP))
        return stub.GetSlo(slo_pb2.GetSloRequest(id=slo_id), timeout=5)

    def wait_slo(self, slo_id, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.slo(slo_id)
            if s.has_value and pred(s.value):
                return s
            time.sleep(0.1)
        raise AssertionError(f"SLO {slo_id} never satisfied the condition; last {s}")

    def gds(self, *args, token=AGENT):
        return self.spawn([GDS, "--target", self.d.target, "--token", token, *args])

    def close(self):
        """Stops every process still running; each must exit 0 (those that ended during the
        test were checked there)."""
        failed = []
        for p in reversed(self.procs):
            running = p.p.poll() is None
            rc = p.stop()
            if running and rc != 0:
                failed.append(f"{p.args[:2]} exited {rc}:\n{p.text()}")
        assert not failed, "\n".join(failed)


@pytest.fixture
def stack(make_daemon, tmp_path):
    made = []

    def make(threads, **kw):
        s = Stack(make_daemon, tmp_path, threads, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


DECISION = re.compile(r"^\S+ seq=(\d+) (\w+)=(\S+) \((.*?)\)(?: (\w+)=(\S+) \((.*?)\))? "
                      r"EncodingThreadCount (\d+)(?: -> (\d+))?: (.*), decided in (\d+) us$")


def decisions(lines):
    return [m for m in (DECISION.match(l) for l in lines) if m]


def applied(lines):
    """(old, new) of every applied change."""
    return [(int(m.group(8)), int(m.group(9))) for m in decisions(lines)
            if m.group(10) == "applied"]


def drive(stack, start, step, expect):
    s = stack(start)
    s.wait_slo("FPS", lambda v: abs(v - 4.2 * start) < 0.01, 15 * SLOW)
    g = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", str(step),
              "--sign", "+1", "--period", "0.25", "--name", "gds-e2e")
    assert g.wait_line(lambda l: l.startswith("gds: session "), 10 * SLOW), g.text()
    # in range: a decision line that says the SLO is met, with the service at the expected count
    met = g.wait_line(lambda l: "(met 24..30)" in l and f"EncodingThreadCount {expect}:" in l,
                      40 * SLOW)
    assert met, g.text()
    assert s.threads() == expect
    # it stays there: one more window with no change
    n = len(applied(g.lines))
    time.sleep(2.5)
    assert len(applied(g.lines)) == n, g.text()
    assert s.threads() == expect
    assert 24 <= s.slo("FPS").value <= 30
    rc = g.stop()
    assert rc == 0, g.text()
    return s, g


def check_summary(g, changes):
    assert "gds: stopped by SIGTERM: saying goodbye" in g.lines, g.text()
    m = re.search(r"gds: summary: (\d+) decisions, (\d+) changes applied, (\d+) rejected, "
                  r"(\d+) without data, (\d+) settling, (\d+) states missed; decision time mean "
                  r"(\d+) us, p99 (\d+) us", g.text())
    assert m, g.text()
    assert int(m.group(1)) == len(decisions(g.lines))
    assert int(m.group(2)) == changes and int(m.group(3)) == 0
    assert int(m.group(7)) <= int(m.group(8)) or int(m.group(1)) == 1


def test_drives_slo_into_range_from_below(stack):
    s, g = drive(stack, start=1, step=2, expect=7)
    # 1 -> 3 -> 5 -> 7: each move waited for the SLO's window to see the last one (no overshoot)
    assert applied(g.lines) == [(1, 3), (3, 5), (5, 7)], g.text()
    for m in decisions(g.lines):
        assert m.group(2) == "FPS" and int(m.group(11)) < 1_000_000
    assert any("settling" in l for l in g.lines)
    check_summary(g, 3)
    # the daemon saw the session end with the agent's Goodbye
    assert "agent 'gds-e2e' says goodbye: stopped by SIGTERM" in s.d.output()


def test_drives_slo_into_range_from_above(stack):
    s, g = drive(stack, start=16, step=3, expect=7)
    assert applied(g.lines) == [(16, 13), (13, 10), (10, 7)], g.text()
    assert all(m.group(4) in ("above 24..30", "met 24..30") for m in decisions(g.lines)), g.text()
    check_summary(g, 3)


def test_carbon_compounding(stack):
    """WideFPS [10, 60] is met from 3 threads up; the footprint (10 W + 12 W a thread, at 100
    g/kWh) is above its max of 120 mg/min from 6 threads up: GDS steps down while WideFPS is met
    and the footprint too high, and stops at 4 threads (58 W, 96.7 mg/min)."""
    s = stack(8, power=True)
    s.wait_slo("Footprint", lambda v: v > 150, 15 * SLOW)
    g = s.gds("--slo", "WideFPS", "--carbon-slo", "Footprint", "--setting",
              "EncodingThreadCount", "--step", "2", "--sign", "+1", "--period", "0.25")
    line = g.wait_line(lambda l: "Footprint=" in l and "(met ..120)" in l and
                       "EncodingThreadCount 4: kept" in l, 40 * SLOW)
    assert line, g.text()
    assert applied(g.lines) == [(8, 6), (6, 4)], g.text()
    for m in decisions(g.lines):
        if m.group(10) == "applied":  # each step down was for the footprint, with WideFPS met
            assert m.group(4).startswith("met") and m.group(7).startswith("above"), m.group(0)
    assert s.threads() == 4
    assert g.stop() == 0, g.text()
    check_summary(g, 2)


def test_carbon_aware_spends_the_budget_in_the_dirtiest_hours(stack):
    """A replayed day at an hour every two seconds, dirty (500 g/kWh) from 18:00 to 21:00 and clean (100)
    otherwise; BudgetFPS (met from 3 threads up) may be missed 17.5% of any 24 h: 4.2 hours, enough
    for the three dirty hours and the way back (the reserve), not for a clean hour besides. GDS
    --carbon-aware drops to 1 thread for exactly those hours (no dirtier hour lies ahead), then
    goes back to 4 threads."""
    s = stack(4, carbon=lambda i: 500 if i % 24 in (18, 19, 20) else 100,
              replay=", replay: {from: 2022-01-01T00:00:00Z, speed: 1800}",
              slos="""\
  - id: BudgetFPS
    series: transcoding_fps
    aggregation: mean
    window: 1s
    objective: {min: 10}
    compliance_step: 1s
    error_budget: {target: 0.825, window: 24h}
""")
    budget = s.slo("BudgetFPS").budget
    assert budget.target == 0.825 and budget.allowed.seconds == 15120, budget  # 4.2 h
    g = s.gds("--slo", "BudgetFPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign",
              "+1", "--period", "0.2", "--carbon-aware")
    # the replay started with cascad: 18:00 comes about 36 s later, 21:00 about 42 s later (a
    # state's line says "spending budget" only when its window had data, so look at the moves)
    assert g.wait_line(lambda l: "4 -> 1: applied" in l, 70), g.text()
    assert g.wait_line(lambda l: "1 -> 4: applied" in l, 20), g.text()
    assert applied(g.lines) == [(4, 1), (1, 4)], g.text()
    assert s.threads() == 4
    b = s.slo("BudgetFPS").budget
    assert 0 < b.spent.seconds <= 4 * 3600 and b.remaining_ratio < 1, b
    assert g.stop() == 0, g.text()
    # about 6 s of decisions at 0.2 s spent the budget, none before 18:00 or after 21:00
    spent = re.search(r"carbon-aware: (\d+) decisions spent error budget", g.text())
    assert spent and 5 <= int(spent.group(1)) <= 45, g.text()


def test_no_data_keeps_the_setting(stack):
    s = stack(5)
    g = s.gds("--slo", "Silent", "--setting", "EncodingThreadCount", "--step", "1", "--sign",
              "+1", "--period", "0.2")
    assert g.wait_line(lambda l: "seq=6 " in l, 10 * SLOW), g.text()
    assert g.stop() == 0, g.text()
    ds = decisions(g.lines)
    assert ds and all(m.group(3) == "none" and m.group(10) == "kept" for m in ds), g.text()
    assert s.threads() == 5
    assert re.search(r"summary: (\d+) decisions, 0 changes applied, 0 rejected, \1 without data",
                     g.text()), g.text()


def test_second_controller_is_refused(stack):
    s = stack(6)
    first = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign",
                  "+1", "--period", "0.2", "--name", "gds-one")
    assert first.wait_line(lambda l: " seq=1 " in l, 10 * SLOW), first.text()
    second = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign",
                   "+1", "--name", "gds-two")
    assert second.wait(10 * SLOW) == 1, second.text()
    assert "casca-gds: cascad refused the session: setting 'EncodingThreadCount' is already " \
           "leased by agent 'gds-one'" in "\n".join(second.err), second.text()
    assert not second.lines or not decisions(second.lines)
    # SIGINT stops the first cleanly; its Goodbye frees the lease for another GDS
    assert first.stop(signal.SIGINT) == 0, first.text()
    assert "gds: stopped by SIGINT: saying goodbye" in first.lines
    third = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign",
                  "+1", "--period", "0.2", "--duration", "1", "--name", "gds-three")
    assert third.wait(10 * SLOW) == 0, third.text()
    assert "gds: --duration reached: saying goodbye" in third.lines
    assert decisions(third.lines), third.text()


def test_session_ended_by_the_server(stack):
    s = stack(6)
    # a GDS that stops answering (SIGSTOP) loses its session at the keepalive (3 periods + 5 s)
    g = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign", "+1",
              "--period", "0.2", "--name", "sleepy", "--no-reconnect")
    assert g.wait_line(lambda l: " seq=1 " in l, 10 * SLOW), g.text()
    g.p.send_signal(signal.SIGSTOP)
    time.sleep(6.5)
    g.p.send_signal(signal.SIGCONT)
    assert g.wait(10 * SLOW) == 1, g.text()
    assert "casca-gds: the session ended: no message from the agent for 5600 ms" in g.text()
    # cascad stopping ends the session: with --no-reconnect GDS says so and exits 1
    g = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign", "+1",
              "--period", "0.2", "--no-reconnect")
    assert g.wait_line(lambda l: " seq=2 " in l, 10 * SLOW), g.text()
    assert s.d.stop() == 0
    assert g.wait(10 * SLOW) == 1, g.text()
    assert "casca-gds: the session ended: " in g.text()
    assert s.threads() == 6


def test_wrong_token_and_unknown_ids(stack):
    s = stack(6)
    g = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1", "--sign", "+1",
              token="not-a-token-0123456789")
    assert g.wait(10 * SLOW) == 1
    assert "unknown bearer token" in g.text()
    g = s.gds("--slo", "FPS", "--setting", "NoSuchSetting", "--step", "1", "--sign", "+1")
    assert g.wait(10 * SLOW) == 1
    assert "unknown setting 'NoSuchSetting'" in g.text()
    g = s.gds("--slo", "FPS", "--setting", "EncodingThreadCount", "--step", "1.5", "--sign", "+1")
    assert g.wait(10 * SLOW) == 1
    assert "--step 1.5 is not a whole number but setting 'EncodingThreadCount' is an integer" \
        in g.text()
    g = s.gds("--slo", "FPS", "--carbon-slo", "Silent", "--setting", "EncodingThreadCount",
              "--step", "1", "--sign", "+1")
    assert g.wait(10 * SLOW) == 1
    assert "carbon SLO 'Silent' has no max" in g.text()
    assert s.threads() == 6


def self_signed(tmp_path, name, san):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(tmp_path / f"{name}.key"), "-out", str(tmp_path / f"{name}.crt")],
                   check=True, capture_output=True)
    return tmp_path / f"{name}.crt"


def test_config_file_and_tls(stack, tmp_path):
    # An IP address in the certificate: the target needs no name lookup (Debian's c-ares 1.18.1
    # leaks a few bytes per lookup of "localhost", c-ares issue #439, which LSan would report).
    crt = self_signed(tmp_path, "server", "IP:127.0.0.1")
    s = stack(6, tls="  tls: {cert: server.crt, key: server.key}\n")
    # started by hand: conftest's readiness probe is plaintext
    s.d.log = open(s.d.log_path, "w")
    s.d.proc = subprocess.Popen(s.d.args, stdout=s.d.log, stderr=subprocess.STDOUT, env=s.d.env)
    ch = grpc.secure_channel(s.d.target, grpc.ssl_channel_credentials(crt.read_bytes()))
    grpc.channel_ready_future(ch).result(timeout=30)
    ch.close()
    conf = tmp_path / "gds.conf"
    conf.write_text(f"""\
# GDS options, the names of the flags
target = {s.d.target}
token = "{AGENT}"
ca-file = {crt}
slo = FPS
setting = EncodingThreadCount
step = 1
sign = -1
period = 0.2
duration = 30
""")
    # flags win over the file: --sign +1, --duration 1.5
    g = Proc([GDS, "--config", str(conf), "--sign", "+1", "--duration", "1.5"])
    assert g.wait(20 * SLOW) == 0, g.text()
    assert decisions(g.lines), g.text()
    assert "sign +1" in g.lines[0]
    # a CA that did not sign the server's certificate: the handshake fails, clearly
    other = self_signed(tmp_path, "other", "IP:127.0.0.1")
    g = Proc([GDS, "--config", str(conf), "--ca-file", str(other), "--no-reconnect"])
    assert g.wait(20 * SLOW) == 1
    assert f"casca-gds: cannot reach cascad at {s.d.target}" in g.text(), g.text()
    # plaintext against the TLS port
    g = Proc([GDS, "--target", s.d.target, "--slo", "FPS", "--setting", "X", "--step", "1",
              "--sign", "+1", "--no-reconnect"])
    assert g.wait(20 * SLOW) == 1
    assert f"casca-gds: cannot reach cascad at {s.d.target}" in g.text(), g.text()


def test_unreachable_server(tmp_path):
    port = free_port()
    t0 = time.time()
    g = Proc([GDS, "--target", f"127.0.0.1:{port}", "--slo", "FPS", "--setting", "T", "--step",
              "1", "--sign", "+1", "--no-reconnect"])
    assert g.wait(20) == 1
    assert time.time() - t0 < 10
    err = "\n".join(g.err)
    assert f"casca-gds: cannot reach cascad at 127.0.0.1:{port}" in err and "refused" in err, err


@pytest.mark.parametrize("args,message", [
    ([], "--target: required"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "1"], "--sign: required"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "1", "--sign", "2"],
     "--sign: '2' is not +1 or -1"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "0", "--sign", "1"],
     "--step: must be > 0"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "x", "--sign", "1"],
     "--step: 'x' is not a number"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "1", "--sign", "1",
      "--period", "0.01"], "--period: must be between 0.1 and 3600 seconds"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "1", "--sign", "1",
      "--settle", "soon"], "--settle: 'soon' is neither a number of seconds >= 0 nor auto"),
    (["--target", "h:1", "--slo", "S", "--setting", "T", "--step", "1", "--sign", "1",
      "--carbon-slo", "S"], "--carbon-slo: must differ from --slo"),
    (["--bogus"], "--bogus: unknown option"),
    (["--target"], "--target: needs a value"),
    (["stray"], "stray: unexpected argument"),
    (["--config", "/nonexistent/gds.conf"], "/nonexistent/gds.conf: cannot read the config file"),
])
def test_bad_flags(args, message):
    p = subprocess.run([GDS, *args], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, p
    assert f"casca-gds: {message}" in p.stderr, p.stderr
    assert "usage: casca-gds --target HOST:PORT" in p.stderr


def test_bad_config_file(tmp_path):
    conf = tmp_path / "gds.conf"
    conf.write_text("target = h:1\n\n# fine so far\nstep 3\n")
    p = subprocess.run([GDS, "--config", str(conf)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    assert f"casca-gds: {conf}:4: expected `key = value`, got 'step 3'" in p.stderr
    conf.write_text("target = h:1\nspeed = 3\n")
    p = subprocess.run([GDS, "--config", str(conf)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    assert f"{conf}:2: speed: unknown key 'speed'" in p.stderr
    conf.write_text("target = h:1\nsign = up\n")
    p = subprocess.run([GDS, "--config", str(conf)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and f"{conf}:2: sign: 'up' is not +1 or -1" in p.stderr


def test_help():
    p = subprocess.run([GDS, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for flag in ("--target", "--token", "--slo", "--setting", "--step", "--sign", "--carbon-slo",
                 "--period", "--zone", "--name", "--duration", "--config", "--settle", "--tls",
                 "--ca-file"):
        assert flag in p.stdout
