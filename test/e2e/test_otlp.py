"""The OTLP/gRPC metrics receiver end to end (issue 16, part 4): Export requests built from the
official OpenTelemetry protos (no OpenTelemetry SDK is packaged in Debian 12) go to cascad's gRPC
port; gauges, sums (cumulative and delta), histograms and summaries come back from Query with
the point's attributes and the resource's identifying ones (service.name...; the
opentelemetry.resource_tags list, changed by a reload) as tags. Reporter and operator may export, agent and
viewer may not; bad points are refused in partial_success with the first reason while the rest
are stored; an undecodable or over-limit request is INVALID_ARGUMENT and stores nothing. The
service is listed by server reflection."""
import time

import grpc
import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from grpc.reflection.v1 import reflection_pb2 as refl, reflection_pb2_grpc as refl_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from conftest import free_port
from test_metrics import OP, REP, TOKENS, VIEW, parse, scrape, value

AGENT = TOKENS["T_AGENT"]
CUMULATIVE = m.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = m.AGGREGATION_TEMPORALITY_DELTA
CONFIG = """\
auth:
  tokens:
    - {name: ops, role: operator, token_env: T_OP}
    - {name: dash, role: viewer, token_env: T_VIEW}
    - {name: app, role: reporter, token_env: T_REP}
    - {name: gds, role: agent, token_env: T_AGENT}
tsdb: {max_publish_points: 50}
http: {listen: "127.0.0.1:%d"}
opentelemetry: {resource_tags: [service.name, host.cpus]}
"""


def kv(key, **value):
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))


def request(metrics, resource=(kv("service.name", string_value="transcoder"),
                                kv("host.cpus", int_value=2))):
    req = ms.ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(resource)
    rm.scope_metrics.add().metrics.extend(metrics)
    return req


def varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(out)


def deep_request(levels):
    """An ExportMetricsServiceRequest whose resource attribute is an AnyValue holding an array
    holding an AnyValue ..., levels deep (built from the inside out in linear time)."""
    inner, arrays = [0], [0]
    for k in range(1, levels + 1):
        arrays.append(1 + len(varint(inner[-1])) + inner[-1])  # ArrayValue{values: AnyValue}
        inner.append(1 + len(varint(arrays[-1])) + arrays[-1])  # AnyValue{array_value: ...}
    value = b"".join(b"\x2a" + varint(arrays[k]) + b"\x0a" + varint(inner[k - 1])
                     for k in range(levels, 0, -1))
    kv = b"\x0a\x01k\x12" + varint(len(value)) + value
    resource = b"\x0a" + varint(len(kv)) + kv
    rm = b"\x0a" + varint(len(resource)) + resource
    return b"\x0a" + varint(len(rm)) + rm


def export(d, req, token=REP):
    return ms_grpc.MetricsServiceStub(d.channel(token)).Export(req, timeout=10)


def series(d):
    r = tm_grpc.TelemetryServiceStub(d.channel(OP)).ListSeries(tm.ListSeriesRequest(), timeout=10)
    return {(s.series, tuple(sorted(s.tags.items()))): s.points for s in r.series}


def reload(d):
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    return admin.Reload(admin_pb2.ReloadRequest(), timeout=10)


def last_value(d, name, **tags):
    req = tm.QueryRequest(series=name, tags=tags, aggregation=tm.AGGREGATION_LAST)
    req.start.FromSeconds(int(time.time()) - 3600)
    req.end.FromSeconds(int(time.time()) + 60)
    r = tm_grpc.TelemetryServiceStub(d.channel(OP)).Query(req, timeout=10)
    return [s.samples[0].value for s in r.series]


@pytest.fixture
def casca(make_daemon):
    port = free_port()
    d = make_daemon(CONFIG % port, env=TOKENS)
    d.http = f"http://127.0.0.1:{port}"
    return d


def rejected_total(d):
    return value(parse(scrape(d, OP)), "casca_telemetry_points_rejected_total")


def test_gauges_sums_histograms_summaries(casca):
    now = time.time_ns()
    fps = m.Metric(name="transcoding_fps", gauge=m.Gauge(data_points=[
        m.NumberDataPoint(as_double=24.5, time_unix_nano=now - 10**9,
                          attributes=[kv("client", string_value="w1")]),
        m.NumberDataPoint(as_int=25, time_unix_nano=now,
                          attributes=[kv("client", string_value="w1"),
                                      kv("host.cpus", int_value=4)]),  # replaces the resource's
    ]))
    frames = m.Metric(name="frames_total", sum=m.Sum(
        aggregation_temporality=CUMULATIVE, is_monotonic=True,
        data_points=[m.NumberDataPoint(as_int=1200, time_unix_nano=now)]))
    energy = m.Metric(name="energy_joules", sum=m.Sum(
        aggregation_temporality=DELTA,
        data_points=[m.NumberDataPoint(as_double=31.5, time_unix_nano=now,
                                       attributes=[kv("gpu", bool_value=True),
                                                   kv("ratio", double_value=0.25)])]))
    latency = m.Metric(name="latency_seconds", histogram=m.Histogram(
        aggregation_temporality=CUMULATIVE,
        data_points=[m.HistogramDataPoint(count=10, sum=2.5, explicit_bounds=[0.1, 0.5],
                                          bucket_counts=[3, 5, 2], time_unix_nano=now)]))
    no_sum = m.Metric(name="sizes_bytes", histogram=m.Histogram(  # sum is optional
        aggregation_temporality=DELTA,
        data_points=[m.HistogramDataPoint(count=2, explicit_bounds=[], bucket_counts=[2],
                                          time_unix_nano=now)]))
    summary = m.Metric(name="rpc_seconds", summary=m.Summary(data_points=[m.SummaryDataPoint(
        count=4, sum=1.0, time_unix_nano=now,
        quantile_values=[m.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.4)])]))
    no_value = m.Metric(name="skipped", gauge=m.Gauge(data_points=[
        m.NumberDataPoint(as_double=1, time_unix_nano=now, flags=1)]))  # no recorded value
    r = export(casca, request([fps, frames, energy, latency, no_sum, summary, no_value]))
    assert not r.HasField("partial_success"), r
    res = (("host.cpus", "2"), ("service.name", "transcoder"))
    got = series(casca)
    assert got[("transcoding_fps", (("client", "w1"), ("host.cpus", "2"),
                                    ("service.name", "transcoder")))] == 1
    assert got[("transcoding_fps", (("client", "w1"), ("host.cpus", "4"),
                                    ("service.name", "transcoder")))] == 1
    # sums and histograms say their temporality: running totals and increases must not mix
    assert got[("frames_total", res + (("temporality", "cumulative"),))] == 1
    assert got[("energy_joules", tuple(sorted(res + (("gpu", "true"), ("ratio", "0.25"),
                                                     ("temporality", "delta")))))] == 1
    for le, count in (("0.1", 3), ("0.5", 8), ("+Inf", 10)):
        assert last_value(casca, "latency_seconds_bucket", le=le,
                          temporality="cumulative") == [count]
    assert last_value(casca, "sizes_bytes_count", temporality="delta") == [2]
    assert "sizes_bytes_sum" not in {s for s, _ in got}  # not sent: not stored as 0
    assert last_value(casca, "latency_seconds_count") == [10]
    assert last_value(casca, "latency_seconds_sum") == [2.5]
    assert last_value(casca, "rpc_seconds", quantile="0.99") == [0.4]
    assert last_value(casca, "rpc_seconds_count") == [4]
    assert last_value(casca, "transcoding_fps", **{"host.cpus": "4"}) == [25]
    assert last_value(casca, "frames_total") == [1200]
    assert "skipped" not in {s for s, _ in got}
    # arrays and maps become compact JSON, bytes base64, as OpenTelemetry's Prometheus exporters
    # write them
    arr = common_pb2.ArrayValue(values=[common_pb2.AnyValue(int_value=1),
                                        common_pb2.AnyValue(string_value="a"),
                                        common_pb2.AnyValue(bool_value=True)])
    kvl = common_pb2.KeyValueList(values=[kv("k", double_value=2.5),
                                          kv("n", double_value=float("inf"))])
    r = export(casca, request([m.Metric(name="attrs", gauge=m.Gauge(data_points=[
        m.NumberDataPoint(as_int=3, time_unix_nano=now, attributes=[
            kv("arr", array_value=arr), kv("map", kvlist_value=kvl),
            kv("raw", bytes_value=b"\x00\xff"), kv("none", array_value=common_pb2.ArrayValue())])
    ]))], resource=()))
    assert not r.HasField("partial_success"), r
    assert last_value(casca, "attrs", arr='[1,"a",true]', map='{"k":2.5,"n":"+Inf"}',
                      raw="AP8=", none="[]") == [3]
    # a resource's arrays are process metadata: left out, the point is stored
    r = export(casca, request([m.Metric(name="res_attrs", gauge=m.Gauge(data_points=[
        m.NumberDataPoint(as_int=4, time_unix_nano=now)]))], resource=(
            kv("service.name", string_value="transcoder"),
            kv("process.command_args", array_value=arr))))
    assert not r.HasField("partial_success"), r
    assert ("res_attrs", (("service.name", "transcoder"),)) in series(casca)
    # an operator may export too; a point without a time gets the time of receipt
    export(casca, request([m.Metric(name="op_gauge", gauge=m.Gauge(
        data_points=[m.NumberDataPoint(as_double=1)]))], resource=()), OP)
    assert last_value(casca, "op_gauge") == [1]


def test_roles(casca):
    req = request([m.Metric(name="g", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_int=1)]))])
    for token in (VIEW, AGENT):
        with pytest.raises(grpc.RpcError) as e:
            export(casca, req, token)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        export(casca, req, None)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert series(casca) == {}


def test_bad_points_refused_the_rest_stored(casca):
    now = time.time_ns()
    good = m.Metric(name="good", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_int=7)]))
    bad = [
        m.Metric(name="expo", exponential_histogram=m.ExponentialHistogram(
            data_points=[m.ExponentialHistogramDataPoint(count=1)])),
        m.Metric(name="no_temporality", sum=m.Sum(data_points=[m.NumberDataPoint(as_int=1)])),
        m.Metric(name="histogram_no_temporality", histogram=m.Histogram(data_points=[
            m.HistogramDataPoint(count=1, explicit_bounds=[], bucket_counts=[1])])),
        m.Metric(name="no_attr_value", gauge=m.Gauge(data_points=[m.NumberDataPoint(
            as_int=1, attributes=[kv("l")])])),
        m.Metric(name="no_value", gauge=m.Gauge(data_points=[m.NumberDataPoint()])),
        m.Metric(name="nan", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_double=float("nan"))])),
        m.Metric(name="old", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_int=1,
                                                                          time_unix_nano=10**9)])),
        m.Metric(name="bad_buckets", histogram=m.Histogram(
            aggregation_temporality=CUMULATIVE, data_points=[m.HistogramDataPoint(
                count=1, explicit_bounds=[1.0], bucket_counts=[1], time_unix_nano=now)])),
        m.Metric(name="nothing"),
    ]
    before = rejected_total(casca)
    r = export(casca, request([good] + bad))
    assert r.partial_success.rejected_data_points == 9, r
    assert r.partial_success.error_message == (
        "metric expo: exponential histograms are not supported: configure the exporter for "
        "explicit-bucket histograms")
    assert {s for s, _ in series(casca)} == {"good"}
    assert rejected_total(casca) == before + 9  # refused in the conversion or by the store
    r = export(casca, request([b for b in bad if b.name == "nan"]))
    assert r.partial_success.rejected_data_points == 1
    assert r.partial_success.error_message == "the value is NaN: send finite numbers only"


def test_bad_requests_store_nothing(casca):
    before = series(casca)
    many = m.Metric(name="many", gauge=m.Gauge(
        data_points=[m.NumberDataPoint(as_int=i) for i in range(51)]))
    with pytest.raises(grpc.RpcError) as e:
        export(casca, request([many]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request makes 51 points" in e.value.details()
    assert "over the limit of 50 (tsdb.max_publish_points): send smaller batches" in \
        e.value.details()
    # 48 buckets with 90,000 attributes (1.3 MB): the tags copied into each bucket's point would
    # take 70 MB; refused before the conversion
    wide = m.Metric(name="wide", histogram=m.Histogram(
        aggregation_temporality=CUMULATIVE, data_points=[m.HistogramDataPoint(
            count=1, explicit_bounds=[float(i) for i in range(47)], bucket_counts=[0] * 48,
            attributes=[kv(f"a{i}", int_value=i) for i in range(90_000)])]))
    with pytest.raises(grpc.RpcError) as e:
        export(casca, request([wide]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request's points carry 4500" in e.value.details(), e.value.details()
    assert "over the limit of 4194304: send smaller batches or fewer attributes" in \
        e.value.details()
    # bytes that are not an ExportMetricsServiceRequest
    ch = casca.channel(REP)
    raw = ch.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                         request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        raw(b"\xff\xff\xff\xff garbage", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    # attribute values nested 300,000 deep (2.6 MB): refused before protobuf-c's unpack, whose
    # recursion would overflow the stack
    with pytest.raises(grpc.RpcError) as e:
        raw(deep_request(300_000), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == ("request nests messages more than 100 deep: flatten the values "
                                 "it carries")
    # an empty request is fine and stores nothing
    assert not export(casca, ms.ExportMetricsServiceRequest()).HasField("partial_success")
    assert series(casca) == before


def test_listed_by_reflection(casca):
    stub = refl_grpc.ServerReflectionStub(casca.channel(OP))
    r = list(stub.ServerReflectionInfo(iter([refl.ServerReflectionRequest(list_services="")]),
                                       timeout=10))
    names = {s.name for s in r[0].list_services_response.service}
    assert "opentelemetry.proto.collector.metrics.v1.MetricsService" in names


def test_resource_tags_default_and_reload(make_daemon):
    """Without an opentelemetry section only service.name, service.namespace and
    service.instance.id of a resource become tags: an SDK's process.pid or process.command_line
    would make a new series per restart, or a key too long to store. A reload changes the list."""
    port = free_port()
    d = make_daemon(CONFIG.replace("opentelemetry: {resource_tags: [service.name, host.cpus]}\n",
                                   "") % port, env=TOKENS)
    resource = (kv("service.name", string_value="transcoder"),
                kv("service.instance.id", string_value="t-1"),
                kv("process.pid", int_value=4242),
                kv("process.command_line", string_value="/usr/bin/java " + "-Dx=y " * 100),
                kv("host.name", string_value="node-7"))
    gauge = m.Metric(name="fps", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_int=25)]))
    r = export(d, request([gauge], resource=resource))
    assert not r.HasField("partial_success"), r
    assert list(series(d)) == [("fps", (("service.instance.id", "t-1"),
                                        ("service.name", "transcoder")))]

    d.config_path.write_text((CONFIG % port).replace("[service.name, host.cpus]", '["*"]'))
    assert reload(d).ok
    r = export(d, request([m.Metric(name="fps2", gauge=m.Gauge(
        data_points=[m.NumberDataPoint(as_int=25)]))], resource=resource[:3] + resource[4:]))
    assert not r.HasField("partial_success"), r
    assert ("fps2", (("host.name", "node-7"), ("process.pid", "4242"),
                     ("service.instance.id", "t-1"), ("service.name", "transcoder"))) in series(d)

    d.config_path.write_text((CONFIG % port).replace(
        "[service.name, host.cpus]", "[service.name, {a: b}]"))
    r = reload(d)
    assert not r.ok and any("opentelemetry.resource_tags lists attribute names" in e
                            for e in r.errors), r.errors
