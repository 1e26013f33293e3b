"""The `casca` CLI against the real cascad: every subcommand in both outputs (aligned tables, and
--json checked against the protobuf JSON mapping by parsing it back into the reply message), the
values it prints against what the server holds, the exit codes (0 done, 1 refused, 2 usage,
3 unreachable), bad input (unknown ids, values out of range or of the wrong type, bad flags,
read-only settings, roles), watches stopped by SIGINT/SIGTERM, and a server that is down or mute."""
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from google.protobuf import json_format

from casca.v1 import admin_pb2, agent_pb2, agent_pb2_grpc, carbon_pb2, common_pb2, control_pb2
from casca.v1 import slo_pb2
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from conftest import carbon_bundle

CLI = os.environ.get("CASCA_CLI", "build/clients/casca")
SANITIZED = os.environ.get("CASCA_SANITIZE", "OFF") in ("ON", "1", "TRUE")
TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_AGENT": "agent-0123456789abcdef0123",
          "T_VIEW": "view-0123456789abcdef0123"}
OP, AGENT, VIEW = TOKENS["T_OP"], TOKENS["T_AGENT"], TOKENS["T_VIEW"]


def config(bundle):
    return f"""\
server:
  log_level: debug
store:
  sync: every_commit
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: bot, role: agent, token_env: T_AGENT}}
    - {{name: dash, role: viewer, token_env: T_VIEW}}
carbon: {{default_zone: AT, bundled_data: {bundle}}}
slo_engine: {{interval: 100ms, compliance_step: 10s, compliance_period: 10m}}
slos:
  - id: ServiceSLO
    description: mean transcoding frames per second
    unit: fps
    series: fps_series
    aggregation: mean
    window: 5m
    objective: {{min: 24, max: 30}}
  - id: Latency
    series: latency_series
    aggregation: max
    window: 1m
    objective: {{max: 100}}
settings:
  - id: ServiceParam
    description: encoder threads
    unit: threads
    type: int
    range: {{min: 1, max: 8}}
    controller: {{memory: {{value: 4}}}}
  - id: Rate
    type: double
    range: {{min: 0.5, max: 2.5}}
    controller: {{memory: {{value: 1.0}}}}
  - id: Offset
    type: int
    range: {{min: -10, max: 10}}
    controller: {{memory: {{value: 0}}}}
  - id: Fast
    type: bool
    controller: {{memory: {{value: false}}}}
  - id: Preset
    type: enum
    allowed: [fast, medium, slow]
    controller: {{memory: {{value: fast}}}}
  - id: Label
    type: string
    controller: {{memory: {{value: hello}}}}
  - id: Fixed
    type: int
    read_only: true
    controller: {{memory: {{value: 3}}}}
"""


@pytest.fixture
def d(make_daemon, tmp_path):
    return make_daemon(config(carbon_bundle(tmp_path)), env=TOKENS)


def env_for(target, token):
    e = dict(os.environ, CASCA_TARGET=target)
    e.pop("CASCA_TOKEN", None)
    if token:
        e["CASCA_TOKEN"] = token
    return e


def run(d, *args, token=OP, target=None, timeout=30):
    """Runs casca with the target and token in the environment; returns the CompletedProcess."""
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env_for(target or d.target, token))


def ok(d, *args, **kw):
    p = run(d, *args, **kw)
    assert p.returncode == 0, f"casca {' '.join(args)} exited {p.returncode}:\n{p.stderr}"
    return p.stdout


def refused(d, *args, code=1, **kw):
    p = run(d, *args, **kw)
    assert p.returncode == code, (f"casca {' '.join(args)} exited {p.returncode}, wanted {code}:"
                                  f"\n{p.stdout}\n{p.stderr}")
    assert p.stderr.strip(), "an error must say what was wrong"
    return p.stderr


def as_msg(line, cls):
    """Parses one line of --json output into the reply message: a field the mapping does not
    know, a wrong name or a wrong type fails."""
    return json_format.Parse(line, cls())


def json_lines(text, cls):
    lines = text.splitlines()
    assert lines and all(l.startswith("{") and l.endswith("}") for l in lines), text
    return [as_msg(l, cls) for l in lines]


def table(text):
    """Rows of an aligned table as dicts, cut at the header's column starts: a value that does not
    line up with its header lands in the wrong column and fails the test."""
    lines = text.rstrip("\n").splitlines()
    header = lines[0]
    names = header.split()
    starts = [header.index(n) for n in names]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, n in enumerate(names):
            end = starts[i + 1] if i + 1 < len(names) else len(line)
            assert i == 0 or line[starts[i] - 1] == " " or starts[i] > len(line), (header, line)
            row[n] = line[starts[i]:end].strip()
        rows.append(row)
    return rows


def keyvalues(text):
    return {l.split(None, 1)[0]: (l.split(None, 1) + [""])[1].strip()
            for l in text.splitlines() if l.strip()}


def publish(d, series, values, token=OP):
    now = time.time()
    pts = []
    for i, v in enumerate(values):
        p = tm.Point(series=series, value=v)
        p.time.FromNanoseconds(int((now - len(values) + i) * 1e9))
        pts.append(p)
    r = tm_grpc.TelemetryServiceStub(d.channel(token)).Publish(tm.PublishRequest(points=pts),
                                                               timeout=10)
    assert r.accepted == len(pts)


def wait_for(pred, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------

def test_slos_list_get_in_both_outputs(d):
    publish(d, "fps_series", [24.0, 26.0, 28.0])  # mean 26: inside [24, 30]

    rows = table(ok(d, "slos", "list"))
    assert [r["ID"] for r in rows] == ["ServiceSLO", "Latency"]
    assert rows[0] == {"ID": "ServiceSLO", "KIND": "value", "OBJECTIVE": "[24, 30]", "UNIT": "fps",
                       "WINDOW": "5m", "AGGREGATION": "mean",
                       "DESCRIPTION": "mean transcoding frames per second"}
    assert rows[1]["OBJECTIVE"] == "<= 100" and rows[1]["WINDOW"] == "1m"

    (lst,) = json_lines(ok(d, "slos", "list", "--json"), slo_pb2.ListSlosResponse)
    assert [s.id for s in lst.slos] == ["ServiceSLO", "Latency"]
    assert lst.slos[0].objective.min == 24 and lst.slos[0].window.seconds == 300
    assert lst.slos[0].kind == slo_pb2.SLO_KIND_VALUE
    raw = json.loads(ok(d, "slos", "list", "ServiceSLO", "--json"))
    assert raw["slos"][0]["kind"] == "SLO_KIND_VALUE" and raw["slos"][0]["window"] == "300s"

    def fulfilled():
        rows = table(ok(d, "slos", "get", "ServiceSLO"))
        return rows if rows[0]["FULFILLED"] == "yes" else None

    rows = wait_for(fulfilled, what="ServiceSLO fulfilled")
    assert rows[0]["VALUE"] == "26" and rows[0]["SAMPLES"] == "3" and rows[0]["UNIT"] == "fps"
    assert rows[0]["EVALUATED"].endswith("Z")

    (st,) = json_lines(ok(d, "slos", "get", "ServiceSLO", "--json"), slo_pb2.SloStatus)
    assert st.has_value and st.value == 26 and st.fulfilled and st.sample_count == 3
    raw = json.loads(ok(d, "slos", "get", "ServiceSLO", "--json"))
    assert raw["sampleCount"] == "3" and raw["hasValue"] is True  # int64 as a string
    dt.datetime.strptime(raw["evaluatedAt"][:19], "%Y-%m-%dT%H:%M:%S")  # RFC 3339

    # no id: every SLO, one JSON object per line; an SLO without data is "no data", never 0
    all_ = json_lines(ok(d, "slos", "get", "--json"), slo_pb2.SloStatus)
    assert [s.slo.id for s in all_] == ["ServiceSLO", "Latency"]
    assert not all_[1].has_value and not all_[1].fulfilled
    rows = table(ok(d, "slos", "get"))
    assert rows[1]["VALUE"] == "-" and rows[1]["FULFILLED"] == "no data"

    # unknown id: exit 1 with the server's NOT_FOUND; the known one is still shown
    err = refused(d, "slos", "get", "Nope")
    assert "NOT_FOUND" in err and "Nope" in err
    p = run(d, "slos", "get", "ServiceSLO", "Nope")
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr
    assert [r["ID"] for r in table(p.stdout)] == ["ServiceSLO"]
    assert "NOT_FOUND" in refused(d, "slos", "list", "Nope", "--json")


def test_settings_list_get_set_every_type(d):
    rows = {r["ID"]: r for r in table(ok(d, "settings", "list"))}
    assert list(rows) == ["ServiceParam", "Rate", "Offset", "Fast", "Preset", "Label", "Fixed"]
    assert rows["ServiceParam"] == {"ID": "ServiceParam", "TYPE": "int", "ALLOWED": "[1, 8]",
                                    "STEP": "-", "UNIT": "threads", "ACCESS": "read-write",
                                    "DESCRIPTION": "encoder threads"}
    assert rows["Preset"]["ALLOWED"] == "fast|medium|slow" and rows["Preset"]["TYPE"] == "enum"
    assert rows["Fast"]["ALLOWED"] == "true|false" and rows["Fixed"]["ACCESS"] == "read-only"
    (lst,) = json_lines(ok(d, "settings", "list", "--json"), control_pb2.ListSettingsResponse)
    assert lst.settings[0].type == common_pb2.VALUE_TYPE_INT
    assert lst.settings[1].range.max == 2.5

    values = {r["ID"]: r for r in table(ok(d, "settings", "get"))}
    assert {k: v["VALUE"] for k, v in values.items()} == {
        "ServiceParam": "4", "Rate": "1", "Offset": "0", "Fast": "false", "Preset": "fast",
        "Label": "hello", "Fixed": "3"}
    assert values["ServiceParam"]["UNIT"] == "threads"

    # each type parsed by the setting's type, applied, and read back
    for sid, text, field, want in [("ServiceParam", "6", "int_value", 6),
                                   ("Rate", "1.75", "double_value", 1.75),
                                   ("Offset", "-5", "int_value", -5),  # a negative value
                                   ("Fast", "yes", "bool_value", True),
                                   ("Preset", "slow", "string_value", "slow"),
                                   ("Label", "two words", "string_value", "two words")]:
        (v,) = json_lines(ok(d, "settings", "set", sid, text, "--json"),
                          control_pb2.SettingValue)
        assert v.id == sid and getattr(v.value, field) == want and v.changed_by == "ops"
        (g,) = json_lines(ok(d, "settings", "get", sid, "--json"), control_pb2.SettingValue)
        assert getattr(g.value, field) == want
    row = table(ok(d, "settings", "set", "ServiceParam", "7"))[0]
    assert row["VALUE"] == "7" and row["CHANGED_BY"] == "ops" and row["UNIT"] == "threads"
    raw = json.loads(ok(d, "settings", "get", "ServiceParam", "--json"))
    assert raw["value"] == {"intValue": "7"} and raw["changedBy"] == "ops"

    # --dry-run validates and changes nothing
    out = ok(d, "settings", "set", "ServiceParam", "2", "--dry-run")
    assert "dry run" in out and "2" in out
    (v,) = json_lines(ok(d, "settings", "set", "ServiceParam", "3", "--dry-run", "--json"),
                      control_pb2.SettingValue)
    assert v.value.int_value == 3
    assert table(ok(d, "settings", "get", "ServiceParam"))[0]["VALUE"] == "7"
    assert "out of range" in refused(d, "settings", "set", "ServiceParam", "9", "--dry-run")

    # refused by the server: exit 1 with its message (the allowed range, the allowed values)
    err = refused(d, "settings", "set", "ServiceParam", "12")
    assert "INVALID_ARGUMENT" in err and "1 to 8" in err
    assert "0.5" in refused(d, "settings", "set", "Rate", "3.5")
    assert "medium" in refused(d, "settings", "set", "Preset", "ultra")
    assert "FAILED_PRECONDITION" in refused(d, "settings", "set", "Fixed", "4")
    err = refused(d, "settings", "set", "Nope", "1")
    assert "NOT_FOUND" in err and "Nope" in err
    assert "NOT_FOUND" in refused(d, "settings", "get", "Nope")
    # a value that is not of the setting's type: exit 2, nothing sent
    for sid, text in [("ServiceParam", "6.5"), ("ServiceParam", "abc"), ("ServiceParam", ""),
                      ("Rate", "fast"), ("Rate", "nan"), ("Fast", "maybe")]:
        err = refused(d, "settings", "set", sid, text, code=2)
        assert sid in err and f"'{text}'" in err
    assert table(ok(d, "settings", "get", "ServiceParam"))[0]["VALUE"] == "7"
    audit = json.loads(ok(d, "audit", "--setting", "ServiceParam", "--json"))
    assert all(e["newValue"] != {"doubleValue": 6.5} for e in audit["entries"])


def _popen(d, *args, token=OP):
    return subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env_for(d.target, token))


def _lines(proc, n, timeout=15):
    """Reads n lines of proc's stdout within timeout."""
    got = []
    done = threading.Event()

    def read():
        for _ in range(n):
            line = proc.stdout.readline()
            if not line:
                break
            got.append(line)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"wanted {n} lines, got {got}"
    assert len(got) == n, got
    return got


def test_settings_watch_stops_cleanly_on_a_signal(d):
    for n, sig in enumerate([signal.SIGINT, signal.SIGTERM]):
        w = _popen(d, "settings", "watch", "ServiceParam", "Rate", "--json")
        first = [as_msg(l, control_pb2.SettingValue) for l in _lines(w, 2)]  # current values
        assert {v.id: v for v in first}["ServiceParam"].value.int_value == 4 + n
        ok(d, "settings", "set", "ServiceParam", str(5 + n))
        (v,) = [as_msg(l, control_pb2.SettingValue) for l in _lines(w, 1)]
        assert v.id == "ServiceParam" and v.value.int_value == 5 + n and v.changed_by == "ops"
        w.send_signal(sig)
        assert w.wait(10) == 0, w.stderr.read()

    # human output: the header once, a row per value; --count stops by itself
    out = ok(d, "settings", "watch", "ServiceParam", "--count", "1")
    rows = table(out)
    assert len(rows) == 1 and rows[0]["ID"] == "ServiceParam" and rows[0]["VALUE"] == "6"
    assert "NOT_FOUND" in refused(d, "settings", "watch", "Nope")


def test_slos_watch(d):
    w = _popen(d, "slos", "watch", "ServiceSLO", "--json")
    (first,) = [as_msg(l, slo_pb2.SloStatus) for l in _lines(w, 1)]
    assert first.slo.id == "ServiceSLO"
    publish(d, "fps_series", [40.0, 40.0])  # the value changes: a new status, not fulfilled
    deadline = time.time() + 10
    while True:
        (s,) = [as_msg(l, slo_pb2.SloStatus) for l in _lines(w, 1)]
        if s.has_value and s.value == 40:
            break
        assert time.time() < deadline
    assert not s.fulfilled
    w.send_signal(signal.SIGINT)
    assert w.wait(10) == 0, w.stderr.read()

    h = _popen(d, "slos", "watch", "--interval", "1s")
    out = _lines(h, 3)  # header + both SLOs
    assert out[0].split()[:2] == ["ID", "VALUE"]
    assert {l.split()[0] for l in out[1:]} == {"ServiceSLO", "Latency"}
    h.send_signal(signal.SIGINT)
    assert h.wait(10) == 0
    assert refused(d, "slos", "watch", "--interval", "soon", code=2)


def test_carbon(d):
    rows = table(ok(d, "carbon", "intensity", "--zone", "AT", "--time", "2022-01-01T05:00:00Z"))
    assert rows == [{"ZONE": "AT", "TIME": "2022-01-01T05:00:00Z", "PERIOD": "hourly",
                     "GCO2EQ/KWH": "105", "PROVIDER": "bundled", "BASIS": "lifecycle",
                     "ESTIMATED": "no", "NOTE": "-"}]
    (i,) = json_lines(ok(d, "carbon", "intensity", "--time", "2022-03-02T06:30:00+01:00",
                         "--json"), carbon_pb2.Intensity)  # default zone AT; 05:30 UTC
    assert i.zone == "AT" and i.gco2eq_per_kwh == 105 and i.time.seconds == 1646197200
    raw = json.loads(ok(d, "carbon", "intensity", "--time", "2022-01-01", "--granularity", "daily",
                        "--json"))
    assert raw["granularity"] == "GRANULARITY_DAILY" and raw["gco2eqPerKwh"] == 111.5
    assert raw["time"] == "2022-01-01T00:00:00Z" and raw["duration"] == "86400s"

    (src,) = json_lines(ok(d, "carbon", "sources", "--json"), carbon_pb2.ListSourcesResponse)
    f = {s.source: s.gco2eq_per_kwh for s in src.sources}
    srows = {r["SOURCE"]: r for r in table(ok(d, "carbon", "sources"))}
    assert float(srows["gas"]["GCO2EQ/KWH"]) == f["gas"]
    (m,) = json_lines(ok(d, "carbon", "mix", "solar=60", "gas=40", "--json"), carbon_pb2.Intensity)
    assert m.gco2eq_per_kwh == pytest.approx(0.6 * f["solar"] + 0.4 * f["gas"])
    rows = table(ok(d, "carbon", "mix", "solar=0.6,gas=0.4"))  # fractions, comma-separated
    assert float(rows[0]["GCO2EQ/KWH"]) == pytest.approx(m.gco2eq_per_kwh)
    err = refused(d, "carbon", "mix", "solar=50", "fusion=50")
    assert "INVALID_ARGUMENT" in err and "gas" in err  # lists the known sources
    refused(d, "carbon", "mix", "solar", code=2)
    refused(d, "carbon", "mix", "solar=lots", code=2)

    (z,) = json_lines(ok(d, "carbon", "zones", "--json"), carbon_pb2.ListZonesResponse)
    assert "AT" in [x.zone for x in z.zones]
    zrows = table(ok(d, "carbon", "zones", "A"))
    assert zrows and all(r["ZONE"].startswith("A") for r in zrows)
    assert zrows[0]["FIRST"] == "2022-01-01T00:00:00Z" and "hourly" in zrows[0]["GRANULARITIES"]

    kv = keyvalues(ok(d, "carbon", "footprint", "--energy", "1000", "--zone", "AT", "--time",
                      "2022-01-01T05:00:00Z"))
    assert kv["footprint"] == "105 gCO2eq" and kv["energy"] == "1000 Wh"
    assert kv["intensity"] == "105 gCO2eq/kWh" and kv["zone"] == "AT"
    (fp,) = json_lines(ok(d, "carbon", "footprint", "--power", "100", "--duration", "1h30m",
                          "--time", "2022-01-01T05:00:00Z", "--embodied", "5", "--units", "10",
                          "--unit", "request", "--json"), carbon_pb2.Footprint)
    assert fp.energy_wh == 150 and fp.gco2eq == pytest.approx(15.75)
    assert fp.has_sci and fp.sci_gco2eq_per_unit == pytest.approx((15.75 + 5) / 10)
    kv = keyvalues(ok(d, "carbon", "footprint", "--energy", "1000", "--mix", "gas=1"))
    assert kv["footprint"] == f"{f['gas']:g} gCO2eq"

    # bad input
    assert "NOT_FOUND" in refused(d, "carbon", "intensity", "--zone", "XX",
                                  "--time", "2022-01-01T00:00:00Z")
    for bad in [[], ["--energy", "1", "--power", "2", "--duration", "1h"], ["--power", "5"],
                ["--energy", "-x"], ["--energy", "1", "--mix", "gas=1", "--zone", "AT"],
                ["--energy", "1", "--embodied", "3"], ["--energy", "1", "--factor-set", "x"],
                ["--power", "5", "--duration", "forever"]]:
        refused(d, "carbon", "footprint", *bad, code=2)
    assert "weekly" in refused(d, "carbon", "intensity", "--granularity", "weekly", code=2)
    assert "not a time" in refused(d, "carbon", "intensity", "--time", "yesterday", code=2)


def _observe_session(d, name):
    """Opens an OBSERVE agent session; returns a function that ends it."""
    stop = threading.Event()

    def messages():
        yield agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            agent_name=name, mode=agent_pb2.AGENT_MODE_OBSERVE, slo_ids=["ServiceSLO"]))
        stop.wait(30)
        yield agent_pb2.AgentMessage(goodbye=agent_pb2.Goodbye(reason="test over"))

    call = agent_pb2_grpc.AgentServiceStub(d.channel(AGENT)).Session(messages(), timeout=30)
    first = next(call)
    assert first.HasField("welcome")

    def end():
        stop.set()
        for _ in call:
            pass
    return end


def test_admin_status_audit_agents_reload(d):
    kv = keyvalues(ok(d, "status"))
    assert kv["version"] and "generation 1" in kv["config"] and kv["services"]
    (st,) = json_lines(ok(d, "status", "--json"), admin_pb2.GetStatusResponse)
    assert st.config_generation == 1 and st.counts["auth_tokens"] == 3
    raw = json.loads(ok(d, "status", "--json"))
    assert raw["counts"]["auth_tokens"] == "3" and raw["uptime"].endswith("s")  # map, Duration

    ok(d, "settings", "set", "ServiceParam", "5")
    refused(d, "settings", "set", "ServiceParam", "50")
    ok(d, "settings", "set", "Rate", "2", token=AGENT)
    rows = table(ok(d, "audit"))
    assert [(r["CALLER"], r["SETTING"], r["OLD"], r["NEW"], r["OUTCOME"]) for r in rows] == [
        ("ops", "ServiceParam", "4", "5", "applied"),
        ("ops", "ServiceParam", "-", "50", "rejected"),
        ("bot", "Rate", "1", "2", "applied")]
    assert "1 to 8" in rows[1]["REASON"]
    (a,) = json_lines(ok(d, "audit", "--setting", "ServiceParam", "--limit", "1", "--json"),
                      admin_pb2.GetAuditLogResponse)
    assert len(a.entries) == 1 and a.entries[0].new_value.int_value == 5
    assert a.entries[0].outcome == admin_pb2.AUDIT_OUTCOME_APPLIED
    assert len(table(ok(d, "audit", "--since", "-1h", "--until", "now"))) == 3
    assert table(ok(d, "audit", "--since", "2099-01-01")) == []
    assert "INVALID_ARGUMENT" in refused(d, "audit", "--limit", "20000")
    refused(d, "audit", "--since", "last week", code=2)
    refused(d, "audit", "--limit", "many", code=2)

    assert table(ok(d, "agents", "list")) == []
    end = _observe_session(d, "watcher-1")
    try:
        rows = table(ok(d, "agents", "list"))
        assert len(rows) == 1 and rows[0]["AGENT"] == "watcher-1" and rows[0]["MODE"] == "observe"
        assert rows[0]["LEASES"] == "-"
        (s,) = json_lines(ok(d, "agents", "list", "--json"), admin_pb2.ListAgentSessionsResponse)
        assert s.sessions[0].agent_name == "watcher-1"
        assert s.sessions[0].mode == agent_pb2.AGENT_MODE_OBSERVE
    finally:
        end()

    out = ok(d, "reload")
    assert "generation 2" in out
    good = d.config_path.read_text()
    d.write_config(good.replace("type: double", "type: doubble"))
    p = run(d, "reload")
    assert p.returncode == 1 and "casca.yaml:" in p.stderr and "doubble" in p.stderr
    assert "nothing changed" in p.stderr
    p = run(d, "reload", "--json")
    assert p.returncode == 1
    (r,) = json_lines(p.stdout, admin_pb2.ReloadResponse)
    assert not r.ok and r.generation == 2 and r.errors
    d.write_config(good)
    (r,) = json_lines(ok(d, "reload", "--json"), admin_pb2.ReloadResponse)
    assert r.ok and r.generation == 3


def test_tokens_and_roles(d):
    # the viewer reads but may not change or administer; no token at all is unauthenticated
    ok(d, "settings", "list", token=VIEW)
    assert "PERMISSION_DENIED" in refused(d, "settings", "set", "ServiceParam", "5", token=VIEW)
    assert "PERMISSION_DENIED" in refused(d, "status", token=AGENT)
    assert "UNAUTHENTICATED" in refused(d, "slos", "list", token=None)
    assert "UNAUTHENTICATED" in refused(d, "slos", "list", token="wrong-0123456789abcdef")
    # --token wins over $CASCA_TOKEN
    ok(d, "status", "--token", OP, token=VIEW)
    # --target wins over $CASCA_TARGET
    ok(d, "--target", d.target, "status", target="127.0.0.1:1")


COMMANDS = [["slos", "list"], ["slos", "get"], ["slos", "watch"], ["settings", "list"],
            ["settings", "get"], ["settings", "set"], ["settings", "watch"],
            ["carbon", "intensity"], ["carbon", "mix"], ["carbon", "sources"],
            ["carbon", "zones"], ["carbon", "footprint"], ["agents", "list"], ["audit"],
            ["reload"], ["status"], ["report"]]


def test_usage_help_and_bad_flags():
    def cli(*args):
        return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30,
                              env=env_for("127.0.0.1:1", None))

    top = cli("--help")
    assert top.returncode == 0
    for c in COMMANDS:
        assert " ".join(c) in top.stdout
        h = cli(*c, "--help")
        assert h.returncode == 0 and h.stdout.startswith("usage: casca " + " ".join(c)), (c, h)
    assert "Exit codes" in top.stdout and "3  no answer" in top.stdout
    assert "--dry-run" in cli("settings", "set", "--help").stdout
    assert cli("settings", "--help").returncode == 0

    for args in [[], ["bogus"], ["settings"], ["settings", "frob"], ["settings", "set", "X"],
                 ["settings", "set", "X", "1", "2"], ["settings", "list", "--bogus"],
                 ["slos", "list", "--zone", "AT"], ["status", "extra"], ["--json"],
                 ["status", "--timeout", "abc"], ["status", "--timeout", "0"],
                 ["status", "--target", ""], ["status", "--json=yes"], ["status", "-x"],
                 ["settings", "watch", "--count", "0"], ["audit", "--limit"],
                 ["status", "--ca", "/nonexistent/ca.pem"]]:
        p = cli(*args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.strip() and not p.stdout, args


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_server_down_or_mute_exits_3(tmp_path):
    def cli(target, *args):
        return subprocess.run([CLI, "--target", target, *args], capture_output=True, text=True,
                              timeout=30, env=env_for("127.0.0.1:1", None))

    down = f"127.0.0.1:{_closed_port()}"
    for args in [["slos", "list"], ["settings", "set", "ServiceParam", "5"], ["status"],
                 ["settings", "watch"], ["slos", "watch", "--json"], ["carbon", "zones"]]:
        p = cli(down, *args)
        assert p.returncode == 3, (args, p.returncode, p.stderr)
        assert "UNAVAILABLE" in p.stderr and down in p.stderr and not p.stdout

    # a server that accepts connections and never answers: the deadline ends the call
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    target = "127.0.0.1:%d" % mute.getsockname()[1]
    try:
        t0 = time.time()
        p = cli(target, "slos", "list", "--timeout", "500")
        assert p.returncode == 3, p.stderr
        assert "DEADLINE_EXCEEDED" in p.stderr or "UNAVAILABLE" in p.stderr
        assert time.time() - t0 < (10 if SANITIZED else 5)
    finally:
        mute.close()


def test_server_stopping_ends_a_watch_with_3(make_daemon, tmp_path):
    d = make_daemon(config(carbon_bundle(tmp_path)), env=TOKENS)
    w = _popen(d, "settings", "watch", "ServiceParam")
    _lines(w, 2)  # header and the current value
    assert d.stop() == 0
    assert w.wait(15) == 3, w.stderr.read()


def test_tls_with_a_ca_file(make_daemon, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "server.key"), "-out", str(tmp_path / "server.crt")],
                   check=True, capture_output=True)
    d = make_daemon("server:\n  tls: {cert: server.crt, key: server.key}\n", start=False)
    d.proc = subprocess.Popen(d.args, stdout=open(d.log_path, "w"), stderr=subprocess.STDOUT)
    d.log = open(os.devnull, "w")
    # an address, not a name: grpc's c-ares resolver leaks 10 bytes per process (LSan) for names
    target = d.target

    def cli(*args):
        return subprocess.run([CLI, "--target", target, *args], capture_output=True, text=True,
                              timeout=30, env=env_for("127.0.0.1:1", None))

    ca = str(tmp_path / "server.crt")
    p = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(cli("--ca", ca, "status")),
                 timeout=20, what="cascad serving TLS")
    assert keyvalues(p.stdout)["version"]
    assert table(cli("--ca", ca, "settings", "list").stdout) == []
    # the system's roots do not know the self-signed certificate; plaintext meets a TLS port
    for args in (["--tls", "status"], ["status"]):
        p = cli(*args, "--timeout", "2000")
        assert p.returncode == 3 and "UNAVAILABLE" in p.stderr, (args, p.stderr)
