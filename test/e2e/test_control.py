"""ServiceControl through the real daemon against real services on loopback: an HTTP JSON server
shaped like Jellyfin's /System/Configuration/encoding, a YAML config file plus a service process
reloading on SIGHUP, exec scripts. Every bad input of the issue, privacy over every reply byte,
WatchSettings, reload keeping connections, and the audit log surviving kill -9."""
import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc, common_pb2, control_pb2, control_pb2_grpc

OPERATOR = "op-" + "0123456789abcdef0123"
AGENT = "agent-" + "0123456789abcdef0123"
VIEWER = "viewer-" + "0123456789abcdef0123"
JF_TOKEN = "jf-secret-" + "feedface0123"
ENV = {"T_OPERATOR": OPERATOR, "T_AGENT": AGENT, "T_VIEWER": VIEWER, "JF_TOKEN": JF_TOKEN}
ENCODING_PATH = "/System/Configuration/encoding"


class Jellyfin:
    """A stand-in for Jellyfin's encoding configuration endpoint: GET returns the object, POST
    replaces it (204). mode: ok | 500 | garbage | hang. Counts requests and TCP connections."""

    def __init__(self):
        self.doc = {"EncodingThreadCount": 4, "EncoderPreset": "fast", "DownMixAudioBoost": 2.0,
                    "HardwareAccelerationType": "none", "MaxMuxingQueueSize": 2048,
                    "EnableTonemapping": False}
        self.mode = "ok"
        self.posts = 0
        self.gets = 0
        self.connections = set()
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _common(self):
                outer.connections.add(self.client_address)
                if self.headers.get("X-Emby-Token") != JF_TOKEN:
                    self._send(401, b'{"error":"token"}')
                    return False
                if outer.mode == "hang":
                    outer.release.wait(30)
                    return False
                if outer.mode == "500":
                    self._send(500, b'{"error":"internal"}')
                    return False
                if self.path != ENCODING_PATH:
                    self._send(404)
                    return False
                return True

            def do_GET(self):
                with outer.lock:
                    outer.gets += 1
                if not self._common():
                    return
                if outer.mode == "garbage":
                    self._send(200, b"<html>not json</html>", "text/html")
                    return
                with outer.lock:
                    body = json.dumps(outer.doc).encode()
                self._send(200, body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                if not self._common():
                    return
                try:
                    doc = json.loads(body)
                    assert isinstance(doc, dict) and set(doc) == set(outer.doc)
                except Exception:
                    self._send(400, b'{"error":"bad body"}')
                    return
                with outer.lock:
                    outer.posts += 1
                    outer.doc = doc
                self._send(204)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{ENCODING_PATH}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


SERVICE = r"""
import os, signal, sys, time
cfg, log, pidf = sys.argv[1:4]
def reload(*_):
    with open(log, "a") as f:
        f.write(open(cfg).read().split("threads:")[1].split()[0] + "\n")
signal.signal(signal.SIGHUP, reload)
open(pidf + ".tmp", "w").write(str(os.getpid()))
os.rename(pidf + ".tmp", pidf)
while True:
    time.sleep(1)
"""


@pytest.fixture
def jf():
    s = Jellyfin()
    yield s
    s.close()


@pytest.fixture
def world(tmp_path, jf):
    """The managed services: the HTTP server, a YAML-configured process that reloads on HUP, exec
    scripts; and the casca config that declares settings on them."""
    svc_cfg = tmp_path / "svc" / "encoder.yaml"
    svc_cfg.parent.mkdir()
    svc_cfg.write_text("# encoder\nencoding:\n  threads: 2   # per job\n  preset: fast\n")
    reload_log = tmp_path / "svc" / "reloads.log"
    pid_file = tmp_path / "svc" / "svc.pid"
    proc = subprocess.Popen([sys.executable, "-c", SERVICE, str(svc_cfg), str(reload_log),
                             str(pid_file)])
    for _ in range(100):
        if pid_file.exists():
            break
        time.sleep(0.05)
    value_file = tmp_path / "svc" / "gop.txt"
    value_file.write_text("48\n")
    get_sh = tmp_path / "svc" / "get-gop.sh"
    set_sh = tmp_path / "svc" / "set-gop.sh"
    get_sh.write_text(f"#!/bin/sh\ncat {value_file}\n")
    set_sh.write_text(f"#!/bin/sh\necho \"$1\" > {value_file}\n")
    for p in (get_sh, set_sh):
        p.chmod(0o755)
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    http = (f'url: "{jf.url}"', 'write: {method: POST, body: read_modify_write}',
            'headers: {X-Emby-Token: "${JF_TOKEN}"}')

    def hj(pointer, url=None):
        u = f'url: "{url}"' if url else http[0]
        return f"{{http_json: {{{u}, pointer: {pointer}, {http[1]}, {http[2]}}}}}"

    config = f"""\
server: {{log_level: debug}}
store: {{sync: every_commit}}
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OPERATOR}}
    - {{name: gds, role: agent, token_env: T_AGENT}}
    - {{name: watcher, role: viewer, token_env: T_VIEWER}}
settings:
  - id: ServiceParam
    description: parallel encoding threads
    unit: threads
    type: int
    range: {{min: 1, max: 8}}
    step: 1
    controller: {hj("/EncodingThreadCount")}
  - id: B
    type: enum
    allowed: [veryfast, fast, medium]
    controller: {hj("/EncoderPreset")}
  - id: C
    type: double
    range: {{min: 0.5, max: 3}}
    step: 0.5
    controller: {hj("/DownMixAudioBoost")}
  - id: D
    type: string
    read_only: true
    controller: {hj("/HardwareAccelerationType")}
  - id: E
    type: int
    range: {{min: 256, max: 8192}}
    max_step: 1024
    cooldown: 1h
    controller: {hj("/MaxMuxingQueueSize")}
  - id: Down
    type: int
    controller: {hj("/EncodingThreadCount", f"http://127.0.0.1:{dead_port}/x")}
settings_files: [more-settings.yaml]
"""
    (tmp_path / "more-settings.yaml").write_text(f"""\
settings:
  - id: F
    type: int
    range: {{min: 1, max: 16}}
    controller:
      file:
        path: svc/encoder.yaml
        key: /encoding/threads
        reload: {{signal: HUP, pid_file: svc/svc.pid}}
  - id: G
    type: int
    range: {{min: 1, max: 250}}
    controller: {{exec: {{get: [{get_sh}], set: [{set_sh}], timeout: 2s}}}}
""")
    private = [jf.url, f"127.0.0.1:{jf.port}", f":{dead_port}", ENCODING_PATH, "Configuration",
               "EncodingThreadCount", "EncoderPreset", "MaxMuxingQueueSize", JF_TOKEN, "X-Emby",
               str(tmp_path), "encoder.yaml", "svc.pid", "get-gop", "set-gop", "http://",
               "/encoding/threads", "http_json", "exec", "memory"]
    w = type("World", (), {})()
    w.config, w.jf, w.private, w.svc_cfg, w.reload_log, w.value_file = (
        config, jf, private, svc_cfg, reload_log, value_file)
    yield w
    proc.kill()
    proc.wait()


class Recorder:
    """Calls ServiceControl and keeps every byte of every reply and error, to check privacy."""

    def __init__(self, channel):
        self.stub = control_pb2_grpc.ServiceControlStub(channel)
        self.seen = []

    def __call__(self, method, req, timeout=5):
        try:
            resp = getattr(self.stub, method)(req, timeout=timeout)
            self.seen.append(resp.SerializeToString())
            self.seen.append(str(resp).encode())
            return resp
        except grpc.RpcError as e:
            self.seen.append((e.details() or "").encode())
            raise

    def fails(self, method, req, code, *words, timeout=5):
        with pytest.raises(grpc.RpcError) as e:
            self(method, req, timeout)
        assert e.value.code() == code, e.value.details()
        for w in words:
            assert w in e.value.details(), e.value.details()
        return e.value.details()

    def assert_private(self, private):
        blob = b"\n".join(self.seen)
        for p in private:
            assert p.encode() not in blob, f"reply leaked {p!r}"


def iv(x):
    return common_pb2.Value(int_value=x)


def set_req(id_, value, dry_run=False):
    return control_pb2.SetSettingRequest(id=id_, value=value, dry_run=dry_run)


def audit_log(d, **kw):
    stub = admin_pb2_grpc.AdminServiceStub(d.channel(OPERATOR))
    return list(stub.GetAuditLog(admin_pb2.GetAuditLogRequest(**kw), timeout=5).entries)


def test_list_get_set_through_http_json(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    settings = agent("ListSettings", control_pb2.ListSettingsRequest()).settings
    assert [s.id for s in settings] == ["ServiceParam", "B", "C", "D", "E", "Down", "F", "G"]
    sp = settings[0]
    assert (sp.type, sp.range.min, sp.range.max, sp.step, sp.unit, sp.description) == (
        common_pb2.VALUE_TYPE_INT, 1, 8, 1, "threads", "parallel encoding threads")
    assert [v.string_value for v in settings[1].allowed] == ["veryfast", "fast", "medium"]
    assert settings[3].read_only
    only = agent("ListSettings", control_pb2.ListSettingsRequest(ids=["C"])).settings
    assert [s.id for s in only] == ["C"]

    got = agent("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam"))
    assert got.value.int_value == 4 and got.updated_at.seconds > 0
    r = agent("SetSetting", set_req("ServiceParam", iv(6)))
    assert r.value.int_value == 6 and r.changed_by == "gds"
    assert world.jf.doc["EncodingThreadCount"] == 6
    assert world.jf.doc["EncoderPreset"] == "fast"  # the rest of the document is kept
    assert agent("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam")).value.int_value == 6
    r = agent("SetSetting", set_req("B", common_pb2.Value(string_value="medium")))
    assert r.value.string_value == "medium" and world.jf.doc["EncoderPreset"] == "medium"
    r = agent("SetSetting", set_req("C", common_pb2.Value(double_value=1.5)))
    assert r.value.double_value == 1.5 and world.jf.doc["DownMixAudioBoost"] == 1.5
    # dry run: validated, echoed, nothing sent to the service
    posts = world.jf.posts
    r = agent("SetSetting", set_req("ServiceParam", iv(2), dry_run=True))
    assert r.value.int_value == 2
    assert world.jf.posts == posts and world.jf.doc["EncodingThreadCount"] == 6
    agent.assert_private(world.private)
    # keep-alive: one connection per setting's controller, reused by every later call
    assert len(world.jf.connections) == 3
    for _ in range(5):
        agent("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam"))
        agent("SetSetting", set_req("C", common_pb2.Value(double_value=2.5)))
    assert len(world.jf.connections) == 3

    entries = audit_log(d)
    applied = [e for e in entries if e.outcome == admin_pb2.AUDIT_OUTCOME_APPLIED]
    first = applied[0]
    assert (first.setting_id, first.caller, first.old_value.int_value, first.new_value.int_value) \
        == ("ServiceParam", "gds", 4, 6)
    assert any(e.outcome == admin_pb2.AUDIT_OUTCOME_DRY_RUN for e in entries)


def test_every_bad_input_is_refused_and_changes_nothing(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    before = dict(world.jf.doc)
    INVALID, PRE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    agent.fails("SetSetting", set_req("ServiceParam", common_pb2.Value(string_value="6")), INVALID,
                "'ServiceParam'", "int_value")
    agent.fails("SetSetting", set_req("ServiceParam", common_pb2.Value()), INVALID, "no value")
    agent.fails("SetSetting", set_req("ServiceParam", iv(9)), INVALID, "out of range",
                "allowed 1 to 8")
    agent.fails("SetSetting", set_req("C", common_pb2.Value(double_value=1.2)), INVALID,
                "off-step", "1 or 1.5")
    agent.fails("SetSetting", set_req("B", common_pb2.Value(string_value="ultrafast")), INVALID,
                "not allowed", '"veryfast", "fast", "medium"')
    agent.fails("SetSetting", set_req("D", common_pb2.Value(string_value="vaapi")), PRE,
                "read-only")
    agent.fails("SetSetting", set_req("nope", iv(1)), grpc.StatusCode.NOT_FOUND, "'nope'")
    agent.fails("GetSetting", control_pb2.GetSettingRequest(id="nope"), grpc.StatusCode.NOT_FOUND)
    agent.fails("ListSettings", control_pb2.ListSettingsRequest(ids=["nope"]),
                grpc.StatusCode.NOT_FOUND)
    # safety rails: the largest step, then the cooldown after a change
    agent.fails("SetSetting", set_req("E", iv(4096)), PRE, "at most 1024",
                "between 1024 and 3072")
    assert agent("SetSetting", set_req("E", iv(3072))).value.int_value == 3072
    before["MaxMuxingQueueSize"] = 3072
    msg = agent.fails("SetSetting", set_req("E", iv(2048)), PRE, "cooldown", "next change is "
                      "allowed in")
    assert "3600" in msg or "3599" in msg
    assert world.jf.doc == before

    # the service fails in every way; each time nothing changes
    for mode, code in (("500", grpc.StatusCode.UNAVAILABLE),
                       ("garbage", grpc.StatusCode.UNAVAILABLE)):
        world.jf.mode = mode
        agent.fails("SetSetting", set_req("ServiceParam", iv(5)), code, "'ServiceParam'",
                    "unavailable")
        agent.fails("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam"), code,
                    "'ServiceParam'")
    world.jf.mode = "hang"
    t0 = time.monotonic()
    agent.fails("SetSetting", set_req("ServiceParam", iv(5)), grpc.StatusCode.DEADLINE_EXCEEDED,
                timeout=1.5)
    assert time.monotonic() - t0 < 5
    world.jf.mode = "ok"
    agent.fails("SetSetting", set_req("Down", iv(5)), grpc.StatusCode.UNAVAILABLE, "'Down'",
                "not running")
    assert world.jf.doc == before
    assert world.jf.posts == 1  # only the accepted change of E
    # the daemon still answers, and the server's handler thread blocked by the hang is released
    world.jf.release.set()
    assert agent("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam")).value.int_value == 4
    agent.assert_private(world.private)

    rejected = [e for e in audit_log(d) if e.outcome == admin_pb2.AUDIT_OUTCOME_REJECTED]
    assert len(rejected) >= 12
    assert all(e.caller == "gds" and e.reason for e in rejected)
    assert not any(p in e.reason for e in rejected for p in world.private)


def test_roles(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    viewer = Recorder(d.channel(VIEWER))
    assert viewer("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam")).value.int_value == 4
    viewer.fails("SetSetting", set_req("ServiceParam", iv(5)), grpc.StatusCode.PERMISSION_DENIED)
    viewer.assert_private(world.private)
    assert world.jf.doc["EncodingThreadCount"] == 4
    op = control_pb2_grpc.ServiceControlStub(d.channel(OPERATOR))
    assert op.SetSetting(set_req("ServiceParam", iv(3)), timeout=5).changed_by == "ops"


def test_file_setting_rewrites_the_file_and_signals_the_service(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    assert agent("GetSetting", control_pb2.GetSettingRequest(id="F")).value.int_value == 2
    assert agent("SetSetting", set_req("F", iv(12))).value.int_value == 12
    assert world.svc_cfg.read_text() == "# encoder\nencoding:\n  threads: 12   # per job\n  preset: fast\n"
    for _ in range(100):  # the service re-read its file on SIGHUP
        if world.reload_log.exists() and world.reload_log.read_text() == "12\n":
            break
        time.sleep(0.05)
    assert world.reload_log.read_text() == "12\n"
    agent.fails("SetSetting", set_req("F", iv(17)), grpc.StatusCode.INVALID_ARGUMENT, "'F'")
    # the file disappears: UNAVAILABLE naming only the alias
    world.svc_cfg.rename(world.svc_cfg.with_suffix(".bak"))
    agent.fails("SetSetting", set_req("F", iv(3)), grpc.StatusCode.UNAVAILABLE, "'F'")
    assert not world.svc_cfg.exists()
    agent.assert_private(world.private)


def test_exec_setting(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    assert agent("GetSetting", control_pb2.GetSettingRequest(id="G")).value.int_value == 48
    assert agent("SetSetting", set_req("G", iv(120))).value.int_value == 120
    assert world.value_file.read_text() == "120\n"
    world.value_file.write_text("not a number\n")
    agent.fails("GetSetting", control_pb2.GetSettingRequest(id="G"), grpc.StatusCode.UNAVAILABLE,
                "'G'")
    agent.assert_private(world.private)


def test_watch_settings(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    stub = control_pb2_grpc.ServiceControlStub(d.channel(VIEWER))
    stream = stub.WatchSettings(control_pb2.WatchSettingsRequest(ids=["ServiceParam", "B"]),
                                timeout=20)
    first = [next(stream), next(stream)]
    assert {(v.id, v.value.WhichOneof("kind")) for v in first} == {
        ("ServiceParam", "int_value"), ("B", "string_value")}
    agent("SetSetting", set_req("ServiceParam", iv(7)))
    v = next(stream)
    assert (v.id, v.value.int_value, v.changed_by) == ("ServiceParam", 7, "gds")
    # a change made behind casca's back is seen by the next read and streamed
    world.jf.doc["EncoderPreset"] = "veryfast"
    agent("GetSetting", control_pb2.GetSettingRequest(id="B"))
    v = next(stream)
    assert (v.id, v.value.string_value) == ("B", "veryfast")
    # changes of settings not watched are not sent
    agent("SetSetting", set_req("C", common_pb2.Value(double_value=1.0)))
    agent("SetSetting", set_req("ServiceParam", iv(2)))
    assert next(stream).value.int_value == 2
    blob = b"".join(x.SerializeToString() for x in first)
    assert not any(p.encode() in blob for p in world.private)
    with pytest.raises(grpc.RpcError):
        next(stub.WatchSettings(control_pb2.WatchSettingsRequest(ids=["nope"]), timeout=5))
    stream.cancel()


def test_reload_swaps_settings_and_keeps_connections(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    agent("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam"))
    conns = set(world.jf.connections)
    d.write_config(world.config.replace("unit: threads", "unit: workers").replace(
        "settings_files:", "  - {id: H, type: int, controller: {memory: {value: 1}}}\n"
        "settings_files:"))
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OPERATOR))
    assert admin.Reload(admin_pb2.ReloadRequest(), timeout=10).ok
    settings = agent("ListSettings", control_pb2.ListSettingsRequest()).settings
    assert settings[0].unit == "workers" and [s.id for s in settings][-3:] == ["H", "F", "G"]
    agent("GetSetting", control_pb2.GetSettingRequest(id="ServiceParam"))
    assert world.jf.connections == conns  # ServiceParam's private details did not change
    # a bad settings file changes nothing and names file:line:col
    (d.tmp / "more-settings.yaml").write_text("settings:\n  - id: F\n    type: nope\n")
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert not r.ok and any("more-settings.yaml:3:11:" in e for e in r.errors), r.errors
    assert "H" in [s.id for s in agent("ListSettings", control_pb2.ListSettingsRequest()).settings]


def test_audit_log_survives_kill_9(make_daemon, world):
    d = make_daemon(world.config, env=ENV)
    agent = Recorder(d.channel(AGENT))
    for v in (2, 3, 5):
        agent("SetSetting", set_req("ServiceParam", iv(v)))
    agent.fails("SetSetting", set_req("ServiceParam", iv(99)), grpc.StatusCode.INVALID_ARGUMENT)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.log.close()
    d2 = make_daemon(world.config, env=ENV)
    entries = [e for e in audit_log(d2) if e.setting_id == "ServiceParam"]
    assert [(e.outcome, e.new_value.int_value) for e in entries] == [
        (admin_pb2.AUDIT_OUTCOME_APPLIED, 2), (admin_pb2.AUDIT_OUTCOME_APPLIED, 3),
        (admin_pb2.AUDIT_OUTCOME_APPLIED, 5), (admin_pb2.AUDIT_OUTCOME_REJECTED, 99)]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert len(audit_log(d2, setting_id="ServiceParam")) == 4
