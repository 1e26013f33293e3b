"""Prometheus remote write into casca end to end (issue 16, part 3): Debian's real `prometheus`
scrapes Debian's real `prometheus-node-exporter` and remote-writes (protobuf + snappy) into
cascad's POST /api/v1/write with a reporter token; casca's Query then returns the series with its
labels as tags. Requests built by hand cover the answers Prometheus reads: 204 stored, 400 for
what never succeeds (not snappy, not a WriteRequest, refused samples: the rest stored), 413, 415
for another content type, encoding or remote write 2.0, 401/403/405; nothing stored changes on a
refused request, and staleness markers are skipped."""
import os
import shutil
import struct
import subprocess
import time

import pytest

from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from prometheus import remote_pb2, types_pb2

from conftest import carbon_bundle, free_port
from test_metrics import OP, PROMETHEUS, REP, TOKENS, VIEW, get, wait_for

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
STALE = struct.unpack("<d", struct.pack("<Q", 0x7ff0000000000002))[0]


def snappy(data):
    """data in snappy's block format, as literals only (valid snappy, no library needed)."""
    out, n = bytearray(), len(data)
    while True:  # the uncompressed length, a varint
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            break
    for at in range(0, len(data), 65536):
        chunk = data[at:at + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def write_request(series):
    """series: [(labels dict, [(value, ms)])] -> a serialized prometheus.WriteRequest"""
    wr = remote_pb2.WriteRequest()
    for labels, samples in series:
        ts = wr.timeseries.add()
        for k, v in sorted(labels.items()):
            ts.labels.add(name=k, value=v)
        for v, ms in samples:
            ts.samples.add(value=v, timestamp=ms)
    return wr.SerializeToString()


HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


def post(d, body, token=REP, headers=HEADERS):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(d.http + "/api/v1/write", data=body, method="POST")
    for k, v in headers.items():
        req.add_header(k, v)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def config(bundle, http_port):
    return f"""\
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: dash, role: viewer, token_env: T_VIEW}}
    - {{name: prom, role: reporter, token_env: T_REP}}
store:
  sync: every_commit
http:
  listen: 127.0.0.1:{http_port}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
"""


@pytest.fixture
def casca(make_daemon, tmp_path):
    port = free_port()
    d = make_daemon(config(carbon_bundle(tmp_path, hours=48), port), env=TOKENS)
    d.http = f"http://127.0.0.1:{port}"
    return d


def series(d):
    r = tm_grpc.TelemetryServiceStub(d.channel(OP)).ListSeries(tm.ListSeriesRequest(), timeout=10)
    return sorted((s.series, tuple(sorted(s.tags.items())), s.points) for s in r.series)


def query(d, name, **tags):
    req = tm.QueryRequest(series=name, tags=tags)
    req.start.FromSeconds(int(time.time()) - 3600)
    req.end.FromSeconds(int(time.time()) + 60)
    return tm_grpc.TelemetryServiceStub(d.channel(OP)).Query(req, timeout=10)


def test_samples_stored_with_labels_as_tags(casca):
    now = int(time.time() * 1000)
    body = snappy(write_request([
        ({"__name__": "node_rapl_package_joules_total", "instance": "host-1", "job": "node"},
         [(1000.5, now - 2000), (1010.5, now - 1000)]),
        ({"__name__": "up", "job": "node"}, [(1, now - 1000), (STALE, now)]),
    ]))
    assert post(casca, body) == (204, "")
    got = series(casca)
    assert ("node_rapl_package_joules_total", (("instance", "host-1"), ("job", "node")), 2) in got
    assert ("up", (("job", "node"),), 1) in got  # the staleness marker is skipped
    q = query(casca, "node_rapl_package_joules_total", job="node")
    assert [s.value for s in q.series[0].samples] == [pytest.approx(1005.5)]
    assert q.series[0].samples[0].count == 2
    # an empty request is fine
    assert post(casca, snappy(b"")) == (204, "")


def test_bad_requests_store_nothing(casca):
    now = int(time.time() * 1000)
    good = write_request([({"__name__": "x", "job": "j"}, [(1, now)])])
    before = series(casca)
    cases = [
        ({**HEADERS, "Content-Type": "text/plain"}, snappy(good), 415, "Content-Type is text/plain"),
        ({k: v for k, v in HEADERS.items() if k != "Content-Encoding"}, snappy(good), 415,
         "Content-Encoding is missing"),
        ({**HEADERS, "Content-Encoding": "gzip"}, snappy(good), 415, "compressed with snappy"),
        ({**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
          "X-Prometheus-Remote-Write-Version": "2.0.0"}, snappy(good), 415,
         "remote write 2.0 is not supported"),
        (HEADERS, good, 400, "not valid snappy"),  # uncompressed protobuf
        (HEADERS, b"", 400, "not snappy-compressed"),
        (HEADERS, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 400, "not snappy-compressed"),
        (HEADERS, b"\x80\x80\x80\x20" + b"\x00" * 10, 413, "inflates to 67108864 bytes"),
        (HEADERS, snappy(b"\xff\xff garbage \x00\x01"), 400, "not a prometheus.WriteRequest"),
    ]
    for headers, body, status, text in cases:
        s, msg = post(casca, body, headers=headers)
        assert s == status and text in msg and msg.endswith("\n"), (headers, body[:20], s, msg)
    # a body over the listener's 4 MiB is refused (by nng, 400) before it is read, so a client
    # still sending it may see the connection close instead
    import socket
    with socket.create_connection(("127.0.0.1", int(casca.http.rsplit(":", 1)[1])), 10) as sk:
        sk.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n"
                   b"Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\r\n")
        assert sk.recv(100).startswith(b"HTTP/1.1 400 ")
    s, msg = post(casca, snappy(good), token=VIEW)
    assert s == 403 and "role 'viewer' may not POST /api/v1/write" in msg
    s, msg = post(casca, snappy(good), token=None)
    assert s == 401
    s, _, msg = get(casca.http + "/api/v1/write", REP)
    assert s == 405 and "use POST" in msg
    assert series(casca) == before
    # some samples refused: the rest are stored, and the answer names the first reason
    s, msg = post(casca, snappy(write_request([
        ({"__name__": "ok_series"}, [(1, now)]),
        ({"__name__": "nan_series"}, [(float("nan"), now)]),
        ({"job": "no-name"}, [(1, now)]),
        ({"__name__": "old_series"}, [(1, 1000)]),
    ])))
    assert s == 400, msg
    assert msg.startswith("stored 1 samples, refused 3; the first: the value is NaN"), msg
    assert [x[0] for x in series(casca)] == ["ok_series"]


def test_prometheus_remote_writes_node_exporter(casca, tmp_path):
    for exe, pkg in ((PROMETHEUS, "prometheus"), (NODE_EXPORTER, "prometheus-node-exporter")):
        if not os.path.exists(exe):
            pytest.fail(f"{exe} is missing: run deploy/install-deps.sh (Debian package {pkg})")
    node_port, prom_port = free_port(), free_port()
    logs = open(tmp_path / "components.log", "w")
    procs = [subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}",
         "--collector.disable-defaults", "--collector.loadavg", "--collector.meminfo",
         "--collector.rapl"], stdout=logs, stderr=subprocess.STDOUT)]
    (tmp_path / "prom.token").write_text(REP + "\n")
    (tmp_path / "prometheus.yml").write_text(f"""\
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node_port}"]}}]
remote_write:
  - url: {casca.http}/api/v1/write
    authorization: {{credentials_file: {tmp_path / "prom.token"}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
    write_relabel_configs:
      - {{source_labels: [__name__], regex: "node_load1|node_memory_MemTotal_bytes|up",
          action: keep}}
""")
    procs.append(subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'prom'}", f"--web.listen-address=127.0.0.1:{prom_port}",
         "--storage.remote.flush-deadline=1s", "--log.level=warn"], stdout=logs,
        stderr=subprocess.STDOUT))
    try:
        want = {"node_load1", "node_memory_MemTotal_bytes", "up"}
        got = wait_for(lambda: want <= {s[0] for s in series(casca)} and series(casca), 90)
        assert got, ((tmp_path / "components.log").read_text(), series(casca))
        instance = f"127.0.0.1:{node_port}"
        assert {s[0] for s in got} == want  # write_relabel_configs kept only these
        for name, tags, points in got:
            assert dict(tags) == {"instance": instance, "job": "node"}, (name, tags)
        q = query(casca, "up", job="node", instance=instance)
        assert q.series[0].samples[0].value == 1
        mem = query(casca, "node_memory_MemTotal_bytes").series[0].samples[0].value
        assert mem == pytest.approx(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                                    rel=0.1)
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        logs.close()
