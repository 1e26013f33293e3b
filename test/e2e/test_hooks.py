"""Telemetry ingest end to end: `casca report` processes publish over the nng bus, declarative
hooks store into LMDB (read back with TelemetryService.Query, exact aggregates) and into a real
influxd (read back over its HTTP query API); bad input is counted per hook and logged at warn,
never a crash or a stalled bus; a hook whose database is unreachable does not stop the others."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc

from conftest import CASCAD, free_port

BUILD = os.path.dirname(os.path.dirname(os.path.abspath(CASCAD)))
CASCA = os.path.join(BUILD, "clients", "casca")
CASCA_HOOK = os.path.join(BUILD, "server", "casca-hook")
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


def wait_for(fn, timeout=20, every=0.05):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(every)


@pytest.fixture
def influxd(tmp_path):
    """A real influxd (Debian's influxdb package) on loopback, with its own dirs and ports."""
    if not os.path.exists(INFLUXD):
        pytest.fail("influxd is missing: run deploy/install-deps.sh (Debian package influxdb)")
    http_port, rpc_port = free_port(), free_port()
    d = tmp_path / "influx"
    conf = tmp_path / "influxdb.conf"
    conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
    log = open(tmp_path / "influxd.log", "w")
    proc = subprocess.Popen([INFLUXD, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"

    def ping():
        try:
            return urllib.request.urlopen(url + "/ping", timeout=1).status == 204
        except OSError:
            return False
    assert wait_for(ping, 30), (tmp_path / "influxd.log").read_text()
    influx_query(url, "CREATE DATABASE casca", post=True)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


def influx_query(url, q, post=False):
    data = urllib.parse.urlencode({"q": q, "db": "casca", "epoch": "ns"}).encode()
    req = urllib.request.Request(url + "/query" + ("" if post else "?" + data.decode()),
                                 data=data if post else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def utc(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def report(bus, topic, lines, raw=False, check=True):
    args = [CASCA, "report", "--bus", bus, "--topic", topic] + (["--raw"] if raw else [])
    p = subprocess.run(args, input="".join(l + "\n" for l in lines).encode(), capture_output=True,
                       timeout=60)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def hooks_status(daemon):
    st = admin_pb2_grpc.AdminServiceStub(daemon.channel()).GetStatus(admin_pb2.GetStatusRequest(),
                                                                      timeout=5)
    return {h.name: h for h in st.hooks}


def query(daemon, series, agg, start, end, tags=None, quantile=0):
    stub = telemetry_pb2_grpc.TelemetryServiceStub(daemon.channel())
    r = stub.Query(telemetry_pb2.QueryRequest(series=series, tags=tags or {}, aggregation=agg,
                                              start={"seconds": start}, end={"seconds": end},
                                              quantile=quantile), timeout=5)
    return {tuple(sorted(s.tags.items())): s.samples for s in r.series}


HOOKS = """\
server: {{log_level: info}}
store: {{sync: every_commit}}
bus:
  listen: ["tcp://127.0.0.1:{bus_port}", "ipc://{ipc}"]
hooks:
  - name: player
    topic: "autowatcher/"
    values:
      transcoding_fps: "/Transcoding FPS"
      dropped_frames: {{field: "/Dropped frames", default: 0}}
    time: {{field: "/Time (UTC)", format: "%Y-%m-%d %H:%M:%S", timezone: UTC}}
    tags: {{client: "/Autowatcher ID", topic: $TOPIC}}
  - name: plug
    topic: "tele/"
    values:
      power_w: /ENERGY/Power
      apparent_power_va: /ENERGY/ApparentPower
    time: {{field: /Time, format: rfc3339, timezone: Europe/Vienna}}
    tags: {{plug: $TOPIC}}
  - name: player_influx
    topic: "autowatcher/"
    series: fps
    value: "/Transcoding FPS"
    time: {{field: "/Time (UTC)", format: "%Y-%m-%d %H:%M:%S"}}
    tags: {{client: "/Autowatcher ID"}}
    connector: influxdb
    influxdb: {{url: "{influx}", database: casca, batch: 50, flush_interval: 200ms}}
  - name: dead_db
    topic: "autowatcher/"
    series: fps
    value: "/Transcoding FPS"
    tags: {{client: "/Autowatcher ID"}}
    connector: influxdb
    influxdb: {{url: "http://127.0.0.1:{dead_port}", database: casca, batch: 10, timeout: 500ms}}
"""


def test_reporters_hooks_lmdb_and_influxdb(make_daemon, influxd, tmp_path):
    bus_port = free_port()
    bus = f"tcp://127.0.0.1:{bus_port}"
    d = make_daemon(HOOKS.format(bus_port=bus_port, ipc=tmp_path / "bus.ipc", influx=influxd,
                                 dead_port=free_port()))
    now = int(time.time()) // 60 * 60
    t0 = now - 1800
    # three players in three separate processes (two over tcp, one over ipc), 100 reports each:
    # client k reports fps = k*10 + i % 10 and dropped = i % 3 at t0 + i
    procs = []
    for k in (1, 2, 3):
        lines = [json.dumps({"Autowatcher ID": f"w{k}", "Transcoding FPS": k * 10 + i % 10,
                             "Dropped frames": i % 3, "Time (UTC)": utc(t0 + i)})
                 for i in range(100)]
        addr = f"ipc://{tmp_path / 'bus.ipc'}" if k == 3 else bus
        procs.append(subprocess.Popen([CASCA, "report", "--bus", addr, "--topic",
                                       f"autowatcher/w{k}", "--csv", str(tmp_path / f"w{k}.csv")],
                                      stdin=subprocess.PIPE, stderr=subprocess.PIPE))
        procs[-1].stdin.write("".join(l + "\n" for l in lines).encode())
    for p in procs:
        p.stdin.close()
        assert p.wait(30) == 0, p.stderr.read().decode()
        p.stderr.close()
    # the Tasmota plug, in Vienna local time (UTC+1 in winter, UTC+2 in summer)
    local = time.localtime  # noqa: F841 (documenting: the offset comes from the hook's timezone)
    plug = []
    for i in range(10):
        ts = t0 + 60 * i
        off = 7200 if time.gmtime(ts).tm_mon in (4, 5, 6, 7, 8, 9) else 3600
        plug.append(json.dumps({"Time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts + off)),
                                "ENERGY": {"Power": 10 + i, "ApparentPower": 20 + i,
                                           "Voltage": 229}}))
    report(bus, "tele/plug1", plug)

    assert wait_for(lambda: hooks_status(d)["player"].stored == 600
                    and hooks_status(d)["plug"].stored == 20), hooks_status(d)
    st = hooks_status(d)
    assert (st["player"].dropped, st["player"].errors, st["plug"].errors) == (0, 0, 0)

    # exact aggregates from TelemetryService.Query
    mean = query(d, "transcoding_fps", telemetry_pb2.AGGREGATION_MEAN, t0, t0 + 100)
    for k in (1, 2, 3):
        key = (("client", f"w{k}"), ("topic", f"autowatcher/w{k}"))
        assert mean[key][0].count == 100
        assert mean[key][0].value == pytest.approx(k * 10 + 4.5, abs=1e-9)
    mx = query(d, "transcoding_fps", telemetry_pb2.AGGREGATION_MAX, t0, t0 + 50,
               tags={"client": "w2"})
    assert [s.value for s in list(mx.values())[0]] == [29]
    total = query(d, "dropped_frames", telemetry_pb2.AGGREGATION_SUM, t0, t0 + 100,
                  tags={"client": "w1"})
    assert list(total.values())[0][0].value == 99  # 33 x 0, 34 x 1, 33 x 2
    p90 = query(d, "transcoding_fps", telemetry_pb2.AGGREGATION_QUANTILE, t0, t0 + 100,
                tags={"client": "w3"}, quantile=0.9)
    assert list(p90.values())[0][0].value == pytest.approx(38.1)  # numpy: 30..39 x 10, q=0.9
    power = query(d, "power_w", telemetry_pb2.AGGREGATION_MEAN, t0, t0 + 600)
    assert list(power.values())[0][0].count == 10  # every local time landed at its UTC minute
    assert list(power.values())[0][0].value == pytest.approx(14.5)
    assert list(power.keys()) == [(("plug", "tele/plug1"),)]

    # the same reports in InfluxDB, read back over its HTTP API
    def influx_points():
        r = influx_query(influxd, "SELECT count(value), sum(value) FROM fps GROUP BY client")
        series = r["results"][0].get("series", [])
        return {s["tags"]["client"]: s["values"][0][1:] for s in series}
    assert wait_for(lambda: influx_points() == {"w1": [100, 1450], "w2": [100, 2450],
                                                "w3": [100, 3450]}), influx_points()
    r = influx_query(influxd, "SELECT value FROM fps WHERE client = 'w2' ORDER BY time LIMIT 2")
    assert r["results"][0]["series"][0]["values"] == [[t0 * 10**9, 20], [(t0 + 1) * 10**9, 21]]
    assert wait_for(lambda: hooks_status(d)["player_influx"].stored == 300)

    # the hook whose database is unreachable counted its failures; nobody else was held up
    assert wait_for(lambda: hooks_status(d)["dead_db"].errors > 0)
    assert hooks_status(d)["dead_db"].stored == 0
    assert "hook dead_db: cannot reach InfluxDB" in d.output()
    # the CSV kept every report
    rows = (tmp_path / "w2.csv").read_text().splitlines()
    assert rows[0] == "received,topic,report" and len(rows) == 101
    assert '"autowatcher/w2","{""Autowatcher ID"": ""w2""' in rows[1]


BAD = [
    ('{"Autowatcher ID": "w9", "Transcoding FPS": 2', "malformed JSON"),
    ('{"Autowatcher ID": "w9", "Time (UTC)": "%s"}', "field /Transcoding FPS is missing"),
    ('{"Autowatcher ID": "w9", "Transcoding FPS": "fast", "Time (UTC)": "%s"}',
     "is a string, not a number"),
    ('{"Autowatcher ID": "w9", "Transcoding FPS": NaN, "Time (UTC)": "%s"}', "malformed JSON"),
    ('{"Autowatcher ID": "w9", "Transcoding FPS": Infinity, "Time (UTC)": "%s"}',
     "malformed JSON"),
    ('{"Autowatcher ID": "w9", "Transcoding FPS": 1e999, "Time (UTC)": "%s"}', "malformed JSON"),
    ('{"Autowatcher ID": "w9", "Transcoding FPS": 25, "Time (UTC)": "23/11/2026 10:00"}',
     "does not match time.format"),
    ('{"Autowatcher ID": {"id": 1}, "Transcoding FPS": 25, "Time (UTC)": "%s"}',
     "not a string or number"),
]

BAD_CONFIG = """\
server: {{log_level: info}}
store: {{sync: every_commit}}
bus: {{listen: ["tcp://127.0.0.1:{bus_port}"]}}
hooks:
  - name: player
    topic: "autowatcher/"
    values:
      transcoding_fps: "/Transcoding FPS"
      dropped_frames: {{field: "/Dropped frames", default: 0}}
    time: {{field: "/Time (UTC)", format: "%Y-%m-%d %H:%M:%S"}}
    tags: {{client: "/Autowatcher ID"}}
  - name: pb
    topic: "points/"
    format: protobuf
"""


def test_bad_input_is_counted_and_logged(make_daemon):
    bus_port = free_port()
    bus = f"tcp://127.0.0.1:{bus_port}"
    d = make_daemon(BAD_CONFIG.format(bus_port=bus_port))
    now = int(time.time()) - 600
    # one at a time, slower than the log's limit of 5 warnings a second per hook, so each shows
    for bad, _ in BAD:
        report(bus, "autowatcher/w9", [bad.replace("%s", utc(now))], raw=True)
        time.sleep(0.25)
    big = json.dumps({"Autowatcher ID": "w9", "Transcoding FPS": 1, "Time (UTC)": utc(now),
                      "padding": "x" * (10 << 20)})
    report(bus, "autowatcher/w9", [big], raw=True)
    report(bus, "nobody/listens", ['{"a": 1}'], raw=True)
    report(bus, "points/x", ["not protobuf at all"], raw=True)
    # and then a good report: the bus and the hook still work
    report(bus, "autowatcher/w1", [json.dumps({"Autowatcher ID": "w1", "Transcoding FPS": 24,
                                               "Time (UTC)": utc(now)})])
    assert wait_for(lambda: hooks_status(d)["player"].stored >= 2), hooks_status(d)
    st = hooks_status(d)
    assert st["player"].errors == len(BAD) + 1  # + the 10 MB message
    assert st["pb"].errors == 1
    assert st["player"].dropped == 0
    # stored: the good report (2 series) + dropped_frames (its default) of the two reports whose
    # FPS is missing or not a number: the good fields of a partly bad message are kept
    assert st["player"].stored == 4
    good = query(d, "transcoding_fps", telemetry_pb2.AGGREGATION_MEAN, now - 1, now + 1,
                 tags={"client": "w1"})
    assert list(good.values())[0][0].value == 24
    out = d.output()
    for _, why in BAD:
        assert f"warn hooks: hook player: message on topic 'autowatcher/w9'" in out
        assert why in out, why
    assert "warn hooks: hook player: dropped a message of 1048" in out  # 10 MB, over max_message
    assert "warn hooks: hook pb: message on topic 'points/x' dropped" in out
    assert "warn bus: bus main: no hook of this process subscribes to topic 'nobody/listens'" in out


def test_casca_hook_standalone_over_tcp(make_daemon, tmp_path):
    """A hook in its own process (casca-hook) subscribes to cascad's bus over tcp and stores into
    its own data dir; cascad's bus publishes on a tcp address for it."""
    bus_port, pub_port = free_port(), free_port()
    d = make_daemon(f"""\
bus: {{listen: ["tcp://127.0.0.1:{bus_port}"], publish: ["tcp://127.0.0.1:{pub_port}"]}}
hooks:
  - {{name: local, topic: "m/", series: v, value: /v}}
""")
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "hook.yaml").write_text(f"""\
server: {{data_dir: ./data}}
store: {{sync: every_commit}}
hooks:
  - {{name: remote, bus: "tcp://127.0.0.1:{pub_port}", topic: "m/", series: v, value: /v,
     tags: {{topic: $TOPIC}}}}
""")
    log = open(hook_dir / "hook.log", "w")
    hook = subprocess.Popen([CASCA_HOOK, "--config", str(hook_dir / "hook.yaml")], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "hook remote: topic 'm/'" in (hook_dir / "hook.log").read_text())
        time.sleep(0.3)  # the subscription reaches the publisher
        report(f"tcp://127.0.0.1:{bus_port}", "m/1", [json.dumps({"v": i}) for i in range(20)])
        assert wait_for(lambda: hooks_status(d)["local"].stored == 20)
    finally:
        hook.terminate()
        assert hook.wait(20) == 0
        log.close()
    text = (hook_dir / "hook.log").read_text()
    assert "hook remote stopped: 20 points stored, 0 messages dropped, 0 errors" in text, text
    assert " error " not in text


# Points that enter without a bus (gRPC Publish and PublishStream, probes) pass the same hooks:
# the built-in sources "publish" (topic: the caller's token name, "local" without tokens) and
# "probes" (topic: the probe's name).
ONE_PATH = """\
server: {{log_level: info}}
store: {{sync: every_commit}}
hooks:
  - name: keep
    bus: publish
  - name: publish_influx
    bus: publish
    connector: influxdb
    influxdb: {{url: "{influx}", database: casca, batch: 1000, flush_interval: 300ms}}
  - name: probes_influx
    bus: probes
    topic: web
    connector: influxdb
    influxdb: {{url: "{influx}", database: casca, batch: 1000, flush_interval: 100ms}}
probes:
  - {{name: web, url: "{influx}/ping", period: 200ms}}
"""


def test_grpc_publish_and_probes_pass_the_hooks(make_daemon, influxd):
    d = make_daemon(ONE_PATH.format(influx=influxd))
    stub = telemetry_pb2_grpc.TelemetryServiceStub(d.channel())
    now = int(time.time())

    def point(series, value, t, **tags):
        return telemetry_pb2.Point(series=series, value=value, tags=tags, time={"seconds": t})

    req = telemetry_pb2.PublishRequest(points=[point("rps", i, now - 60 + i, host="h1")
                                               for i in range(10)])
    assert stub.Publish(req, timeout=10).accepted == 10
    # Publish answers once every hook has stored the points: InfluxDB has them already
    r = influx_query(influxd, "SELECT count(value), sum(value) FROM rps")
    assert r["results"][0]["series"][0]["values"][0][1:] == [10, 45], r
    msgs = [telemetry_pb2.PublishRequest(points=[point("rps", 100 + k, now - 30 + k, host="h2")])
            for k in range(3)]
    assert stub.PublishStream(iter(msgs), timeout=10).accepted == 3
    r = influx_query(influxd, "SELECT count(value) FROM rps WHERE host = 'h2'")
    assert r["results"][0]["series"][0]["values"][0][1] == 3, r
    # the lmdb hook stored the same points: SLOs and Query see them
    got = query(d, "rps", telemetry_pb2.AGGREGATION_SUM, now - 120, now + 1)
    assert [s.value for s in got[(("host", "h1"),)]] == [45]
    # probes reach InfluxDB through their hook (and nothing else: no implicit probes store)
    def probe_points():
        r = influx_query(influxd, "SELECT count(value) FROM probe_success WHERE probe = 'web'")
        return r["results"][0].get("series", [{}])[0].get("values", [[0, 0]])[0][1]
    assert wait_for(lambda: probe_points() >= 2), probe_points()
    st = hooks_status(d)
    assert st["keep"].stored == 13 and st["publish_influx"].stored == 13, st
    assert st["probes_influx"].stored >= 2 and st["probes_influx"].errors == 0, st
    assert set(st) == {"keep", "publish_influx", "probes_influx"}  # implicit ones are not listed
    assert not query(d, "probe_success", telemetry_pb2.AGGREGATION_COUNT, now - 120, now + 60)


def publish_to_dead_influxdb(make_daemon, topic):
    """A daemon whose only publish hook (on topic) writes to an InfluxDB nobody listens on; the
    error of one Publish, and the dead port and the daemon."""
    dead = free_port()
    d = make_daemon(f"""\
server: {{log_level: info}}
hooks:
  - name: only_influx
    bus: publish
    topic: "{topic}"
    connector: influxdb
    influxdb: {{url: "http://127.0.0.1:{dead}", database: casca, batch: 1, timeout: 500ms}}
""")
    stub = telemetry_pb2_grpc.TelemetryServiceStub(d.channel())
    req = telemetry_pb2.PublishRequest(points=[telemetry_pb2.Point(series="x", value=1)])
    with pytest.raises(grpc.RpcError) as e:
        stub.Publish(req, timeout=10)
    return e.value, dead, d


def test_publish_answers_what_a_hook_could_not_store(make_daemon):
    # without tokens the caller is "local": no hook takes that topic
    err, _, _ = publish_to_dead_influxdb(make_daemon, "sensors")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no hook takes publish points on topic 'local'" in err.details()
    assert "bus: publish" in err.details()


def test_publish_to_an_unreachable_influxdb_fails_without_leaking_it(make_daemon):
    err, dead, d = publish_to_dead_influxdb(make_daemon, "")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "InfluxDB did not take the points" in err.details()
    assert str(dead) not in err.details()  # a reporter never learns where points go
    assert wait_for(lambda: hooks_status(d)["only_influx"].errors == 1)


@pytest.mark.parametrize("text, words", [
    ("hooks:\n  - {name: h, bus: publish, values: {x: /x}}\n",
     "bus publish gives points, not messages: remove values:"),
    ("hooks:\n  - {name: h, bus: probes, format: json}\n",
     "bus probes gives points, not messages: remove format:"),
    ("bus: {name: publish, listen: [\"tcp://127.0.0.1:1\"]}\n",
     "bus.name 'publish' is the name of a built-in source"),
    ("hooks:\n  - {name: h, bus: nowhere}\n", "or a built-in source: publish, probes"),
    ('bus: {publish: ["udp://127.0.0.1:5"]}\n', "udp:// is for bus.listen only"),
    ('bus: {listen: ["udp://127.0.0.1:99999"]}\n', "the port must be a number from 1 to 65535"),
    ('bus: {listen: ["udp://127.0.0.1:5"], udp_buffer: 1KiB}\n',
     "bus.udp_buffer: 1KiB is out of range"),
])
def test_bus_and_source_config_errors(tmp_path, text, words):
    cfg = tmp_path / "casca.yaml"
    cfg.write_text("server: {log_level: info}\n" + text)
    p = subprocess.run([CASCAD, "--check", "--config", str(cfg)], capture_output=True, timeout=30)
    assert p.returncode != 0
    out = p.stderr.decode() + p.stdout.decode()
    assert words in out and "casca.yaml:" in out, out


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_bus_datagrams(make_daemon):
    """udp:// in bus.listen: one datagram is one message, for the many one-point reporters; what
    cannot be read is counted and logged, and the tcp ingress of the same bus keeps working."""
    udp_port, tcp_port = free_udp_port(), free_port()
    d = make_daemon(f"""\
server: {{log_level: info}}
store: {{sync: every_commit}}
bus: {{listen: ["udp://127.0.0.1:{udp_port}", "tcp://127.0.0.1:{tcp_port}"], max_message: 4KiB}}
hooks:
  - {{name: m, topic: "m/", series: v, value: /v, tags: {{topic: $TOPIC}}}}
""")
    now = int(time.time())
    report(f"udp://127.0.0.1:{udp_port}", "m/1",
           [json.dumps({"v": i}) for i in range(100)])
    report(f"tcp://127.0.0.1:{tcp_port}", "m/2", [json.dumps({"v": 1000})])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"m/3\0" + json.dumps({"v": 7}).encode(), ("127.0.0.1", udp_port))
        s.sendto(b"no topic", ("127.0.0.1", udp_port))
        s.sendto(b"m/3\0" + b" " * 5000, ("127.0.0.1", udp_port))  # over max_message
    assert wait_for(lambda: hooks_status(d)["m"].stored == 102), hooks_status(d)
    got = query(d, "v", telemetry_pb2.AGGREGATION_SUM, now - 60, now + 60)
    assert {k: v[0].value for k, v in got.items()} == {
        (("topic", "m/1"),): sum(range(100)), (("topic", "m/2"),): 1000, (("topic", "m/3"),): 7}
    st = admin_pb2_grpc.AdminServiceStub(d.channel()).GetStatus(admin_pb2.GetStatusRequest(),
                                                                timeout=5)
    assert st.counts["bus_received"] == 104
    assert st.counts["bus_malformed"] == 2
    assert st.counts["bus_datagrams_lost"] == 0
    out = d.output()
    assert "warn bus: bus main: dropped a message of 8 bytes without a topic" in out
    assert "warn bus: bus main: dropped a datagram of more than 4096 bytes (bus.max_message)" in out

    # a line one datagram cannot carry is refused by `casca report`, which says what to do
    p = report(f"udp://127.0.0.1:{udp_port}", "m/1", [json.dumps({"v": 1, "pad": "x" * 70000})],
               check=False)
    assert p.returncode == 1
    assert "line 1 skipped" in p.stderr.decode() and "send it over tcp://" in p.stderr.decode()

    # the port is taken: a second cascad does not start, and says which address
    other = make_daemon(f"bus: {{listen: [\"udp://127.0.0.1:{udp_port}\"]}}\n", start=False)
    p = subprocess.run(other.args, capture_output=True, timeout=60)
    assert p.returncode != 0
    assert f"cannot listen on udp://127.0.0.1:{udp_port}: Address already in use" in (
        p.stdout.decode() + p.stderr.decode())
