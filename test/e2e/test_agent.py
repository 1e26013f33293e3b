"""AgentService.Session through the real daemon, with a memory-controller setting and an SLO fed by
TelemetryService.Publish: Hello/Welcome (public fields only, no private string in any byte),
periodic States, actions applied and answered, leases (a second CONTROL agent is refused, a
disconnect or a silent agent releases the lease), SHADOW never applies, OBSERVE only watches,
bad first messages, actions on settings not leased / out of range, a rate-limited flood, and
AdminService.ListAgentSessions / ExportTrajectory."""
import queue
import threading
import time

import grpc
import pytest
from google.protobuf import duration_pb2

from casca.v1 import admin_pb2, admin_pb2_grpc
from casca.v1 import agent_pb2, agent_pb2_grpc
from casca.v1 import common_pb2, control_pb2, control_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from conftest import carbon_bundle

TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_GDS": "gds-0123456789abcdef0123",
          "T_RLDS": "rlds-0123456789abcdef0123"}
OP, GDS, RLDS = TOKENS["T_OP"], TOKENS["T_GDS"], TOKENS["T_RLDS"]
CONTROL, SHADOW, OBSERVE = (agent_pb2.AGENT_MODE_CONTROL, agent_pb2.AGENT_MODE_SHADOW,
                            agent_pb2.AGENT_MODE_OBSERVE)

# Private details of the config: none may reach an agent.
PRIVATE = [b"secret_fps_series", b"hidden-client-7", b"client", b"memory", b"latency",
           b"slo-private", b"bundle", b"tags", b"series"]


def config(bundle):
    return f"""\
server:
  log_level: debug
store:
  sync: every_commit
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: gds-token, role: agent, token_env: T_GDS}}
    - {{name: rlds-token, role: agent, token_env: T_RLDS}}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
slo_engine: {{interval: 100ms, compliance_step: 10s, compliance_period: 10m}}
slos:
  - id: fps
    description: frames per second
    unit: fps
    series: secret_fps_series
    tags: {{client: hidden-client-7}}
    aggregation: mean
    window: 5m
    objective: {{min: 24, max: 30}}
settings:
  - id: Threads
    description: encoding threads
    unit: threads
    type: int
    range: {{min: 1, max: 8}}
    step: 1
    controller: {{memory: {{value: 4, latency: 0ms}}}}
  - id: Quality
    type: int
    range: {{min: 0, max: 100}}
    controller: {{memory: {{value: 50}}}}
"""


@pytest.fixture
def d(make_daemon, tmp_path):
    return make_daemon(config(carbon_bundle(tmp_path)), env=TOKENS)


def publish_fps(d, values):
    now = time.time()
    pts = []
    for i, v in enumerate(values):  # one second apart, in the recent past
        p = tm.Point(series="secret_fps_series", value=v, tags={"client": "hidden-client-7"})
        p.time.FromNanoseconds(int((now - len(values) + i) * 1e9))
        pts.append(p)
    r = tm_grpc.TelemetryServiceStub(d.channel(OP)).Publish(tm.PublishRequest(points=pts),
                                                            timeout=10)
    assert r.accepted == len(pts)


def iv(v):
    return common_pb2.Value(int_value=v)


def change(id_, v, dry_run=False):
    return control_pb2.SetSettingRequest(id=id_, value=iv(v), dry_run=dry_run)


END = object()


class Session:
    """One agent stream: messages are sent through a queue, answers read by a thread."""

    def __init__(self, d, token, **hello):
        self.q, self.out, self.raw = queue.Queue(), queue.Queue(), []
        stub = agent_pb2_grpc.AgentServiceStub(d.channel(token))
        self.call = stub.Session(self._gen(), timeout=60)
        self.error = None
        threading.Thread(target=self._read, daemon=True).start()
        if hello:
            period = hello.pop("period_ms", 200)
            self.send(hello=agent_pb2.Hello(period=duration_pb2.Duration(
                nanos=period * 1000000 % 1000000000, seconds=period // 1000), **hello))

    def _gen(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m

    def _read(self):
        try:
            for m in self.call:
                self.raw.append(m.SerializeToString())
                self.out.put(m)
        except grpc.RpcError as e:
            self.error = e
        self.out.put(END)

    def send(self, **kw):
        self.q.put(agent_pb2.AgentMessage(**kw))

    def act(self, seq, nonce, *changes):
        self.send(action=agent_pb2.Action(state_seq=seq, nonce=nonce, changes=list(changes)))

    def recv(self, kind, timeout=5):
        """The next message of kind ("welcome", "state", "result"), skipping others; END if the
        call ended."""
        deadline = time.time() + timeout
        while True:
            m = self.out.get(timeout=max(0.01, deadline - time.time()))
            if m is END:
                self.out.put(END)
                return END
            if m.WhichOneof("msg") == kind:
                return getattr(m, kind)

    def ended(self, timeout=5):
        while True:
            m = self.out.get(timeout=timeout)
            if m is END:
                return self.error

    def close(self):
        self.q.put(None)


def get_threads(d):
    stub = control_pb2_grpc.ServiceControlStub(d.channel(OP))
    return stub.GetSetting(control_pb2.GetSettingRequest(id="Threads"), timeout=5)


def test_agent_sessions(d):
    publish_fps(d, [20, 22, 24])  # mean 22: below the objective

    a = Session(d, GDS, agent_name="gds", mode=CONTROL, slo_ids=["fps"],
                setting_ids=["Threads"], period_ms=200)
    w = a.recv("welcome")
    assert w.session_id.startswith("as-")
    assert [s.id for s in w.slos] == ["fps"]
    assert w.slos[0].description == "frames per second" and w.slos[0].unit == "fps"
    assert w.slos[0].objective.min == 24 and w.slos[0].objective.max == 30
    assert [s.id for s in w.settings] == ["Threads"]
    assert w.settings[0].range.min == 1 and w.settings[0].range.max == 8
    assert w.settings[0].unit == "threads"
    assert list(w.leased_setting_ids) == ["Threads"]

    # states: seq + 1 each, one per period, with the SLO, the setting and the carbon figures
    states = [a.recv("state") for _ in range(6)]
    seqs = [s.seq for s in states]
    assert seqs == list(range(seqs[0], seqs[0] + 6)), seqs
    span = (states[-1].time.ToNanoseconds() - states[1].time.ToNanoseconds()) / 1e9
    assert 0.6 <= span <= 1.2, span  # 4 periods of 200 ms
    last = states[-1]
    assert last.slos[0].slo.id == "fps" and last.slos[0].has_value
    assert last.slos[0].value == pytest.approx(22) and not last.slos[0].fulfilled
    assert last.settings[0].id == "Threads" and last.settings[0].value.int_value == 4
    assert last.carbon.zone == "AT" and 100 <= last.carbon.intensity_gco2eq_per_kwh <= 123
    assert last.missed == 0

    # an action is applied, read back and answered once
    a.act(last.seq, "a1", change("Threads", 6))
    r = a.recv("result")
    assert r.nonce == "a1" and r.state_seq == last.seq and not r.rejected
    assert r.applied[0].id == "Threads" and r.applied[0].value.int_value == 6
    assert r.applied[0].changed_by == "gds"
    v = get_threads(d)
    assert v.value.int_value == 6 and v.changed_by == "gds"
    deadline = time.time() + 3
    while a.recv("state").settings[0].value.int_value != 6:
        assert time.time() < deadline

    # out of range, not leased, unknown: one rejection each, with a reason
    time.sleep(0.25)  # a fresh rate-limit window
    a.act(last.seq, "a2", change("Threads", 99), change("Quality", 10), change("Nope", 1))
    r = a.recv("result")
    assert r.nonce == "a2" and not r.applied
    why = {x.setting_id: x.reason for x in r.rejected}
    assert set(why) == {"Threads", "Quality", "Nope"}
    assert "8" in why["Threads"], why  # names the allowed range
    assert "not leased" in why["Quality"] and "Hello.setting_ids" in why["Quality"]
    assert why["Nope"].startswith("unknown setting 'Nope'")  # not the Hello advice
    assert get_threads(d).value.int_value == 6

    # a flood: more than 10 actions in a period are rejected with a clear reason
    time.sleep(0.25)
    for i in range(20):
        a.act(last.seq, f"f{i}", change("Threads", 5))
    results = [a.recv("result") for _ in range(20)]
    assert sorted(r.nonce for r in results) == sorted(f"f{i}" for i in range(20))
    limited = [r for r in results if r.rejected and "rate limit" in r.rejected[0].reason]
    assert len(limited) >= 5, [r.rejected for r in results]
    assert all(len(r.applied) == 1 for r in results if r not in limited)

    # a second CONTROL agent on the same setting is refused, naming the setting and the holder
    b = Session(d, RLDS, agent_name="rlds", mode=CONTROL, setting_ids=["Threads"])
    err = b.ended()
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Threads" in err.details() and "gds" in err.details()
    # and a plain SetSetting while the lease is held
    with pytest.raises(grpc.RpcError) as e:
        control_pb2_grpc.ServiceControlStub(d.channel(OP)).SetSetting(change("Threads", 3),
                                                                      timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "gds" in e.value.details()

    # SHADOW validates and records, never applies
    sh = Session(d, RLDS, agent_name="rlds-shadow", mode=SHADOW, setting_ids=["Threads"])
    assert not sh.recv("welcome").leased_setting_ids
    st = sh.recv("state")
    sh.act(st.seq, "s1", change("Threads", 2))
    r = sh.recv("result")
    assert not r.rejected and r.applied[0].value.int_value == 2
    sh.act(st.seq, "s2", change("Threads", 0))
    assert "1" in sh.recv("result").rejected[0].reason
    assert get_threads(d).value.int_value == 5  # the flood's last applied value
    audit = admin_pb2_grpc.AdminServiceStub(d.channel(OP)).GetAuditLog(
        admin_pb2.GetAuditLogRequest(setting_id="Threads", limit=1000), timeout=5).entries
    shadow = [x for x in audit if x.caller == "rlds-shadow"]
    assert shadow and shadow[0].outcome == admin_pb2.AUDIT_OUTCOME_SHADOW

    # OBSERVE receives states; its actions are rejected
    ob = Session(d, RLDS, agent_name="watcher", mode=OBSERVE)
    ow = ob.recv("welcome")
    assert {s.id for s in ow.settings} == {"Threads", "Quality"} and not ow.leased_setting_ids
    st = ob.recv("state")
    ob.act(st.seq, "o1", change("Quality", 1))
    assert "OBSERVE" in ob.recv("result").rejected[0].reason

    # no private detail in any byte any agent received
    for s in (a, sh, ob):
        for raw in s.raw:
            for p in PRIVATE:
                assert p not in raw, (p, raw)

    # the operator sees the open sessions
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    infos = {i.agent_name: i for i in
             admin.ListAgentSessions(admin_pb2.ListAgentSessionsRequest(), timeout=5).sessions}
    assert set(infos) == {"gds", "rlds-shadow", "watcher"}
    gi = infos["gds"]
    assert gi.session_id == w.session_id and gi.mode == CONTROL
    assert list(gi.leased_setting_ids) == ["Threads"] and gi.states_sent >= 6
    assert gi.actions_received == 22 and gi.actions_applied >= 2

    # Goodbye ends a session cleanly; a disconnect releases the lease
    ob.send(goodbye=agent_pb2.Goodbye(reason="done"))
    assert ob.ended() is None
    a.call.cancel()
    deadline = time.time() + 5
    while True:
        c = Session(d, RLDS, agent_name="rlds", mode=CONTROL, setting_ids=["Threads"])
        m = c.recv("welcome")
        if m is not END:
            break
        assert time.time() < deadline, c.error
        time.sleep(0.1)
    assert list(m.leased_setting_ids) == ["Threads"]
    c.act(0, "c1", change("Threads", 7))
    assert c.recv("result").applied[0].value.int_value == 7
    c.close()
    assert c.ended() is None
    sh.close()
    sh.ended()

    # the recorded trajectory of the first session: states, and actions with their results
    steps = list(admin.ExportTrajectory(
        admin_pb2.ExportTrajectoryRequest(session_id=w.session_id), timeout=10))
    assert all(s.session_id == w.session_id for s in steps)
    with_state = [s for s in steps if s.HasField("state")]
    assert len(with_state) >= 6 and all(s.seq == s.state.seq for s in with_state)
    a1 = [s for s in steps if s.action.nonce == "a1"]
    assert len(a1) == 1 and a1[0].result.applied[0].value.int_value == 6
    assert a1[0].state.seq == last.seq and a1[0].state.settings[0].value.int_value == 4
    # the flood's rate-limited actions are answered but not recorded (they would queue the store)
    assert {s.action.nonce for s in steps if s.action.nonce.startswith("f")} == \
        {r.nonce for r in results if r not in limited}
    # by agent name (both "rlds" sessions: the refused one recorded nothing), and a time range
    by_name = list(admin.ExportTrajectory(
        admin_pb2.ExportTrajectoryRequest(agent_name="rlds"), timeout=10))
    assert {s.session_id for s in by_name} == {m.session_id}
    assert any(s.action.nonce == "c1" for s in by_name)
    req = admin_pb2.ExportTrajectoryRequest(session_id=w.session_id)
    req.start.FromNanoseconds(int(time.time() + 3600) * 10**9)
    assert list(admin.ExportTrajectory(req, timeout=10)) == []
    for bad, code in ((admin_pb2.ExportTrajectoryRequest(), grpc.StatusCode.INVALID_ARGUMENT),
                      (admin_pb2.ExportTrajectoryRequest(session_id="as-nope"),
                       grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as e:
            list(admin.ExportTrajectory(bad, timeout=10))
        assert e.value.code() == code, e.value.details()
    # agents may not export
    with pytest.raises(grpc.RpcError) as e:
        list(admin_pb2_grpc.AdminServiceStub(d.channel(GDS)).ExportTrajectory(req, timeout=5))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("first,code,words", [
    (dict(action=agent_pb2.Action(nonce="x")), grpc.StatusCode.INVALID_ARGUMENT,
     "first message of a session must be Hello"),
    (dict(goodbye=agent_pb2.Goodbye()), grpc.StatusCode.INVALID_ARGUMENT, "not Goodbye"),
    (dict(), grpc.StatusCode.INVALID_ARGUMENT, "must be Hello"),
    (dict(hello=agent_pb2.Hello(agent_name="x")), grpc.StatusCode.INVALID_ARGUMENT,
     "Hello.mode"),
    (dict(hello=agent_pb2.Hello(mode=CONTROL)), grpc.StatusCode.INVALID_ARGUMENT,
     "Hello.agent_name"),
    (dict(hello=agent_pb2.Hello(agent_name="x", mode=OBSERVE, period=duration_pb2.Duration(
        nanos=50000000))), grpc.StatusCode.INVALID_ARGUMENT, "100 ms"),
    (dict(hello=agent_pb2.Hello(agent_name="x", mode=OBSERVE, slo_ids=["nope"])),
     grpc.StatusCode.NOT_FOUND, "unknown SLO 'nope'"),
    (dict(hello=agent_pb2.Hello(agent_name="x", mode=CONTROL, setting_ids=["nope"])),
     grpc.StatusCode.NOT_FOUND, "unknown setting 'nope'"),
    (dict(hello=agent_pb2.Hello(agent_name="x", mode=OBSERVE, zone="not a zone!")),
     grpc.StatusCode.INVALID_ARGUMENT, "zone"),
])
def test_bad_hello(d, first, code, words):
    s = Session(d, GDS)
    s.send(**first)
    err = s.ended()
    assert err is not None and err.code() == code, err
    assert words in err.details()
    for p in PRIVATE:
        assert p.decode() not in err.details()


def test_silent_controller_loses_its_lease(d):
    a = Session(d, GDS, agent_name="sleepy", mode=CONTROL, setting_ids=["Quality"], period_ms=100)
    assert list(a.recv("welcome").leased_setting_ids) == ["Quality"]
    err = a.ended(timeout=10)  # keepalive: 3 x 100 ms + 5 s
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "keepalive" in err.details()
    b = Session(d, RLDS, agent_name="awake", mode=CONTROL, setting_ids=["Quality"])
    assert list(b.recv("welcome").leased_setting_ids) == ["Quality"]
    assert b.recv("state").seq == 1
    # b stays open: the daemon's shutdown ends it (the fixture checks a clean, leak-free exit)
