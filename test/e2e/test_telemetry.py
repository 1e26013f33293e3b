"""TelemetryService through the real daemon: Publish and PublishStream store points, Query returns
the exact expected aggregates (checked against a computation in Python), ListSeries, the
duplicate rule, persistence across a restart, bad input and roles."""
import math
import subprocess
import time

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc

from conftest import CASCAD

CONFIG = """\
server:
  log_level: debug
store:
  sync: every_commit
tsdb:
  raw_retention: 2d
  minute_retention: 30d
  hour_retention: forever
  max_publish_points: 5000
  max_query_samples: 1000
"""

TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_REP": "rep-0123456789abcdef0123",
          "T_AGENT": "agent-0123456789abcdef0123", "T_VIEW": "view-0123456789abcdef0123"}
ROLES_CONFIG = CONFIG + """\
auth:
  tokens:
    - {name: ops, role: operator, token_env: T_OP}
    - {name: player-1, role: reporter, token_env: T_REP}
    - {name: gds, role: agent, token_env: T_AGENT}
    - {name: dash, role: viewer, token_env: T_VIEW}
"""

A = tm.Aggregation


def ts(seconds):
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(round(seconds * 1e9)))
    return t


def point(series, value, t=None, **tags):
    p = tm.Point(series=series, value=value, tags=tags)
    if t is not None:
        p.time.CopyFrom(ts(t))
    return p


def quantile(values, q):
    """numpy's default (linear) quantile."""
    v = sorted(values)
    h = (len(v) - 1) * q
    k = int(math.floor(h))
    return v[k] if k + 1 >= len(v) else v[k] + (h - k) * (v[k + 1] - v[k])


def rate(points):
    inc = 0.0
    for (_, a), (_, b) in zip(points, points[1:]):
        inc += b - a if b >= a else b
    return inc / (points[-1][0] - points[0][0])


def expected(points, agg, q=0.0):
    vals = [v for _, v in points]
    return {A.AGGREGATION_MEAN: lambda: sum(vals) / len(vals), A.AGGREGATION_MIN: lambda: min(vals),
            A.AGGREGATION_MAX: lambda: max(vals), A.AGGREGATION_SUM: lambda: sum(vals),
            A.AGGREGATION_COUNT: lambda: float(len(vals)), A.AGGREGATION_LAST: lambda: vals[-1],
            A.AGGREGATION_RATE: lambda: rate(points),
            A.AGGREGATION_QUANTILE: lambda: quantile(vals, q)}[agg]()


@pytest.fixture
def tel(make_daemon):
    d = make_daemon(CONFIG)
    return d, tm_grpc.TelemetryServiceStub(d.channel())


def test_publish_then_query_exact_aggregates(tel):
    d, stub = tel
    base = (int(time.time()) // 3600 - 2) * 3600  # an hour boundary, 1-2 h ago
    # 1 Hz for 90 minutes: raw edges, minute and hour rollups all take part in long windows
    fps = [(base + i, 20 + (i * 7919 % 1000) / 100.0) for i in range(5400)]
    for chunk in range(0, len(fps), 1000):
        r = stub.Publish(tm.PublishRequest(points=[
            point("transcoding_fps", v, t, client="w1", site="vienna")
            for t, v in fps[chunk:chunk + 1000]]), timeout=10)
        assert (r.accepted, r.rejected, list(r.errors)) == (len(fps[chunk:chunk + 1000]), 0, [])
    # another tag set of the same series, and a counter
    stub.Publish(tm.PublishRequest(points=[point("transcoding_fps", 5.0, base + 10, client="w2")]),
                 timeout=10)
    counter = [(base + 10 * i, v) for i, v in enumerate([0, 4, 10, 3, 8, 20])]
    stub.Publish(tm.PublishRequest(points=[point("bytes", v, t) for t, v in counter]), timeout=10)

    windows = [(base + 100, base + 400), (base + 17.5, base + 5000.25), (base, base + 5400),
               (base + 3599, base + 3661)]
    for start, end in windows:
        inside = [(t, v) for t, v in fps if start <= t < end]
        for agg in (A.AGGREGATION_MEAN, A.AGGREGATION_MIN, A.AGGREGATION_MAX, A.AGGREGATION_SUM,
                    A.AGGREGATION_COUNT, A.AGGREGATION_LAST, A.AGGREGATION_RATE):
            r = stub.Query(tm.QueryRequest(series="transcoding_fps", tags={"client": "w1"},
                                           start=ts(start), end=ts(end), aggregation=agg),
                           timeout=10)
            assert len(r.series) == 1
            s = r.series[0]
            assert dict(s.tags) == {"client": "w1", "site": "vienna"}
            assert len(s.samples) == 1 and s.samples[0].count == len(inside)
            assert s.samples[0].time.ToNanoseconds() == int(round(start * 1e9))
            assert s.samples[0].value == pytest.approx(expected(inside, agg), rel=1e-12), agg
        for q in (0.5, 0.9, 0.99, 0.0, 1.0):
            r = stub.Query(tm.QueryRequest(series="transcoding_fps", tags={"site": "vienna"},
                                           start=ts(start), end=ts(end),
                                           aggregation=A.AGGREGATION_QUANTILE, quantile=q),
                           timeout=10)
            assert r.series[0].samples[0].value == expected(inside, A.AGGREGATION_QUANTILE, q)

    # no tag filter: both tag sets, each its own series in the answer; unspecified = mean
    r = stub.Query(tm.QueryRequest(series="transcoding_fps", start=ts(base), end=ts(base + 60)),
                   timeout=10)
    assert [dict(s.tags) for s in r.series] == [{"client": "w1", "site": "vienna"},
                                                {"client": "w2"}]
    assert r.series[1].samples[0].value == 5.0
    # steps of 5 minutes; empty steps left out; end unset = now
    r = stub.Query(tm.QueryRequest(series="transcoding_fps", tags={"client": "w1"},
                                   start=ts(base - 600), aggregation=A.AGGREGATION_MAX,
                                   step=duration_pb2.Duration(seconds=300)), timeout=10)
    samples = r.series[0].samples
    assert len(samples) == 18
    for k, smp in enumerate(samples):
        lo = base + 300 * k
        inside = [(t, v) for t, v in fps if lo <= t < lo + 300]
        assert smp.time.seconds == lo and smp.count == 300
        assert smp.value == expected(inside, A.AGGREGATION_MAX)
    # a counter with a reset
    r = stub.Query(tm.QueryRequest(series="bytes", start=ts(base), end=ts(base + 3600),
                                   aggregation=A.AGGREGATION_RATE), timeout=10)
    assert r.series[0].samples[0].value == pytest.approx((4 + 6 + 3 + 5 + 12) / 50)
    # unknown series: an empty answer, not an error
    assert len(stub.Query(tm.QueryRequest(series="nope", start=ts(base)), timeout=10).series) == 0

    listing = stub.ListSeries(tm.ListSeriesRequest(prefix="transcoding"), timeout=10).series
    assert [(s.series, dict(s.tags), s.points) for s in listing] == [
        ("transcoding_fps", {"client": "w1", "site": "vienna"}, 5400),
        ("transcoding_fps", {"client": "w2"}, 1)]
    assert listing[0].first.seconds == base and listing[0].last.seconds == base + 5399
    assert [s.series for s in stub.ListSeries(tm.ListSeriesRequest(), timeout=10).series] == [
        "bytes", "transcoding_fps", "transcoding_fps"]


def test_duplicates_and_unset_time_and_restart(make_daemon):
    d = make_daemon(CONFIG)
    stub = tm_grpc.TelemetryServiceStub(d.channel())
    t0 = time.time() - 60
    stub.Publish(tm.PublishRequest(points=[point("temp", 20.0, t0, room="1")]), timeout=10)
    stub.Publish(tm.PublishRequest(points=[point("temp", 21.5, t0, room="1")]), timeout=10)
    before = time.time()
    stub.Publish(tm.PublishRequest(points=[point("temp", 30.0, room="1")]), timeout=10)  # now
    after = time.time()
    r = stub.Query(tm.QueryRequest(series="temp", start=ts(t0 - 1), end=ts(after + 1),
                                   aggregation=A.AGGREGATION_COUNT), timeout=10)
    assert r.series[0].samples[0].count == 2  # the second write replaced the first
    r = stub.Query(tm.QueryRequest(series="temp", start=ts(t0 - 1), end=ts(t0 + 1),
                                   aggregation=A.AGGREGATION_LAST), timeout=10)
    assert r.series[0].samples[0].value == 21.5
    info = stub.ListSeries(tm.ListSeriesRequest(), timeout=10).series[0]
    assert before - 1 <= info.last.ToNanoseconds() / 1e9 <= after + 1

    assert d.stop() == 0
    d2 = make_daemon(CONFIG)  # same data dir
    stub = tm_grpc.TelemetryServiceStub(d2.channel())
    r = stub.Query(tm.QueryRequest(series="temp", start=ts(t0 - 1), end=ts(after + 1),
                                   aggregation=A.AGGREGATION_SUM), timeout=10)
    assert r.series[0].samples[0].value == 51.5


def test_publish_stream(tel):
    d, stub = tel
    now = time.time()

    def messages():
        for m in range(5):
            yield tm.PublishRequest(points=[point("power_w", float(m * 100 + i), now - 100 + m * 10 + i,
                                                  plug="p1") for i in range(10)])
        yield tm.PublishRequest(points=[point("power_w", float("nan"), now, plug="p1"),
                                        point("", 1.0, now)])

    r = stub.PublishStream(messages(), timeout=10)
    assert (r.accepted, r.rejected) == (50, 2)
    assert r.errors[0].startswith("point 50: the value is NaN")
    assert r.errors[1].startswith("point 51: the series name is empty")
    q = stub.Query(tm.QueryRequest(series="power_w", start=ts(now - 200), end=ts(now + 1),
                                   aggregation=A.AGGREGATION_SUM), timeout=10)
    assert q.series[0].samples[0].value == sum(m * 100 + i for m in range(5) for i in range(10))
    assert stub.PublishStream(iter([]), timeout=10).accepted == 0  # an empty stream


def test_bad_points_are_rejected_with_reasons(tel):
    d, stub = tel
    now = time.time()
    pts = [point("ok", 1.0, now), point("ok", float("nan"), now), point("ok", float("inf"), now),
           point("ok", float("-inf"), now), point("", 1.0, now), point("ok", 1.0, now - 10 * 86400),
           point("ok", 1.0, now + 3 * 86400), point("x" * 600, 1.0, now),
           point("ok", 2.0, now - 1, **{"": "empty key"})]
    r = stub.Publish(tm.PublishRequest(points=pts), timeout=10)
    assert (r.accepted, r.rejected) == (1, 8)
    reasons = list(r.errors)
    assert len(reasons) == 8
    for i, words in zip(range(1, 9), ["NaN", "infinite", "infinite", "series name is empty",
                                      "older than the raw retention", "ahead of the server",
                                      "over the limit", "empty key"]):
        assert reasons[i - 1].startswith(f"point {i}: ") and words in reasons[i - 1], reasons
    # before 1970 cannot be a time
    p = tm.Point(series="ok", value=1.0)
    p.time.seconds = -5
    r = stub.Publish(tm.PublishRequest(points=[p]), timeout=10)
    assert r.rejected == 1 and "1970" in r.errors[0]
    # only valid points were stored
    q = stub.Query(tm.QueryRequest(series="ok", start=ts(now - 20 * 86400), end=ts(now + 5 * 86400),
                                   aggregation=A.AGGREGATION_COUNT), timeout=10)
    assert q.series[0].samples[0].count == 1
    # too many points in one request: refused whole
    with pytest.raises(grpc.RpcError) as e:
        stub.Publish(tm.PublishRequest(points=[point("ok", 1.0, now)] * 5001), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "5001 points" in e.value.details() and "max_publish_points" in e.value.details()
    # ...also inside a stream: that message is rejected, the rest stored
    r = stub.PublishStream(iter([tm.PublishRequest(points=[point("ok", 1.0, now - 2)] * 5001),
                                 tm.PublishRequest(points=[point("ok", 1.0, now - 3)])]),
                           timeout=10)
    assert (r.accepted, r.rejected) == (1, 5001) and "over the limit" in r.errors[0]


def test_bad_queries(tel):
    d, stub = tel
    now = time.time()
    stub.Publish(tm.PublishRequest(points=[point("s", float(i), now - 2000 + i)
                                           for i in range(2000)]), timeout=10)
    bad = [
        (tm.QueryRequest(series="s", start=ts(now), end=ts(now - 10)), "end is before start"),
        (tm.QueryRequest(series="s"), "start is required"),
        (tm.QueryRequest(start=ts(now)), "series is empty"),
        (tm.QueryRequest(series="s", start=ts(now - 10), aggregation=99), "aggregation 99 is unknown"),
        (tm.QueryRequest(series="s", start=ts(now - 10), aggregation=A.AGGREGATION_QUANTILE,
                         quantile=1.5), "outside [0, 1]"),
        (tm.QueryRequest(series="s", start=ts(now - 10), aggregation=A.AGGREGATION_QUANTILE,
                         quantile=-0.01), "outside [0, 1]"),
        (tm.QueryRequest(series="s", start=ts(now - 10), aggregation=A.AGGREGATION_QUANTILE,
                         quantile=float("nan")), "outside [0, 1]"),
        (tm.QueryRequest(series="s", start=ts(now - 86400), step=duration_pb2.Duration(nanos=1000)),
         "step is too small"),
        (tm.QueryRequest(series="s", start=ts(now - 10), step=duration_pb2.Duration(seconds=-1)),
         "positive duration"),
    ]
    for req, words in bad:
        with pytest.raises(grpc.RpcError) as e:
            stub.Query(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, words
        assert words in e.value.details()
    # more samples than max_query_samples (1000)
    with pytest.raises(grpc.RpcError) as e:
        stub.Query(tm.QueryRequest(series="s", start=ts(now - 3000), end=ts(now),
                                   step=duration_pb2.Duration(nanos=100000000)), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_query_samples" in e.value.details()
    # end == start: an empty range
    r = stub.Query(tm.QueryRequest(series="s", start=ts(now - 10), end=ts(now - 10)), timeout=10)
    assert len(r.series) == 0


def test_roles(make_daemon):
    d = make_daemon(ROLES_CONFIG, env=TOKENS)

    def stub(token):
        return tm_grpc.TelemetryServiceStub(d.channel(token))

    now = time.time()
    req = tm.PublishRequest(points=[point("fps", 25.0, now - 1, client="c1")])
    assert stub(TOKENS["T_REP"]).Publish(req, timeout=10).accepted == 1
    assert stub(TOKENS["T_OP"]).Publish(req, timeout=10).accepted == 1
    assert stub(TOKENS["T_REP"]).PublishStream(iter([req]), timeout=10).accepted == 1
    q = tm.QueryRequest(series="fps", start=ts(now - 60))
    assert stub(TOKENS["T_OP"]).Query(q, timeout=10).series[0].samples[0].value == 25.0
    for token in ("T_REP", "T_AGENT", "T_VIEW"):
        for call, arg in (("Query", q), ("ListSeries", tm.ListSeriesRequest())):
            with pytest.raises(grpc.RpcError) as e:
                getattr(stub(TOKENS[token]), call)(arg, timeout=10)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "fps" not in e.value.details()  # no series names for non-operators
    for token in ("T_AGENT", "T_VIEW"):
        with pytest.raises(grpc.RpcError) as e:
            stub(TOKENS[token]).Publish(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        stub(None).Publish(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_config_errors(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "server:\n  listen: 127.0.0.1:1\ntsdb:\n  raw_retention: 10d\n  minute_retention: 1d\n"
        "  hour_retention: sometimes\n  queue_pointz: 5\n")
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert f"{tmp_path}/c.yaml:6:19: tsdb.hour_retention: 'sometimes'" in p.stderr
    assert f"{tmp_path}/c.yaml:7:3: unknown key 'queue_pointz' in tsdb" in p.stderr
    assert "minute_retention must be at least tsdb.raw_retention" in p.stderr


def test_reload_changes_limits(make_daemon):
    d = make_daemon(CONFIG)
    stub = tm_grpc.TelemetryServiceStub(d.channel())
    now = time.time()
    assert stub.Publish(tm.PublishRequest(points=[point("s", 1.0, now)] * 3000),
                        timeout=10).accepted == 3000
    from casca.v1 import admin_pb2, admin_pb2_grpc
    d.write_config(CONFIG.replace("max_publish_points: 5000", "max_publish_points: 100"))
    r = admin_pb2_grpc.AdminServiceStub(d.channel()).Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert r.ok, r.errors
    with pytest.raises(grpc.RpcError) as e:
        stub.Publish(tm.PublishRequest(points=[point("s", 1.0, now)] * 101), timeout=10)
    assert "over the limit of 100" in e.value.details()
