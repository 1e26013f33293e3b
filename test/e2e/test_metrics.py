"""GET /metrics end to end (issue 16, parts 1 and 2): cascad's HTTP listener (http.listen) serves
the Prometheus text format (# HELP / # TYPE, escaped label values, one block per family) with the
SLOs' values, fulfilment, objectives, compliance and error budget by public alias, the settings'
values, the zone's grid intensity, agent sessions, hooks, buses, store, telemetry and per-method
call counts and latency histograms; no private string of the config in any byte. Debian's real
`prometheus` scrapes it (with a viewer bearer token) and its query API returns the SLO's value.
Bad requests: unknown path 404, wrong method 405, missing, malformed or unknown token 401, a
reporter token 403, each with a clear text body, and nothing stored changes. Without tokens
only loopback is allowed, and the listener is off unless configured."""
import datetime
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc, common_pb2, control_pb2, control_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from google.protobuf import timestamp_pb2

from conftest import CASCAD, SANITIZED, carbon_bundle, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_VIEW": "view-0123456789abcdef0123",
          "T_REP": "rep-0123456789abcdef0123", "T_AGENT": "agent-0123456789abcdef0123"}
OP, VIEW, REP, AGENT = TOKENS["T_OP"], TOKENS["T_VIEW"], TOKENS["T_REP"], TOKENS["T_AGENT"]
# every private detail of the config: none may appear in /metrics
PRIVATE = ["secret_fps_series", "hidden-client-7", "client", "room-3", "secret_power_w"]
HOOK = "jellyfin-player-hook"  # a hook's name: operators see it, viewers and agents do not
ENUM_ODD = 'a"b\\c'  # an allowed value that needs escaping in a label value
FPS = [25 + (i * 7) % 5 for i in range(60)]  # 60 points over the last 5 minutes, all in 24..30
FPS_MEAN = sum(FPS) / len(FPS)


def config(bundle, http_port, tokens=False):
    auth = """\
auth:
  tokens:
    - {name: ops, role: operator, token_env: T_OP}
    - {name: dash, role: viewer, token_env: T_VIEW}
    - {name: meter, role: reporter, token_env: T_REP}
    - {name: gds, role: agent, token_env: T_AGENT}
""" if tokens else ""
    return f"""\
server:
  log_level: debug
store:
  sync: every_commit
{auth}http:
  listen: 127.0.0.1:{http_port}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
slo_engine: {{interval: 200ms, compliance_step: 10s, compliance_period: 10m}}
hooks:
  - {{name: {HOOK}, bus: publish}}
slos:
  - id: FPS
    unit: fps
    series: secret_fps_series
    tags: {{client: hidden-client-7}}
    aggregation: mean
    window: 10m
    objective: {{min: 24, max: 30}}
    error_budget: {{target: 0.9, window: 1h}}
  - id: carbon
    kind: carbon_footprint
    power_series: secret_power_w
    tags: {{room: room-3}}
    window: 5m
    objective: {{max: 80}}
settings:
  - {{id: Threads, type: int, range: {{min: 1, max: 8}},
     controller: {{memory: {{value: 4}}}}}}
  - {{id: Ratio, type: double, range: {{min: 0, max: 1}}, controller: {{memory: {{value: 0.25}}}}}}
  - {{id: Turbo, type: bool, controller: {{memory: {{value: true}}}}}}
  - id: Mode
    type: enum
    allowed: [low, '{ENUM_ODD}']
    controller: {{memory: {{value: low}}}}
  - {{id: Label, type: string, controller: {{memory: {{value: free text}}}}}}
"""


def wait_for(fn, timeout=30, every=0.1):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(every)


def get(url, token=None, method="GET", data=None):
    """(status, headers, body text) of a request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, data=data)
    if token is not None:
        req.add_header("Authorization", token if " " in token else f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


# ---- the text format, parsed strictly ----

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)


def parse(text):
    """{family: {"type", "help", "samples": [(name, {labels}, value)]}}; asserts the format's rules:
    HELP then TYPE before a family's samples, each family in one block, valid names, labels and
    values, a final newline."""
    assert text.endswith("\n")
    fams, current, done = {}, None, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_ = line[7:].split(" ", 1)
            assert name not in fams, f"{name} declared twice"
            if current:
                done.add(current)
            current = name
            fams[name] = {"help": help_, "type": None, "samples": []}
            continue
        if line.startswith("# TYPE "):
            name, typ = line[7:].split(" ")
            assert name == current and typ in ("gauge", "counter", "histogram"), line
            fams[name]["type"] = typ
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels_text, value = m.groups()
        fam = current
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name == fam or (fams[fam]["type"] == "histogram" and base == fam), \
            f"{name} outside its family's block ({fam})"
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = LABEL.match(labels_text, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = unescape(lm.group(2))
                pos = lm.end()
        float(value)  # NaN, +Inf, -Inf and numbers all parse
        fams[fam]["samples"].append((name, labels, float(value)))
    return fams


def value(fams, family, **labels):
    vals = [v for n, l, v in fams.get(family, {"samples": []})["samples"]
            if n == family and all(l.get(k) == x for k, x in labels.items())]
    return vals[0] if vals else None


def ts(seconds):
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(round(seconds * 1e9)))
    return t


def publish_fps(d, token=None):
    now = time.time()
    pts = []
    for i, v in enumerate(FPS):
        p = tm.Point(series="secret_fps_series", value=v, tags={"client": "hidden-client-7"})
        p.time.CopyFrom(ts(now - 300 + i * 5))
        pts.append(p)
    r = tm_grpc.TelemetryServiceStub(d.channel(token)).Publish(tm.PublishRequest(points=pts),
                                                               timeout=10)
    assert r.accepted == len(pts) and r.rejected == 0


@pytest.fixture
def plain(make_daemon, tmp_path):
    port = free_port()
    d = make_daemon(config(carbon_bundle(tmp_path), port))
    d.http = f"http://127.0.0.1:{port}"
    return d


@pytest.fixture
def tokened(make_daemon, tmp_path):
    port = free_port()
    d = make_daemon(config(carbon_bundle(tmp_path), port, tokens=True), env=TOKENS)
    d.http = f"http://127.0.0.1:{port}"
    return d


def scrape(d, token=None):
    status, headers, body = get(d.http + "/metrics", token)
    assert status == 200, body
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return body


def test_metrics_values_and_format(plain):
    publish_fps(plain)
    fams = wait_for(lambda: (lambda f: f if value(f, "casca_slo_value", slo="FPS") is not None
                             else None)(parse(scrape(plain))))
    assert fams, scrape(plain)
    assert value(fams, "casca_slo_value", slo="FPS") == pytest.approx(FPS_MEAN, rel=1e-12)
    assert value(fams, "casca_slo_fulfilled", slo="FPS") == (1 if 24 <= FPS_MEAN <= 30 else 0)
    assert value(fams, "casca_slo_objective_min", slo="FPS") == 24
    assert value(fams, "casca_slo_objective_max", slo="FPS") == 30
    assert value(fams, "casca_slo_value", slo="carbon") is None  # no power data: no value
    assert value(fams, "casca_slo_fulfilled", slo="carbon") == 0
    assert value(fams, "casca_slo_error_budget_remaining_seconds", slo="FPS") is not None
    assert value(fams, "casca_slo_error_budget_remaining_seconds", slo="carbon") is None
    for fam in ("casca_slo_value", "casca_slo_fulfilled", "casca_slo_compliance_ratio"):
        assert fams[fam]["type"] == "gauge" and fams[fam]["help"]
        assert all(set(l) == {"slo"} for _, l, _ in fams[fam]["samples"])
    # settings: numbers, a bool as 0/1, an enum as one series per allowed value, no string
    assert value(fams, "casca_setting_value", setting="Threads") == 4
    assert value(fams, "casca_setting_value", setting="Ratio") == 0.25
    assert value(fams, "casca_setting_value", setting="Turbo") == 1
    assert value(fams, "casca_setting_enum_value", setting="Mode", value="low") == 1
    assert value(fams, "casca_setting_enum_value", setting="Mode", value=ENUM_ODD) == 0
    assert value(fams, "casca_setting_value", setting="Label") is None
    # a change through casca shows at the next scrape
    control_pb2_grpc.ServiceControlStub(plain.channel()).SetSetting(
        control_pb2.SetSettingRequest(id="Threads", value=common_pb2.Value(int_value=6)),
        timeout=10)
    fams = parse(scrape(plain))
    assert value(fams, "casca_setting_value", setting="Threads") == 6
    # the zone's grid intensity: the bundle's figure for this UTC hour (nearest year)
    hour = datetime.datetime.now(datetime.timezone.utc).hour
    assert value(fams, "casca_grid_intensity_grams_per_kwh", zone="AT") in (100 + hour,
                                                                             100 + (hour + 1) % 24)
    assert value(fams, "casca_agent_sessions", mode="control") == 0
    assert value(fams, "casca_telemetry_points_accepted_total") == len(FPS)
    assert fams["casca_telemetry_points_accepted_total"]["type"] == "counter"
    assert value(fams, "casca_store_size_bytes") > 0
    assert value(fams, "casca_bus_received_total") == 0
    # the call layer: Publish and SetSetting counted, with a latency histogram
    publish = "/casca.v1.TelemetryService/Publish"
    assert value(fams, "casca_rpc_calls_total", method=publish, code="OK") == 1
    hist = [(l, v) for n, l, v in fams["casca_rpc_duration_seconds"]["samples"]
            if l.get("method") == publish]
    buckets = [v for l, v in hist if "le" in l]
    assert buckets == sorted(buckets) and buckets[-1] == 1  # cumulative, +Inf holds every call
    assert [l["le"] for l, v in hist if "le" in l][-1] == "+Inf"
    assert fams["casca_rpc_duration_seconds"]["type"] == "histogram"
    # privacy: only public aliases
    body = scrape(plain)
    for p in PRIVATE:
        assert p not in body, p


def test_head_and_no_tokens_means_local_operator(plain):
    status, headers, body = get(plain.http + "/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 0
    # without tokens configured any Authorization header is ignored, like gRPC
    status, _, _ = get(plain.http + "/metrics", token="whatever")
    assert status == 200


def store_state(d, token=None):
    """What is stored: audit entries, tsdb points and series, settings' values."""
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(token))
    counts = admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5).counts
    fams = parse(scrape(d, token))
    return (counts["audit_entries"], value(fams, "casca_tsdb_points_written_total"),
            value(fams, "casca_tsdb_series"), value(fams, "casca_setting_value", setting="Threads"))


def test_bad_requests_without_tokens(plain):
    before = store_state(plain)
    status, _, body = get(plain.http + "/nope")
    assert status == 404 and body == ("no such path /nope: cascad serves GET /metrics, POST "
                                     "/api/v1/write, GET /, GET /dashboard.js, GET "
                                     "/dashboard.css, GET /api/state, GET /events\n")
    status, _, body = get(plain.http + "/metrics/x")
    assert status == 404
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = get(plain.http + "/metrics", method=method,
                                    data=b"casca_slo_value 1\n" if method != "DELETE" else None)
        assert status == 405, body
        assert headers["Allow"] == "GET, HEAD"
        assert body == f"method {method} is not allowed on /metrics: use GET, HEAD\n"
    status, _, body = get(plain.http + "/metrics?x=1")  # a query string is fine
    assert status == 200
    assert store_state(plain) == before


def test_tokens_roles(tokened):
    url = tokened.http + "/metrics"
    status, headers, body = get(url)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="casca"'
    assert body == "missing credentials: send the header 'Authorization: Bearer <token>'\n"
    status, _, body = get(url, token="Basic b3BzOnNlY3JldA==")
    assert status == 401 and body.startswith("malformed Authorization header")
    status, _, body = get(url, token="not-a-token-0123456789abcdef")
    assert status == 401 and body == "unknown bearer token: ask the operator for a token\n"
    status, _, body = get(url, token=REP)
    assert status == 403
    assert body == ("role 'reporter' may not GET /metrics; it needs one of: viewer, agent, "
                    "operator\n")
    for tok in (VIEW, AGENT, OP):
        body = scrape(tokened, tok)
        assert "casca_slo_fulfilled{slo=\"FPS\"}" in body
        assert (f'casca_hook_stored_total{{hook="{HOOK}"}}' in body) == (tok == OP), body
        assert all(p not in body for p in PRIVATE if tok != OP)
    # an unknown path is 404 before any token is looked at, as gRPC answers UNIMPLEMENTED
    status, _, _ = get(tokened.http + "/nope", token=REP)
    assert status == 404
    before = store_state(tokened, OP)
    for tok in (None, "Bearer ", REP, "x" * 5000):
        get(url, token=tok)
        get(url, token=tok, method="POST", data=b"x" * 1000)
    assert store_state(tokened, OP) == before


def test_off_by_default_and_loopback_only_without_tokens(make_daemon, tmp_path):
    d = make_daemon()
    assert "metrics at" not in d.output()
    (tmp_path / "c.yaml").write_text("http:\n  listen: 0.0.0.0:9464\n")
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert (f"{tmp_path}/c.yaml:2:11: http.listen: refusing to listen on 0.0.0.0:9464 with no "
            "auth tokens") in p.stderr
    # with tokens any address is allowed
    (tmp_path / "c.yaml").write_text(f"auth:\n  tokens:\n    - {{name: ops, role: operator, "
                                     f"token: {OP}}}\nhttp:\n  listen: 0.0.0.0:9464\n")
    p = subprocess.run([CASCAD, "--check", "--config", str(tmp_path / "c.yaml")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    (tmp_path / "c.yaml").write_text("http:\n  listen: nowhere\n  port: 1\n")
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert "c.yaml:2:11: http.listen: 'nowhere' is not host:port" in p.stderr
    assert "c.yaml:3:3: " in p.stderr and "port" in p.stderr


def test_port_in_use(make_daemon, tmp_path):
    port = free_port()
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        d = make_daemon(f"http:\n  listen: 127.0.0.1:{port}\n", start=False)
        p = subprocess.run(d.args, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert f"http.listen: cannot listen on 127.0.0.1:{port}" in p.stderr


def test_https_with_server_tls(make_daemon, tmp_path):
    import ssl
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(tmp_path / "server.key"), "-out", str(tmp_path / "server.crt")],
                   check=True, capture_output=True)
    port = free_port()
    d = make_daemon(f"server:\n  tls: {{cert: server.crt, key: server.key}}\n"
                    f"http:\n  listen: 127.0.0.1:{port}\n", start=False)
    d.log = open(d.log_path, "w")
    d.proc = subprocess.Popen(d.args, stdout=d.log, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))

    def fetch():
        try:
            with urllib.request.urlopen(f"https://localhost:{port}/metrics", context=ctx,
                                        timeout=5) as r:
                return r.read().decode()
        except (OSError, ssl.SSLError):
            return None
    body = wait_for(fetch, 60 if SANITIZED else 20)
    assert body and "casca_build_info" in body, d.output()
    # urllib asks to close after each answer: over TLS every answer still arrives whole
    for _ in range(20):
        with urllib.request.urlopen(f"https://localhost:{port}/metrics", context=ctx,
                                    timeout=10) as r:
            assert "casca_rpc_calls_active" in r.read().decode()
    with pytest.raises(OSError):  # plain HTTP is not served on the HTTPS port
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()


# ---- Debian's prometheus scraping casca ----

@pytest.fixture
def prometheus(tmp_path):
    """start(target, token) -> base URL of a real prometheus scraping target every second, with
    the README's scrape config (its address, token file and interval replaced)."""
    if not os.path.exists(PROMETHEUS):
        pytest.fail("prometheus is missing: run deploy/install-deps.sh (Debian package prometheus)")
    procs = []

    def start(target, token):
        port = free_port()
        conf = tmp_path / "prometheus.yml"
        (tmp_path / "viewer.token").write_text(token + "\n")
        at = README.index("### Scraping it with Prometheus")
        snippet = re.search(r"```yaml\n(.*?)```", README[at:], re.S).group(1)
        snippet = (snippet.replace("127.0.0.1:9464", target)
                   .replace("/etc/prometheus/casca-viewer.token", str(tmp_path / "viewer.token"))
                   .replace("scrape_interval: 15s", "scrape_interval: 1s"))
        conf.write_text("global:\n  scrape_timeout: 1s\n" + snippet)
        log = open(tmp_path / "prometheus.log", "w")
        procs.append((subprocess.Popen(
            [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'prom'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT), log))
        url = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return urllib.request.urlopen(url + "/-/ready", timeout=1).status == 200
            except OSError:
                return False
        assert wait_for(ready, 60), (tmp_path / "prometheus.log").read_text()
        return url

    yield start
    for proc, log in procs:
        proc.terminate()
        proc.wait(20)
        log.close()


def prom_query(url, q):
    with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": q}),
                                timeout=5) as r:
        ans = json.loads(r.read())
    assert ans["status"] == "success", ans
    return ans["data"]["result"]


def test_prometheus_scrapes_casca(tokened, prometheus, tmp_path):
    publish_fps(tokened, OP)
    url = prometheus(tokened.http[len("http://"):], VIEW)

    def slo_value():
        r = prom_query(url, 'casca_slo_value{slo="FPS"}')
        return r and float(r[0]["value"][1]) == pytest.approx(FPS_MEAN, rel=1e-12) and r
    r = wait_for(slo_value, 60)
    assert r, (prom_query(url, "up"), (tmp_path / "prometheus.log").read_text())
    assert r[0]["metric"] == {"__name__": "casca_slo_value", "slo": "FPS", "job": "casca",
                              "instance": tokened.http[len("http://"):]}
    assert float(prom_query(url, 'up{job="casca"}')[0]["value"][1]) == 1
    # the escaped label value reaches Prometheus intact
    r = prom_query(url, 'casca_setting_enum_value{setting="Mode"} == 0')
    assert [x["metric"]["value"] for x in r] == [ENUM_ODD]
    # the README's Grafana queries
    at = README.index("A Grafana panel of each SLO")
    queries = re.search(r"```\n(.*?)```", README[at:], re.S).group(1).splitlines()
    assert len(queries) == 3
    queries = [q.replace("ServiceSLO", "FPS") for q in queries]
    assert float(prom_query(url, queries[0])[0]["value"][1]) == pytest.approx(FPS_MEAN)
    assert float(prom_query(url, queries[1])[0]["value"][1]) == 24
    assert prom_query(url, queries[2]) == []  # no budget burning: the data meets the objective
