"""SloService through the real daemon: points published with TelemetryService.Publish give the
exact expected SLO values (mean, p90, tag filter, carbon footprint against the carbon service's
own intensity), history at steps, NOT_FOUND, a reload while watches are open (added, changed,
removed SLOs), a reload rejected for an SLO without objective (file:line:col, old SLOs kept), and
privacy: no private string of the config in any byte of any reply to agents and viewers."""
import threading
import time

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from casca.v1 import admin_pb2, admin_pb2_grpc
from casca.v1 import carbon_pb2 as cb
from casca.v1 import carbon_pb2_grpc as cb_grpc
from casca.v1 import slo_pb2, slo_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from conftest import carbon_bundle

TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_AGENT": "agent-0123456789abcdef0123",
          "T_VIEW": "view-0123456789abcdef0123"}
OP, AGENT, VIEW = TOKENS["T_OP"], TOKENS["T_AGENT"], TOKENS["T_VIEW"]

# Every private detail of the SLO config; none may reach an agent or a viewer.
PRIVATE = ["secret_fps_series", "hidden-client-7", "client", "secret_power_w", "jellyfin",
           "transcoder-room-3", "Jellyfin transcoding", "slo-private.yaml", "tags",
           "apparent", "bundle"]

SLO_FILE = """\
# the operator's SLOs for the Jellyfin transcoding service
slos:
  - id: ServiceSLO
    description: ""                 # hidden, as in the paper's obscured experiment
    series: secret_fps_series
    tags: {client: hidden-client-7}
    aggregation: mean
    window: 5m
    objective: {min: 24, max: 30}
  - id: P90
    description: frames per second, 90th percentile
    unit: fps
    series: secret_fps_series
    tags: {client: hidden-client-7}
    aggregation: p90
    window: 5m
    hide: [window]
    objective: {max: 28}
  - id: Gone
    series: secret_fps_series
    window: 1m
    objective: {min: 0}
  - id: Changed
    series: secret_fps_series
    window: 1m
    objective: {min: 0}
"""


def config(bundle):
    return f"""\
server:
  log_level: debug
store:
  sync: every_commit
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: gds, role: agent, token_env: T_AGENT}}
    - {{name: dash, role: viewer, token_env: T_VIEW}}
carbon: {{bundled_data: {bundle}, estimate_from_nearest_year: true}}
slo_engine: {{interval: 200ms, compliance_step: 10s, compliance_period: 10m}}
slos:
  - id: carbon
    kind: carbon_footprint
    description: footprint of the service
    unit: mg/min
    power_series: secret_power_w
    tags: {{room: transcoder-room-3}}
    zone: AT
    window: 5m
    objective: {{max: 80}}
slo_files: [slo-private.yaml]
"""


def ts(seconds):
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(round(seconds * 1e9)))
    return t


@pytest.fixture
def d(make_daemon, tmp_path):
    (tmp_path / "slo-private.yaml").write_text(SLO_FILE)
    return make_daemon(config(carbon_bundle(tmp_path)), env=TOKENS)


def slo_stub(d, token=AGENT):
    return slo_pb2_grpc.SloServiceStub(d.channel(token))


def publish(d, points):
    r = tm_grpc.TelemetryServiceStub(d.channel(OP)).Publish(tm.PublishRequest(points=points),
                                                            timeout=10)
    assert r.accepted == len(points) and r.rejected == 0, r.errors


def point(series, value, t, **tags):
    p = tm.Point(series=series, value=value, tags=tags)
    p.time.CopyFrom(ts(t))
    return p


def wait_slo(stub, slo_id, pred, timeout=10):
    deadline = time.time() + timeout
    while True:
        s = stub.GetSlo(slo_pb2.GetSloRequest(id=slo_id), timeout=5)
        if pred(s):
            return s
        assert time.time() < deadline, f"{slo_id} never matched: {s}"
        time.sleep(0.05)


def quantile(values, q):
    v = sorted(values)
    h = (len(v) - 1) * q
    lo = int(h)
    return v[lo] + (h - lo) * (v[min(lo + 1, len(v) - 1)] - v[lo])


FPS = [20 + (i * 7) % 11 for i in range(60)]  # one point a second for the last minute


def publish_fps(d, now):
    pts = [point("secret_fps_series", v, now - 60 + i, client="hidden-client-7")
           for i, v in enumerate(FPS)]
    pts += [point("secret_fps_series", 1000.0, now - 60 + i, client="other") for i in range(60)]
    publish(d, pts)


def test_get_slo_exact_values(d):
    stub = slo_stub(d)
    s = stub.GetSlo(slo_pb2.GetSloRequest(id="ServiceSLO"), timeout=5)
    assert not s.has_value and not s.fulfilled and s.value == 0 and s.sample_count == 0
    now = time.time()
    publish_fps(d, now)
    s = wait_slo(stub, "ServiceSLO", lambda s: s.sample_count == 60)
    mean = sum(FPS) / 60
    assert s.has_value and s.value == pytest.approx(mean, rel=1e-12)
    assert s.fulfilled == (24 <= mean <= 30)
    assert s.slo.id == "ServiceSLO" and s.slo.description == "" and s.slo.aggregation == "mean"
    assert s.slo.window.seconds == 300 and s.slo.kind == slo_pb2.SLO_KIND_VALUE
    assert s.slo.objective.min == 24 and s.slo.objective.max == 30
    assert abs(s.evaluated_at.ToNanoseconds() / 1e9 - time.time()) < 5
    p = wait_slo(stub, "P90", lambda s: s.sample_count == 60)
    assert p.value == pytest.approx(quantile(FPS, 0.9), rel=1e-12)
    assert p.fulfilled == (p.value <= 28)
    assert p.slo.unit == "fps" and not p.slo.HasField("window") and p.slo.aggregation == "p90"
    assert not p.slo.objective.HasField("min") and p.slo.objective.max == 28
    # no tag filter: both clients. Its window is 1 minute, so the oldest points may have left
    # it by now: the k newest of each client (they share their times) are in it
    g = wait_slo(stub, "Gone", lambda s: s.sample_count >= 100)
    k = g.sample_count // 2
    assert g.sample_count == 2 * k
    assert g.value == pytest.approx((sum(FPS[60 - k:]) + k * 1000.0) / (2 * k), rel=1e-12)
    # compliance: steps of 10 s over the last 10 minutes, only those with data count
    c = wait_slo(stub, "ServiceSLO", lambda s: s.compliance_covered.seconds >= 10)
    assert c.compliance_period.seconds == 600
    assert c.compliance == (1.0 if 24 <= mean <= 30 else pytest.approx(c.compliance))
    assert 0.0 <= c.compliance <= 1.0


def test_carbon_footprint_uses_the_carbon_service(d):
    now = time.time()
    watts = [100.0 + i for i in range(120)]
    times = [now - 120 + i for i in range(120)]
    publish(d, [point("secret_power_w", w, t, room="transcoder-room-3")
                for w, t in zip(watts, times)])
    carbon = cb_grpc.CarbonServiceStub(d.channel(OP))
    intensity = {}
    for t in times:
        hour = int(t // 3600) * 3600
        if hour not in intensity:
            intensity[hour] = carbon.GetLocationIntensity(
                cb.GetLocationIntensityRequest(zone="AT", time=ts(hour)), timeout=5).gco2eq_per_kwh
    # W x gCO2eq/kWh -> mg CO2eq per minute: W/1000 kW x g/kWh / 60 min/h x 1000 mg/g
    expected = sum(w * intensity[int(t // 3600) * 3600] / 60 for w, t in zip(watts, times)) / 120
    s = wait_slo(slo_stub(d), "carbon", lambda s: s.sample_count == 120)
    assert s.value == pytest.approx(expected, rel=1e-9)
    assert s.fulfilled == (s.value <= 80)
    assert s.slo.kind == slo_pb2.SLO_KIND_CARBON_FOOTPRINT and s.slo.unit == "mg/min"


def test_history_at_steps(d):
    now = int(time.time())
    # minute k before `now` (k = 1..3) holds 60 points of value 10 k
    pts = [point("secret_fps_series", 10.0 * k, now - 60 * k + i, client="hidden-client-7")
           for k in (1, 2, 3) for i in range(60)]
    publish(d, pts)
    stub = slo_stub(d)
    r = stub.GetSloHistory(slo_pb2.GetSloHistoryRequest(
        id="Changed", start=ts(now - 240), end=ts(now + 1), step=duration_pb2.Duration(seconds=60)),
        timeout=10)
    # minute k covers [now - 60k, now - 60k + 60): the 1-minute window ending at now - 60(k-1)
    got = [(x.time.seconds, x.has_value, x.value, x.sample_count, x.fulfilled) for x in r.samples]
    assert got == [(now - 240, False, 0.0, 0, False), (now - 180, False, 0.0, 0, False),
                   (now - 120, True, 30.0, 60, True), (now - 60, True, 20.0, 60, True),
                   (now, True, 10.0, 60, True)]
    with pytest.raises(grpc.RpcError) as e:
        stub.GetSloHistory(slo_pb2.GetSloHistoryRequest(id="Changed", start=ts(now - 86400 * 6),
                                                        step=duration_pb2.Duration(seconds=1)),
                           timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "step" in e.value.details()


def test_unknown_id_is_not_found(d):
    stub = slo_stub(d)
    calls = [lambda: stub.GetSlo(slo_pb2.GetSloRequest(id="NoSuchSLO"), timeout=5),
             lambda: stub.GetSloHistory(slo_pb2.GetSloHistoryRequest(id="NoSuchSLO", start=ts(0)),
                                        timeout=5),
             lambda: stub.ListSlos(slo_pb2.ListSlosRequest(ids=["NoSuchSLO"]), timeout=5),
             lambda: next(stub.WatchSlos(slo_pb2.WatchSlosRequest(ids=["NoSuchSLO"]), timeout=5))]
    for call in calls:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert "NoSuchSLO" in e.value.details() and "ListSlos" in e.value.details()
    ids = [s.id for s in stub.ListSlos(slo_pb2.ListSlosRequest(), timeout=5).slos]
    assert ids == ["carbon", "ServiceSLO", "P90", "Gone", "Changed"]


class Watch:
    """Collects a WatchSlos stream on a thread."""

    def __init__(self, stub, **kw):
        self.call = stub.WatchSlos(slo_pb2.WatchSlosRequest(**kw), timeout=60)
        self.msgs = []
        self.error = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            for m in self.call:
                with self.lock:
                    self.msgs.append(m)
        except grpc.RpcError as e:
            self.error = e

    def wait(self, pred, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                found = [m for m in self.msgs if pred(m)]
            if found:
                return found[-1]
            assert self.error is None, self.error
            time.sleep(0.05)
        raise AssertionError(f"no matching status in {self.msgs}")

    def close(self):
        self.call.cancel()
        self.thread.join(5)


def reload(d):
    return admin_pb2_grpc.AdminServiceStub(d.channel(OP)).Reload(admin_pb2.ReloadRequest(),
                                                                  timeout=10)


def test_reload_while_watching(d, tmp_path):
    stub = slo_stub(d)
    everything = Watch(stub)
    one = Watch(stub, ids=["Gone"])
    for sid in ("carbon", "ServiceSLO", "P90", "Gone", "Changed"):
        everything.wait(lambda m, sid=sid: m.slo.id == sid and not m.removed)
    one.wait(lambda m: m.slo.id == "Gone")
    new_file = SLO_FILE.replace("  - id: Gone\n    series: secret_fps_series\n    window: 1m\n"
                                "    objective: {min: 0}\n", "")
    new_file = new_file.replace("  - id: Changed\n    series: secret_fps_series\n    window: 1m\n"
                                "    objective: {min: 0}\n",
                                "  - id: Changed\n    description: now described\n"
                                "    series: secret_fps_series\n    window: 2m\n"
                                "    objective: {max: 5}\n"
                                "  - id: Added\n    series: secret_fps_series\n    window: 1m\n"
                                "    objective: {target: 0}\n")
    assert new_file.count("Gone") == 0 and "Added" in new_file
    (tmp_path / "slo-private.yaml").write_text(new_file)
    r = reload(d)
    assert r.ok, r.errors
    gone = everything.wait(lambda m: m.slo.id == "Gone" and m.removed)
    assert not gone.has_value and gone.slo.description == "" and not gone.HasField("evaluated_at")
    one.wait(lambda m: m.slo.id == "Gone" and m.removed)
    added = everything.wait(lambda m: m.slo.id == "Added")
    assert added.slo.objective.min == 0 and added.slo.objective.max == 0
    ch = everything.wait(lambda m: m.slo.id == "Changed" and m.slo.description == "now described")
    assert ch.slo.window.seconds == 120 and ch.slo.objective.max == 5
    # both streams are still open: data flows on after the reload
    publish_fps(d, time.time())
    everything.wait(lambda m: m.slo.id == "ServiceSLO" and m.sample_count == 60)
    assert everything.error is None and one.error is None
    # the removed SLO is gone for every call
    with pytest.raises(grpc.RpcError) as e:
        stub.GetSlo(slo_pb2.GetSloRequest(id="Gone"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # and a reload that adds it back sends it again on the watch that named it
    (tmp_path / "slo-private.yaml").write_text(SLO_FILE)
    assert reload(d).ok
    one.wait(lambda m: m.slo.id == "Gone" and not m.removed)
    everything.close()
    one.close()


def test_watch_of_many_slos(d, tmp_path):
    """A watch of every SLO among 500 (its slots are found by hash, its index grown many times)
    gets each one, a watch of a few named ids among them only those, and both get each one again
    when a reload changes them all."""
    many = "".join(f"  - id: M{i}\n    series: secret_fps_series\n    window: 1m\n"
                   f"    objective: {{min: {i}}}\n" for i in range(500))
    (tmp_path / "slo-private.yaml").write_text(SLO_FILE + many)
    assert reload(d).ok
    stub = slo_stub(d)
    everything, few = Watch(stub), Watch(stub, ids=["M7", "M499", "M7", "ServiceSLO"])
    want = {f"M{i}" for i in range(500)}

    def seen(w, pred):
        with w.lock:
            return {m.slo.id for m in w.msgs if pred(m)}

    def wait_ids(w, ids, pred=lambda m: True, timeout=30):
        deadline = time.time() + timeout
        while not ids <= seen(w, pred):
            assert time.time() < deadline and w.error is None, ids - seen(w, pred)
            time.sleep(0.05)

    wait_ids(everything, want)
    wait_ids(few, {"M7", "M499", "ServiceSLO"})
    (tmp_path / "slo-private.yaml").write_text(SLO_FILE + many.replace("objective: {min: ",
                                                                       "objective: {max: "))
    assert reload(d).ok
    wait_ids(everything, want, lambda m: m.slo.objective.max > 0 or m.slo.id == "M0")
    wait_ids(few, {"M7", "M499"}, lambda m: m.slo.objective.max > 0)
    assert seen(few, lambda m: True) == {"M7", "M499", "ServiceSLO"}
    everything.close()
    few.close()


def test_min_interval_limits_statuses(d):
    stub = slo_stub(d)
    w = Watch(stub, ids=["ServiceSLO"], min_interval=duration_pb2.Duration(seconds=1))
    w.wait(lambda m: m.slo.id == "ServiceSLO")
    t0 = time.time()
    now = time.time()
    for i in range(25):  # a new value every 100 ms for 2.5 s
        publish(d, [point("secret_fps_series", 20.0 + i, now + i * 0.001,
                          client="hidden-client-7")])
        time.sleep(0.1)
    time.sleep(1.2)
    with w.lock:
        n = len(w.msgs)
        last = w.msgs[-1]
    elapsed = time.time() - t0
    assert n <= 1 + int(elapsed) + 1, n  # at most one per second (plus the first)
    assert n >= 2
    assert last.sample_count == 25  # latest wins: the final value is delivered
    w.close()


def test_reload_error_keeps_old_slos(d, tmp_path):
    bad = SLO_FILE + "  - id: NoObjective\n    series: secret_fps_series\n    window: 5m\n"
    (tmp_path / "slo-private.yaml").write_text(bad)
    r = reload(d)
    assert not r.ok
    line = bad.splitlines().index("  - id: NoObjective") + 1
    want = f"{tmp_path}/slo-private.yaml:{line}:5: slo 'NoObjective': 'objective' is required"
    assert any(e.startswith(want) for e in r.errors), r.errors
    stub = slo_stub(d)
    ids = [s.id for s in stub.ListSlos(slo_pb2.ListSlosRequest(), timeout=5).slos]
    assert ids == ["carbon", "ServiceSLO", "P90", "Gone", "Changed"]
    assert stub.GetSlo(slo_pb2.GetSloRequest(id="ServiceSLO"), timeout=5).slo.id == "ServiceSLO"


def raw_unary(ch, method, req):
    call = ch.unary_unary(f"/casca.v1.SloService/{method}",
                          request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=lambda b: b)
    try:
        return call(req, timeout=10)
    except grpc.RpcError as e:
        return (e.details() or "").encode() + repr(e.trailing_metadata()).encode()


def test_privacy_no_private_byte_in_any_reply(d):
    now = time.time()
    publish_fps(d, now)
    publish(d, [point("secret_power_w", 150.0, now - 10, room="transcoder-room-3")])
    wait_slo(slo_stub(d, OP), "ServiceSLO", lambda s: s.sample_count == 60)
    for token in (AGENT, VIEW):
        ch = d.channel(token)
        replies = []
        ids = ["carbon", "ServiceSLO", "P90", "Gone", "Changed"]
        replies.append(raw_unary(ch, "ListSlos", slo_pb2.ListSlosRequest()))
        replies.append(raw_unary(ch, "ListSlos", slo_pb2.ListSlosRequest(ids=["ServiceSLO", "x"])))
        for sid in ids:
            replies.append(raw_unary(ch, "GetSlo", slo_pb2.GetSloRequest(id=sid)))
            replies.append(raw_unary(ch, "GetSloHistory", slo_pb2.GetSloHistoryRequest(
                id=sid, start=ts(now - 600), step=duration_pb2.Duration(seconds=30))))
        for bad in (slo_pb2.GetSloHistoryRequest(id="ServiceSLO"),
                    slo_pb2.GetSloHistoryRequest(id="ServiceSLO", start=ts(now), end=ts(now - 5)),
                    slo_pb2.GetSloHistoryRequest(id="ServiceSLO", start=ts(1),
                                                 step=duration_pb2.Duration(seconds=1)),
                    slo_pb2.GetSloHistoryRequest(id="ServiceSLO", start=ts(now - 60),
                                                 step=duration_pb2.Duration(seconds=-1))):
            replies.append(raw_unary(ch, "GetSloHistory", bad))
        # an id that is a private name is just as unknown as any other (the message echoes only
        # the caller's own input)
        probe = raw_unary(ch, "GetSlo", slo_pb2.GetSloRequest(id="secret_fps_series"))
        other = raw_unary(ch, "GetSlo", slo_pb2.GetSloRequest(id="zzzzzzzzzzzzzzzzz"))
        assert probe.replace(b"secret_fps_series", b"zzzzzzzzzzzzzzzzz") == other
        replies.append(other)
        stream = ch.unary_stream("/casca.v1.SloService/WatchSlos",
                                 request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=lambda b: b)
        call = stream(slo_pb2.WatchSlosRequest(), timeout=10)
        for _ in ids:
            replies.append(next(call))
        call.cancel()
        blob = b"\0".join(replies)
        assert b"ServiceSLO" in blob and b"frames per second" in blob
        for secret in PRIVATE:
            assert secret.encode() not in blob, (token, secret)
        # the hidden description stays hidden
        s = slo_pb2.SloStatus.FromString(replies[4])
        assert s.slo.id == "ServiceSLO" and s.slo.description == "" and s.has_value
