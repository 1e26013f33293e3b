"""Agents and clients reconnect (issue 12, part 2): the real GDS binary, the Python casca.Session,
CascaEnv (RLDS's session), RDS, the Python Reporter and `casca report` keep working across a kill -9 and restart of cascad on the same port
and data dir: each says Hello again and holds its lease again (AdminService.ListAgentSessions),
logging one line when an outage starts and one when it ends, not one per retry. An agent started
before cascad connects when cascad comes up; the fail-fast flags exit (or raise) on an outage."""
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

import casca
from casca.env import CascaEnv
from conftest import SANITIZED, carbon_bundle, free_port
from casca.v1 import admin_pb2, admin_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from test_gds import GDS, CLI, Proc

ROOT = Path(__file__).resolve().parents[2]
RDS = str(ROOT / "agents/rds/casca-rds")
OP, AGENT = "op-0123456789abcdef0123", "agent-0123456789abcdef0123"
TOKENS = {"T_OP": OP, "T_AGENT": AGENT}
DEADLINE = 40 if SANITIZED else 20  # backoff is capped at 10 s: two tries at most after restart


def config(bundle, bus_port):
    return f"""\
bus:
  listen: ["tcp://127.0.0.1:{bus_port}"]
hooks:
  - {{name: meter, topic: "meter/", format: json, values: {{rep: /v}}}}
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: agents, role: agent, token_env: T_AGENT}}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
slos:
  - {{id: fps, series: fps, aggregation: mean, window: 1m, objective: {{min: 24}}}}
  - {{id: rep, series: rep, aggregation: last, window: 1h, objective: {{min: 0}}}}
settings:
  - {{id: Threads, type: int, range: {{min: 1, max: 8}}, controller: {{memory: {{value: 4}}}}}}
  - {{id: Quality, type: int, range: {{min: 1, max: 8}}, controller: {{memory: {{value: 4}}}}}}
  - {{id: Level, type: int, range: {{min: 1, max: 8}}, controller: {{memory: {{value: 4}}}}}}
  - {{id: Preset, type: int, range: {{min: 1, max: 8}}, controller: {{memory: {{value: 4}}}}}}
"""


def publish_fps(d):
    now = time.time()
    pts = []
    for i in range(5):
        p = tm.Point(series="fps", value=30.0)
        p.time.FromNanoseconds(int((now - 5 + i) * 1e9))
        pts.append(p)
    tm_grpc.TelemetryServiceStub(d.channel(OP)).Publish(tm.PublishRequest(points=pts), timeout=10)


def leases(d):
    """{agent name: leased setting ids} of the open sessions."""
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    try:
        r = admin.ListAgentSessions(admin_pb2.ListAgentSessionsRequest(), timeout=2)
    except grpc.RpcError:
        return {}
    return {s.agent_name: set(s.leased_setting_ids) for s in r.sessions}


def wait_leases(d, want, timeout=DEADLINE):
    """Waits until every agent of want holds its settings; the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = leases(d)
        if all(want[a] <= got.get(a, set()) for a in want):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"leases {want} not held within {timeout} s: {leases(d)}")


def kill9(d):
    for ch in d.channels:
        ch.close()
    d.channels = []
    d.proc.kill()
    d.proc.wait()
    d.log.close()


def gds(d, *extra):
    return Proc([GDS, "--target", d.target, "--token", AGENT, "--slo", "fps", "--setting",
                 "Threads", "--step", "1", "--sign", "+1", "--period", "0.2", "--name", "gds-rc",
                 *extra])


def rds(d, *extra):
    return Proc([RDS, "--target", d.target, "--setting", "Level", "--period", "0.2", *extra],
                env=dict(os.environ, CASCA=CLI, CASCA_TOKEN=OP))


def keep_alive(s, stop):
    """A CONTROL session must act once per period: a keepalive, when connected, until stop."""
    while not stop.wait(0.1):
        try:
            s.keepalive()
        except casca.CascaError:
            pass  # an outage: the session comes back by itself


def env_steps(env, stop, steps):
    """RLDS's loop: a step per state (act, then the next state) until stop, counted in steps."""
    while not stop.is_set():
        env.step([1 + len(steps) % 8])
        steps.append(env.state.seq)


def wait_slo(d, slo, value, timeout=DEADLINE, again=None):
    """Waits until the SLO's value is value; again() is called between looks (None = nothing)."""
    op = casca.Client(d.target, OP)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if again:
                again()
            try:
                st = op.slo(slo, timeout=2)
                if st.has_value and st.value == value:
                    return True
            except casca.CascaError:
                pass
            time.sleep(0.2)
        return False
    finally:
        op.close()


def wait_err(p, pred, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(pred(line) for line in p.err):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def d(make_daemon, tmp_path):
    d = make_daemon(config(carbon_bundle(tmp_path, hours=48), free_port()), env=TOKENS)
    d.bus = d.config_path.read_text().split('"tcp://')[1].split('"')[0]
    return d


def test_agents_and_clients_come_back_after_cascad_restarts(d, caplog):
    caplog.set_level(logging.WARNING, logger="casca")
    publish_fps(d)
    g = gds(d)
    r = rds(d)
    client = casca.Client(d.target, AGENT)
    s = casca.Session(client, "py-rc", settings=["Quality"], period=0.2)
    assert list(s.hello().leased_setting_ids) == ["Quality"]
    stop = threading.Event()
    threading.Thread(target=keep_alive, args=(s, stop), daemon=True).start()
    rep = casca.Reporter(target=d.target, token=OP, interval=0.05)
    # casca report (libcasca's nng reporter): one point per line of its stdin
    cli = subprocess.Popen([CLI, "report", "--bus", "tcp://" + d.bus, "--topic", "meter/x"],
                           stdin=subprocess.PIPE, text=True)

    def send(line):
        cli.stdin.write(line + "\n")
        cli.stdin.flush()

    send('{"v": 10}')
    env = CascaEnv(d.target, AGENT, settings=["Preset"], period=0.2, name="env-rc")
    env.reset()
    steps = []
    stepper = threading.Thread(target=env_steps, args=(env, stop, steps), daemon=True)
    stepper.start()
    want = {"gds-rc": {"Threads"}, "py-rc": {"Quality"}, "env-rc": {"Preset"}}
    wait_leases(d, want)
    assert wait_slo(d, "rep", 10)
    assert r.wait_line(lambda l: " applied " in l, DEADLINE), r.text()
    first_session = s.session_id

    times = []
    for outage in (1, 2):
        kill9(d)
        assert rep.report("fps", 30.0)  # queued while cascad is down
        send('{"v": 0}')  # likewise
        # every client sees the outage; the second one outlasts CascaEnv's step_timeout (5 s)
        time.sleep(0.5 if outage == 1 else 6)
        d.start()  # the same port and data dir
        t0 = time.monotonic()
        publish_fps(d)
        times.append(wait_leases(d, want))
        # the Python session answers again: a state, then an action applied
        st = s.next_state(timeout=DEADLINE, fresh=True)
        assert st.settings[0].id == "Quality"
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                res = s.act({"Quality": 3 + outage})
                break
            except casca.CascaError as e:  # the first act may still meet the outage
                assert e.code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, e
                time.sleep(0.1)
        assert [casca.value_of(v.value) for v in res.applied] == [3 + outage]
        # GDS decides again, RDS applies again, the reporter's point got through
        n = len(g.lines)
        assert g.wait_line(lambda l, n=n: " seq=" in l and g.lines.index(l) >= n, DEADLINE), \
            g.text()
        n = len(r.lines)
        assert r.wait_line(lambda l, n=n: " applied " in l and r.lines.index(l) >= n,
                           DEADLINE), r.text()
        assert rep.flush(timeout=DEADLINE) and rep.failed == 0
        # casca report's dialer is back: a line written now comes through (one written during
        # the outage may be lost with the broken connection: nng's PUSH is at most once)
        assert wait_slo(d, "rep", 10 + outage, again=lambda: send(f'{{"v": {10 + outage}}}')), \
            "casca report's points do not come through after the restart"
        # CascaEnv (RLDS) steps on: two states in its new session
        n = len(steps)
        deadline = time.monotonic() + DEADLINE
        while len(steps) < n + 2:
            assert time.monotonic() < deadline, f"CascaEnv stuck after outage {outage}"
            time.sleep(0.05)
        assert wait_err(g, lambda l: "reconnected after" in l and
                        sum("reconnected after" in x for x in g.err) == outage), g.text()
        print(f"outage {outage}: leases back {times[-1]:.1f} s after cascad served again "
              f"({time.monotonic() - t0:.1f} s to all checks)")
    assert s.session_id != first_session and s.outages == 2

    # one line per outage, not one per retry
    for p, name in ((g, "casca-gds"), (r, "casca-rds")):
        lost = [l for l in p.err if "lost connection to cascad at " + d.target in l]
        back = [l for l in p.err if "reconnected after" in l]
        assert len(lost) == 2 and len(back) == 2, p.text()
        assert all(l.startswith(name + ": ") and l.endswith("; reconnecting") for l in lost)
    py = [rec.getMessage() for rec in caplog.records if rec.name == "casca"]
    for name in ("py-rc", "env-rc"):
        assert sum(m.startswith(f"casca: {name}: lost connection to cascad at {d.target}: ")
                   for m in py) == 2, py
        assert sum(m.startswith(f"casca: {name}: reconnected to cascad") for m in py) == 2, py
    assert rep.accepted >= 2

    stop.set()
    cli.stdin.close()
    assert cli.wait(DEADLINE) == 0
    stepper.join(DEADLINE)
    env.close()
    rep.close()
    s.goodbye("done")
    client.close()
    assert g.stop() == 0, g.text()
    assert r.stop() == 0, r.text()


def test_agents_started_before_cascad_connect_when_it_comes_up(make_daemon, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="casca")
    d = make_daemon(config(carbon_bundle(tmp_path, hours=48), free_port()), env=TOKENS,
                    start=False)
    g = gds(d)
    r = rds(d)
    client = casca.Client(d.target, AGENT)
    s = casca.Session(client, "py-rc", settings=["Quality"], period=0.2)
    welcome = []
    t = threading.Thread(target=lambda: welcome.append(s.hello(timeout=None)), daemon=True)
    t.start()
    assert wait_err(g, lambda l: "cannot connect to cascad at " + d.target in l), g.text()
    assert wait_err(r, lambda l: "lost connection to cascad at " + d.target in l), r.text()
    time.sleep(1)  # a few retries, each silent
    d.start()
    publish_fps(d)
    wait_leases(d, {"gds-rc": {"Threads"}, "py-rc": {"Quality"}})
    t.join(DEADLINE)
    assert welcome and list(welcome[0].leased_setting_ids) == ["Quality"]
    s.keepalive()
    assert r.wait_line(lambda l: " applied " in l, DEADLINE), r.text()
    assert len([l for l in g.err if "cannot connect" in l]) == 1, g.text()
    assert wait_err(g, lambda l: l.startswith("casca-gds: connected after ")), g.text()
    s.goodbye("done")
    client.close()
    assert g.stop() == 0, g.text()
    assert r.stop() == 0, r.text()


def test_fail_fast_flags_end_on_an_outage(d):
    publish_fps(d)
    g = gds(d, "--no-reconnect")
    r = rds(d, "--no-reconnect")
    client = casca.Client(d.target, AGENT)
    s = casca.Session(client, "py-rc", settings=["Quality"], period=0.2, reconnect=False)
    s.hello()
    wait_leases(d, {"gds-rc": {"Threads"}, "py-rc": {"Quality"}})
    kill9(d)
    assert g.wait(DEADLINE) == 1, g.text()
    assert "casca-gds: the session ended: " in g.text()
    assert r.wait(DEADLINE) == 3, r.text()
    with pytest.raises(casca.CascaError) as e:
        while True:
            s.next_state(timeout=DEADLINE)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert s.ended
    client.close()
    d.start()  # stopped cleanly by the fixture


def test_errors_retrying_cannot_fix_stay_fatal(d):
    g = Proc([GDS, "--target", d.target, "--token", "wrong-0123456789abcdef", "--slo", "fps",
              "--setting", "Threads", "--step", "1", "--sign", "+1"])
    assert g.wait(DEADLINE) == 1 and "UNAUTHENTICATED" in g.text() or \
        "unknown bearer token" in g.text(), g.text()
    g = Proc([GDS, "--target", d.target, "--token", AGENT, "--slo", "fps", "--setting", "Nope",
              "--step", "1", "--sign", "+1"])
    assert g.wait(DEADLINE) == 1 and "unknown setting 'Nope'" in g.text(), g.text()
    client = casca.Client(d.target, AGENT)
    with pytest.raises(casca.CascaError) as e:
        casca.Session(client, "py-rc", settings=["Nope"]).hello(timeout=None)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    client.close()
