"""The Python package (clients/python, `import casca`) against the real daemon: casca.Client's typed
methods for every service and its one error type, casca.Reporter's batches, casca.Session, and
casca.env.CascaEnv's reset/step shapes, normalisation and reward."""
import datetime as dt
import math
import os
import subprocess
import threading
import time

import grpc
import pytest

import casca
from casca.env import CarbonAwareReward, CascaEnv
from casca.v1 import admin_pb2, agent_pb2, slo_pb2
from conftest import carbon_bundle

TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_AGENT": "agent-0123456789abcdef01",
          "T_REP": "rep-0123456789abcdef0123", "T_VIEW": "view-0123456789abcdef012"}
OP, AGENT, REP, VIEW = (TOKENS[k] for k in ("T_OP", "T_AGENT", "T_REP", "T_VIEW"))
SANITIZED = os.environ.get("CASCA_SANITIZE", "OFF") in ("ON", "1", "TRUE")


def config(bundle, extra=""):
    return f"""\
server:
  log_level: debug
store:
  sync: every_commit
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: agent-token, role: agent, token_env: T_AGENT}}
    - {{name: player, role: reporter, token_env: T_REP}}
    - {{name: viewer, role: viewer, token_env: T_VIEW}}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
slo_engine: {{interval: 100ms, compliance_step: 10s, compliance_period: 10m}}
slos:
  - id: fps
    description: frames per second
    unit: fps
    series: fps_private
    aggregation: mean
    window: 5m
    objective: {{min: 24, max: 30}}
  - id: carbon
    kind: carbon_footprint
    power_series: power_private
    window: 5m
    objective: {{max: 80}}
settings:
  - id: Threads
    description: encoding threads
    unit: threads
    type: int
    range: {{min: 1, max: 8}}
    step: 1
    controller: {{memory: {{value: 4}}}}
  - id: Preset
    type: enum
    allowed: [fast, medium, slow]
    controller: {{memory: {{value: medium}}}}
{extra}"""


@pytest.fixture
def d(make_daemon, tmp_path):
    return make_daemon(config(carbon_bundle(tmp_path)), env=TOKENS)


@pytest.fixture
def clients(d):
    made = []

    def make(token=OP, **kw):
        c = casca.Client(d.target, token, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def feed(c, fps, power_w):
    """fps and power points one second apart in the recent past, through Client.publish."""
    now = time.time()
    pts = [c.point("fps_private", v, time=now - len(fps) + i) for i, v in enumerate(fps)]
    pts += [c.point("power_private", power_w, time=now - 3 + i) for i in range(3)]
    r = c.publish(pts)
    assert r.accepted == len(pts) and r.rejected == 0


def eventually(fn, timeout=10):
    """fn()'s first truthy result, polling (the SLO engine re-evaluates every 100 ms)."""
    deadline = time.time() + timeout
    while True:
        r = fn()
        if r or time.time() > deadline:
            return r
        time.sleep(0.05)


def expect_error(code, fn, *args, **kw):
    with pytest.raises(casca.CascaError) as e:
        fn(*args, **kw)
    assert e.value.code == code, e.value
    assert e.value.code_name == code.name
    assert str(e.value).startswith(e.value.method + ": " + code.name)
    return e.value


def test_client_slos_settings_and_errors(d, clients):
    op, agent, viewer = clients(OP), clients(AGENT), clients(VIEW)
    op.ready()
    feed(op, [20, 22, 24], 30.0)

    assert [s.id for s in agent.slos()] == ["fps", "carbon"]
    assert [s.id for s in agent.slos(["carbon"])] == ["carbon"]
    assert agent.slos()[1].kind == slo_pb2.SLO_KIND_CARBON_FOOTPRINT
    st = eventually(lambda: (lambda x: x if x.has_value else None)(agent.slo("fps")))
    assert st.has_value and st.value == pytest.approx(22) and not st.fulfilled
    assert st.slo.unit == "fps" and casca.range_of(st.slo.objective) == (24, 30)
    hist = viewer.slo_history("fps", start=time.time() - 60, step=10)
    assert hist and hist[-1].has_value
    assert viewer.slo_history("fps", dt.datetime.utcnow() - dt.timedelta(minutes=1),
                              step=dt.timedelta(seconds=10))

    settings = agent.settings()
    assert [s.id for s in settings] == ["Threads", "Preset"]
    assert casca.range_of(settings[0].range) == (1, 8) and settings[0].unit == "threads"
    assert [casca.value_of(v) for v in settings[1].allowed] == ["fast", "medium", "slow"]
    assert casca.value_of(agent.get_setting("Threads").value) == 4
    v = agent.set_setting("Threads", 6)
    assert casca.value_of(v.value) == 6 and v.changed_by == "agent-token"
    assert casca.value_of(agent.set_setting("Threads", 2, dry_run=True).value) == 2
    assert casca.value_of(agent.get_setting("Threads").value) == 6  # dry run changed nothing
    assert casca.value_of(agent.set_setting("Preset", "fast").value) == "fast"

    # every failure is one CascaError with the status code and the server's message
    e = expect_error(grpc.StatusCode.NOT_FOUND, agent.slo, "nope")
    assert "nope" in e.message and e.method == "casca.v1.SloService/GetSlo"
    e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.set_setting, "Threads", 99)
    assert "8" in e.message  # names the allowed range
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.set_setting, "Threads", 2.5)
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.set_setting, "Preset", "ultra")
    expect_error(grpc.StatusCode.NOT_FOUND, agent.get_setting, "Nope")
    expect_error(grpc.StatusCode.PERMISSION_DENIED, agent.status)  # operator only
    expect_error(grpc.StatusCode.PERMISSION_DENIED, viewer.set_setting, "Threads", 3)
    expect_error(grpc.StatusCode.UNAUTHENTICATED, clients("not-a-valid-token-000000").slos)
    # caught before sending: INVALID_ARGUMENT too
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.set_setting, "Threads", [1])
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.slo_history, "fps", start="yesterday")
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.set_setting, "Threads", 2**70)
    # nobody listening: UNAVAILABLE, within the call's timeout
    with casca.Client("127.0.0.1:1", timeout=2) as gone:
        expect_error(grpc.StatusCode.UNAVAILABLE, gone.slos)
        expect_error(grpc.StatusCode.UNAVAILABLE, gone.ready, 0.5)


def test_client_watches(d, clients):
    op, agent = clients(OP), clients(AGENT)
    feed(op, [20], 30.0)
    seen = []
    w = agent.watch_slos(["fps"], min_interval=0)

    def read():
        for st in w:
            if st.has_value:
                seen.append(st.value)

    t = threading.Thread(target=read)
    t.start()
    deadline = time.time() + 10
    while not seen and time.time() < deadline:
        time.sleep(0.05)
    feed(op, [28, 28, 28, 28, 28], 30.0)  # mean over the window moves up
    while (not seen or seen[-1] == pytest.approx(20)) and time.time() < deadline:
        time.sleep(0.05)
    w.cancel()  # ends the iteration without an error
    t.join(5)
    assert not t.is_alive() and seen[0] == pytest.approx(20) and seen[-1] > 20

    with agent.watch_settings(["Threads"]) as ws:
        assert casca.value_of(next(ws).value) == 4  # the current value first
        op.set_setting("Threads", 5)
        assert casca.value_of(next(ws).value) == 5
    with pytest.raises(casca.CascaError) as e:  # a watch of an unknown SLO fails on reading
        next(iter(agent.watch_slos(["nope"], timeout=5)))
    assert e.value.code == grpc.StatusCode.NOT_FOUND


def test_client_carbon(d, clients):
    c = clients(AGENT)
    at5 = dt.datetime(2022, 3, 1, 5, 30)
    i = c.intensity("AT", time=at5)
    assert i.gco2eq_per_kwh == pytest.approx(105) and i.zone == "AT" and i.provider == "bundled"
    unix = (at5 - dt.datetime(1970, 1, 1)).total_seconds()
    assert c.intensity(time=unix).gco2eq_per_kwh == 105  # unix seconds; the default zone
    assert c.intensity("AT", time=at5, granularity="daily").gco2eq_per_kwh == pytest.approx(111.5)
    h = c.intensity_history("AT", dt.datetime(2022, 3, 1), dt.datetime(2022, 3, 1, 4))
    assert [p.gco2eq_per_kwh for p in h] == [100, 101, 102, 103]
    assert "AT" in {z.zone for z in c.zones()}
    src = c.sources()
    assert src.factor_set and {"coal", "gas"} <= {s.source for s in src.sources}
    coal = {s.source: s.gco2eq_per_kwh for s in src.sources}["coal"]
    assert c.mix({"coal": 1}).gco2eq_per_kwh == pytest.approx(coal)
    assert c.mix([("coal", 50), ("coal", 50)]).gco2eq_per_kwh == pytest.approx(coal)
    e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, c.mix, {"fusion": 1})
    assert "coal" in e.message  # lists the known sources
    fp = c.footprint(energy_wh=2000, zone="AT", time=at5)
    assert fp.gco2eq == pytest.approx(2 * 105) and fp.energy_wh == 2000
    fp = c.footprint(power_w=100, duration_s=3600, zone="AT", time=at5,
                     embodied_gco2eq=10, functional_units=4, functional_unit="video")
    assert fp.gco2eq == pytest.approx(10.5) and fp.has_sci
    assert fp.sci_gco2eq_per_unit == pytest.approx((10.5 + 10) / 4)
    assert c.footprint(energy_wh=1000, mix={"coal": 1}).gco2eq == pytest.approx(coal)
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, c.footprint, zone="AT")
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, c.footprint, power_w=5)
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, c.intensity, "AT", granularity="weekly")
    bw = c.best_window(3600, "AT", start=dt.datetime(2022, 3, 1), end=dt.datetime(2022, 3, 2))
    assert bw.start.ToDatetime() == dt.datetime(2022, 3, 1)  # hour 0 is the cleanest
    assert bw.mean_gco2eq_per_kwh == pytest.approx(100)


def test_client_admin_and_telemetry(d, clients):
    op, agent = clients(OP), clients(AGENT)
    s = op.status()
    assert s.version and s.config_generation == 1 and s.counts["auth_tokens"] == 4
    r = op.reload()
    assert r.ok and r.generation == 2 and not r.errors
    agent.set_setting("Threads", 7)
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, agent.set_setting, "Threads", 0)
    entries = op.audit(setting_id="Threads")
    assert [(e.caller, casca.value_of(e.new_value), e.outcome) for e in entries] == [
        ("agent-token", 7, admin_pb2.AUDIT_OUTCOME_APPLIED),
        ("agent-token", 0, admin_pb2.AUDIT_OUTCOME_REJECTED)]
    assert len(op.audit(limit=1)) == 1
    assert op.agent_sessions() == []

    r = op.publish([("fps_private", 25.0, {"client": "a"}, time.time() - 1),
                    op.point("fps_private", 26.0, {"client": "a"})])
    assert r.accepted == 2
    r = op.publish([("fps_private", float("nan"))])
    assert r.accepted == 0 and r.rejected == 1 and r.errors
    series = op.query("fps_private", start=time.time() - 60, tags={"client": "a"},
                      aggregation="max")
    assert len(series) == 1 and series[0].samples[0].value == 26
    assert op.query("fps_private", start=time.time() - 60, aggregation="count")
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, op.query, "x", 0, aggregation="median")
    assert {x.series for x in op.list_series("fps")} == {"fps_private"}
    expect_error(grpc.StatusCode.PERMISSION_DENIED, agent.list_series)

    # a trajectory export of a short session
    with agent.session("traj", settings=["Threads"], period=0.1) as sess:
        sess.hello()
        st = sess.next_state(timeout=5)
        assert [x.agent_name for x in op.agent_sessions()] == ["traj"]
        assert sess.act({"Threads": 3}, st.seq).applied
        sess.next_state(timeout=5)
        sid = sess.session_id
        sess.goodbye("done")
    steps = []
    deadline = time.time() + 10
    while not any(s.HasField("action") for s in steps) and time.time() < deadline:
        steps = list(op.export_trajectory(session_id=sid, timeout=10))
        time.sleep(0.1)
    assert all(s.session_id == sid for s in steps)
    assert any(s.HasField("action") and s.result.applied for s in steps)
    assert list(op.export_trajectory(agent_name="traj", timeout=10))
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, op.export_trajectory)


def test_reporter(d, clients):
    op = clients(OP)
    with casca.Reporter(target=d.target, token=REP, batch=500, interval=0.2,
                        tags={"client": "r1"}) as rep:
        t0 = time.time() - 30
        for i in range(1200):
            assert rep.report("rep_series", i, time=t0 + i * 0.01)
        rep.report("rep_series", 5.0, tags={"client": "r2"})
        rep.report("rep_series", float("nan"))  # the server rejects it
        assert rep.flush(timeout=20)
        assert rep.accepted == 1201 and rep.rejected == 1 and rep.errors
        assert rep.dropped == 0 and rep.failed == 0
    cnt = op.query("rep_series", start=t0 - 1, tags={"client": "r1"}, aggregation="count")
    assert cnt[0].samples[0].value == 1200
    # interval: a lone point goes out without a flush
    rep = op.reporter(batch=100, interval=0.1)
    rep.report("rep_series", 1.0, tags={"client": "r3"})
    deadline = time.time() + 10
    while rep.accepted < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert rep.accepted == 1
    rep.close()
    with pytest.raises(casca.CascaError):
        rep.report("rep_series", 1.0)
    # refused for good (an agent may not publish): counted, the error kept, nothing retried
    bad = casca.Reporter(target=d.target, token=AGENT, interval=0.05)
    bad.report("rep_series", 1.0)
    assert bad.flush(timeout=10)
    assert bad.failed == 1 and bad.last_error.code == grpc.StatusCode.PERMISSION_DENIED
    bad.close()
    # a full queue drops and counts instead of blocking
    down = casca.Reporter(target="127.0.0.1:1", batch=1, max_queue=3, interval=10, timeout=1)
    for i in range(10):
        down.report("x", i)
    assert down.dropped >= 6
    assert not down.close(timeout=0.5)
    assert down.dropped + down.failed == 10 and down.accepted == 0


def test_session(d, clients):
    agent = clients(AGENT)
    s = casca.Session(agent, "py-agent", slos=["fps"], settings=["Threads"], period=0.1)
    w = s.hello()
    assert w.session_id == s.session_id and list(w.leased_setting_ids) == ["Threads"]
    st = s.next_state(timeout=5)
    assert st.settings[0].id == "Threads" and casca.value_of(st.settings[0].value) == 4
    r = s.act({"Threads": 6})
    assert [casca.value_of(v.value) for v in r.applied] == [6] and not r.rejected
    fresh = s.next_state(timeout=5, fresh=True)  # arrived after the answer: shows the change
    assert casca.value_of(fresh.settings[0].value) == 6
    r = s.act([("Threads", 99)])
    assert not r.applied and "8" in r.rejected[0].reason
    r = s.act({"Threads": 2.0})  # an integral float is fine for an INT setting
    assert casca.value_of(r.applied[0].value) == 2
    assert not s.keepalive().rejected
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, s.act, {"Threads": 2.5})
    # a second controller is refused with the holder's name
    other = casca.Session(agent, "second", settings=["Threads"])
    e = expect_error(grpc.StatusCode.FAILED_PRECONDITION, other.hello)
    assert "py-agent" in e.message
    n = 0
    for st in s.states(timeout=5):
        n += 1
        if n == 3:
            break
    s.goodbye("bye")
    assert s.ended
    # the lease is free again
    with casca.Session(agent, "second", settings=["Threads"], period=0.1) as s2:
        assert list(s2.hello().leased_setting_ids) == ["Threads"]
        s2.goodbye()
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, casca.Session, agent, "x", mode="boss")


def expected_reward(fps_ok, fp, carbon_ok, w=0.5, ref=80.0):
    c = min(1.0, fp / ref)
    terms = [(1 + w * (1 - c)) / (1 + w) if ok else -(1 + w * c) / (1 + w)
             for ok in (fps_ok, carbon_ok)]
    return sum(terms) / 2


def test_env(d, clients):
    op = clients(OP)
    feed(op, [20, 22, 24], 30.0)  # fps mean 22 (below [24, 30]); 30 W
    assert eventually(lambda: all(op.slo(x).has_value for x in ("fps", "carbon")))
    env = CascaEnv(d.target, AGENT, slos=["fps", "carbon"], settings=["Threads", "Preset"],
                   period=0.1, max_steps=3)
    obs, info = env.reset(seed=1)
    assert env.observation_names == ["setting:Threads", "setting:Preset", "slo:fps",
                                     "slo:carbon", "carbon:footprint_mg_per_min"]
    assert obs.shape == env.observation_space.shape == (5,) and obs.dtype.name == "float32"
    assert list(env.observation_space.low) == [-1, -1, -5, -5, 0]
    assert list(env.action_space.low) == [1, 0] and list(env.action_space.high) == [8, 2]
    assert env.action_space.integer == [True, True]
    # normalisation from the Welcome's ranges
    fp = info["footprint_mg_per_min"]
    assert 30 * 100 / 60 <= fp <= 30 * 123 / 60  # W x gCO2eq/kWh / 60 = mg/min
    carbon_value = info["slos"]["carbon"]["value"]
    assert carbon_value == pytest.approx(fp)
    want = [(4 - 1) / 7 * 2 - 1, 0.0, (22 - 27) / 3, 2 * carbon_value / 80 - 1, fp / 80]
    assert list(obs) == pytest.approx(want, abs=1e-5)
    assert info["slos"]["fps"] == {"value": pytest.approx(22), "has_value": True,
                                   "fulfilled": False}
    assert env.normalization["carbon_ref"] == 80

    # a step: the action's values are clamped and rounded, the state shows them
    obs, reward, terminated, truncated, info = env.step([6.4, 2])
    assert info["applied"] == {"Threads": 6, "Preset": "slow"} and not info["rejected"]
    assert info["settings"] == {"Threads": 6, "Preset": "slow"}
    assert obs[0] == pytest.approx((6 - 1) / 7 * 2 - 1) and obs[1] == pytest.approx(1)
    assert not terminated and not truncated
    assert reward == pytest.approx(expected_reward(False, info["footprint_mg_per_min"], True))
    obs, reward, _, truncated, info = env.step([100, -3])  # clamped to the range
    assert info["applied"] == {"Threads": 8, "Preset": "fast"}
    obs, reward, _, truncated, info = env.step([8, 0])  # nothing changes: nothing is sent
    assert info["applied"] == {} and truncated  # max_steps = 3
    feed(op, [27] * 300, 30.0)  # fps fulfilled now
    obs, info = env.reset()
    assert env.steps == 0
    action = env.action_space.sample()
    assert env.action_space.contains(action) and all(a == int(a) for a in action)
    obs, reward, _, truncated, info = env.step(action)
    assert info["slos"]["fps"]["fulfilled"]
    assert reward == pytest.approx(expected_reward(True, info["footprint_mg_per_min"], True))
    assert reward > 0.5
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, env.step, [1])
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, env.step, [float("nan"), 0])
    env.close()

    # raw observations, a custom reward, and a setting CascaEnv cannot drive
    env = CascaEnv(client=op, slos=["fps"], settings=["Threads"], period=0.1, normalize=False,
                   mode="shadow", name="raw", reward=lambda state, welcome: len(state.slos))
    threads = casca.value_of(op.get_setting("Threads").value)
    obs, info = env.reset()
    assert list(obs) == pytest.approx([threads, info["slos"]["fps"]["value"], 0], abs=1e-4)
    assert list(env.observation_space.high)[0] == 8
    assert math.isinf(env.observation_space.high[1])
    obs, reward, _, _, info = env.step([threads % 8 + 1])
    assert reward == 1 and obs[0] == threads  # shadow: validated, never applied
    assert info["applied"] == {"Threads": threads % 8 + 1}
    env.close()
    assert casca.value_of(op.get_setting("Threads").value) == threads


def test_carbon_aware_reward():
    """The reward on hand-made states: the formula of casca.env.CarbonAwareReward."""
    def slo(id_, kind=slo_pb2.SLO_KIND_VALUE, hi=None):
        s = slo_pb2.Slo(id=id_, kind=kind)
        if hi is not None:
            s.objective.max = hi
        return s

    def state(footprint, *fulfilled):
        st = agent_pb2.State(slos=[slo_pb2.SloStatus(slo=slo(f"s{i}"), has_value=True,
                                                     fulfilled=f)
                                   for i, f in enumerate(fulfilled)])
        st.carbon.footprint_mg_per_min = footprint
        return st

    plain = agent_pb2.Welcome(slos=[slo("s0"), slo("s1")])
    assert CarbonAwareReward()(state(0, True, False), plain) == 0  # no carbon reference: +-1
    assert CarbonAwareReward()(state(0, True, True), plain) == 1
    carbon = agent_pb2.Welcome(slos=[slo("s0"), slo("c", slo_pb2.SLO_KIND_CARBON_FOOTPRINT, 80)])
    r = CarbonAwareReward(carbon_weight=0.5)
    assert r(state(20, True, True), carbon) == pytest.approx((1 + 0.5 * 0.75) / 1.5)
    assert r(state(20, False, True), carbon) == pytest.approx(
        (-(1 + 0.5 * 0.25) + (1 + 0.5 * 0.75)) / 1.5 / 2)
    assert r(state(200, False, False), carbon) == -1  # c is capped at 1
    assert r(state(0, True, True), carbon) == 1
    assert CarbonAwareReward(carbon_scale=40)(state(20, True), plain) == pytest.approx(
        (1 + 0.5 * 0.5) / 1.5)
    assert r(agent_pb2.State(), carbon) == 0
    unvalued = state(0, True)
    unvalued.slos[0].has_value = False  # no data counts as unfulfilled
    assert CarbonAwareReward()(unvalued, plain) == -1


def test_env_unsupported_setting(make_daemon, tmp_path):
    d = make_daemon(config(carbon_bundle(tmp_path), extra="""\
  - id: Name
    type: string
    controller: {memory: {value: x}}
  - id: Open
    type: int
    controller: {memory: {value: 3}}
"""), env=TOKENS)
    for sid, why in (("Name", "free string"), ("Open", "closed range")):
        env = CascaEnv(d.target, AGENT, settings=[sid], period=0.1, name="bad")
        with pytest.raises(casca.CascaError) as e:
            env.reset()
        assert why in e.value.message and e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        env.close()
    env = CascaEnv(d.target, AGENT, settings=["Open"], bounds={"Open": (0, 10)}, period=0.1)
    obs, _ = env.reset()  # no slos named: all of them, without data yet
    assert env.observation_names == ["setting:Open", "slo:fps", "slo:carbon",
                                     "carbon:footprint_mg_per_min"]
    assert list(obs) == pytest.approx([(3 - 0) / 10 * 2 - 1, 0, 0, 0])
    env.close()


def test_tls_client(make_daemon, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=casca-test", "-addext", "subjectAltName=DNS:casca-test",
                    "-keyout", str(tmp_path / "server.key"), "-out", str(tmp_path / "server.crt")],
                   check=True, capture_output=True)
    d = make_daemon("server:\n  tls: {cert: server.crt, key: server.key}\n", start=False)
    d.proc = subprocess.Popen(d.args, stdout=open(d.log_path, "w"), stderr=subprocess.STDOUT)
    d.log = open(os.devnull, "w")
    with casca.Client(d.target, ca=tmp_path / "server.crt", server_name="casca-test") as c:
        c.ready(timeout=30 if SANITIZED else 10)
        assert c.status().version
    with casca.Client(d.target, timeout=3) as plain:  # plaintext on a TLS port
        expect_error(grpc.StatusCode.UNAVAILABLE, plain.status)
