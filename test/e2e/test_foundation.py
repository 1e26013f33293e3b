"""The foundation through the real daemon: health, reflection, AdminService, reload, roles, bad
input, shutdown with a stream open, start-up errors."""
import os
import signal
import subprocess
import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from casca.v1 import admin_pb2, admin_pb2_grpc, slo_pb2, slo_pb2_grpc
from grpc.health.v1 import health_pb2, health_pb2_grpc
from grpc.reflection.v1 import reflection_pb2 as refl_v1
from grpc.reflection.v1 import reflection_pb2_grpc as refl_v1_grpc
from grpc.reflection.v1alpha import reflection_pb2 as refl_v1a
from grpc.reflection.v1alpha import reflection_pb2_grpc as refl_v1a_grpc

from conftest import CASCAD

CASCA_SERVICES = {f"casca.v1.{s}" for s in (
    "SloService", "ServiceControl", "CarbonService", "TelemetryService", "AgentService",
    "AdminService")}

OPERATOR = "op-" + "0123456789abcdef0123"
AGENT = "agent-" + "0123456789abcdef0123"
TOKENS_CONFIG = """\
auth:
  tokens:
    - {name: ops, role: operator, token_env: T_OPERATOR}
    - {name: gds, role: agent, token_env: T_AGENT}
"""
TOKENS_ENV = {"T_OPERATOR": OPERATOR, "T_AGENT": AGENT}


def raw_call(channel, path, body, timeout=5):
    """A unary call with raw bytes both ways, for bodies no stub would send."""
    call = channel.unary_unary(path, request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    return call(body, timeout=timeout)


def status(daemon, token=None):
    return admin_pb2_grpc.AdminServiceStub(daemon.channel(token)).GetStatus(
        admin_pb2.GetStatusRequest(), timeout=5)


# ---- health ----

def test_health_check_and_unknown_service(daemon):
    stub = health_pb2_grpc.HealthStub(daemon.channel())
    for name in ("", "casca.v1.AdminService", "grpc.health.v1.Health"):
        r = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as e:
        stub.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no.Such" in e.value.details()


def test_health_watch_sends_current_status(daemon):
    stub = health_pb2_grpc.HealthStub(daemon.channel())
    stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
    assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    stream.cancel()
    unknown.cancel()


# ---- reflection ----

@pytest.mark.parametrize("pb,grpc_mod", [(refl_v1, refl_v1_grpc), (refl_v1a, refl_v1a_grpc)])
def test_reflection_lists_and_describes(daemon, pb, grpc_mod):
    stub = grpc_mod.ServerReflectionStub(daemon.channel())
    reqs = [pb.ServerReflectionRequest(list_services=""),
            pb.ServerReflectionRequest(file_containing_symbol="casca.v1.AdminService"),
            pb.ServerReflectionRequest(file_containing_symbol="casca.v1.SloStatus"),
            pb.ServerReflectionRequest(file_by_filename="casca/v1/common.proto"),
            pb.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
            pb.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health.Check")]
    replies = list(stub.ServerReflectionInfo(iter(reqs), timeout=10))
    assert len(replies) == len(reqs)

    services = {s.name for s in replies[0].list_services_response.service}
    assert CASCA_SERVICES <= services
    assert {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= services

    # The files describe the service completely: a client can build its messages from them alone.
    pool = descriptor_pool.DescriptorPool()
    for raw in replies[1].file_descriptor_response.file_descriptor_proto:
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
    svc = pool.FindServiceByName("casca.v1.AdminService")
    assert {m.name for m in svc.methods} >= {"Reload", "GetStatus", "GetAuditLog"}
    status_desc = svc.FindMethodByName("GetStatus").output_type
    assert "config_generation" in status_desc.fields_by_name
    msg_class = message_factory.MessageFactory(pool).GetPrototype(status_desc)
    assert msg_class().config_generation == 0

    names = [descriptor_pb2.FileDescriptorProto.FromString(raw).name
             for raw in replies[2].file_descriptor_response.file_descriptor_proto]
    assert "casca/v1/slo.proto" in names and "google/protobuf/timestamp.proto" in names
    assert names.index("google/protobuf/timestamp.proto") < names.index("casca/v1/slo.proto")

    assert replies[3].file_descriptor_response.file_descriptor_proto
    assert replies[4].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert replies[5].file_descriptor_response.file_descriptor_proto


# ---- AdminService ----

def test_get_status(daemon):
    r = status(daemon)
    assert r.version
    assert r.config_generation == 1
    assert r.config_path.endswith("casca.yaml")
    assert r.started_at.seconds > 1_700_000_000
    assert r.store_size_bytes > 0 and r.store_map_size_bytes >= r.store_size_bytes
    assert r.calls_total >= 1 and r.calls_active >= 1
    assert r.counts["services"] >= 9


def test_reload_good_bad_and_restart_only(daemon):
    admin = admin_pb2_grpc.AdminServiceStub(daemon.channel())
    daemon.write_config("server:\n  log_level: info\nstore:\n  sync: every_commit\n")
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert r.ok and r.generation == 2 and not r.errors

    daemon.write_config("server:\n  log_level: info\n  threds: 4\n  workers: lots\n")
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert not r.ok and r.generation == 2
    text = "\n".join(r.errors)
    assert f"{daemon.config_path}:3:3: unknown key 'threds'" in text
    assert f"{daemon.config_path}:4:12: workers: 'lots'" in text
    assert status(daemon).config_generation == 2  # nothing changed, still serving

    daemon.write_config("server:\n  log_level: info\n  workers: 8\nstore:\n  sync: every_commit\n")
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert r.ok and r.generation == 3
    assert any("server.workers changed" in w for w in r.warnings)


def test_sighup_reloads(daemon):
    daemon.write_config("server:\n  log_level: warn\nstore:\n  sync: every_commit\n")
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while status(daemon).config_generation != 2:
        assert time.time() < deadline, daemon.output()
        time.sleep(0.05)


def test_unimplemented_methods_say_so(daemon):
    """A method the server does not know (a newer client, a typo) is answered UNIMPLEMENTED
    naming the path, under every casca service as anywhere else."""
    for path in ("/casca.v1.AgentService/NoSuchMethod", "/casca.v1.AdminService/NoSuchMethod"):
        with pytest.raises(grpc.RpcError) as e:
            raw_call(daemon.channel(), path, b"")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert path in e.value.details()
    assert status(daemon).version


def test_audit_log_empty_and_bad_range(daemon):
    admin = admin_pb2_grpc.AdminServiceStub(daemon.channel())
    assert list(admin.GetAuditLog(admin_pb2.GetAuditLogRequest(), timeout=5).entries) == []
    req = admin_pb2.GetAuditLogRequest()
    req.start.seconds, req.end.seconds = 2000, 1000
    with pytest.raises(grpc.RpcError) as e:
        admin.GetAuditLog(req, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- bad input: each answered with a status, and the server keeps serving ----

def test_garbage_body_is_invalid_argument(daemon):
    ch = daemon.channel()
    with pytest.raises(grpc.RpcError) as e:
        raw_call(ch, "/casca.v1.AdminService/GetAuditLog", b"\xff\xff\xff\xff\x0f")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid casca.v1.GetAuditLogRequest" in e.value.details()
    assert status(daemon).version


def test_oversized_message_is_resource_exhausted(daemon):
    ch = daemon.channel()
    with pytest.raises(grpc.RpcError) as e:
        raw_call(ch, "/casca.v1.AdminService/GetStatus", b"\x0a" + b"\x00" * (5 << 20))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status(daemon).version


def test_unknown_method_is_unimplemented(daemon):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon.channel(), "/casca.v1.NoSuch/Thing", b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/casca.v1.NoSuch/Thing" in e.value.details()
    assert status(daemon).version


def test_cancelled_streams_are_released(daemon):
    stub = health_pb2_grpc.HealthStub(daemon.channel())
    streams = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(20)]
    for s in streams:
        next(s)
    assert status(daemon).calls_active >= 21
    for s in streams:
        s.cancel()
    deadline = time.time() + 10
    while status(daemon).calls_active != 1:
        assert time.time() < deadline
        time.sleep(0.05)


def test_deadline_ends_a_stream(daemon):
    stub = health_pb2_grpc.HealthStub(daemon.channel())
    stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=0.5)
    next(stream)
    with pytest.raises(grpc.RpcError) as e:
        next(stream)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.time() + 10
    while status(daemon).calls_active != 1:
        assert time.time() < deadline
        time.sleep(0.05)


# ---- auth ----

def test_token_roles(make_daemon):
    d = make_daemon(TOKENS_CONFIG, env=TOKENS_ENV)
    with pytest.raises(grpc.RpcError) as e:
        status(d)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        status(d, token="wrong-token-wrong-token")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        status(d, token=AGENT)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "role 'agent'" in e.value.details() and "operator" in e.value.details()
    assert status(d, token=OPERATOR).version
    # health checks need no token; the agent may reach the agent-facing API
    health = health_pb2_grpc.HealthStub(d.channel())
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    assert list(slo_pb2_grpc.SloServiceStub(d.channel(AGENT)).ListSlos(
        slo_pb2.ListSlosRequest(), timeout=5).slos) == []


def test_reload_revokes_a_token(make_daemon):
    d = make_daemon(TOKENS_CONFIG, env=TOKENS_ENV)
    other = "viewer-0123456789abcdef"
    d.write_config(TOKENS_CONFIG.replace("token_env: T_AGENT", f"token: {other}"))
    r = admin_pb2_grpc.AdminServiceStub(d.channel(OPERATOR)).Reload(admin_pb2.ReloadRequest(),
                                                                     timeout=10)
    assert r.ok, r.errors
    with pytest.raises(grpc.RpcError) as e:
        slo_pb2_grpc.SloServiceStub(d.channel(AGENT)).ListSlos(slo_pb2.ListSlosRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_no_tokens_refuses_non_loopback(tmp_path):
    (tmp_path / "c.yaml").write_text("server:\n  listen: 0.0.0.0:50051\n")
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert f"{tmp_path}/c.yaml:2:11: server.listen: refusing to listen on 0.0.0.0:50051" in p.stderr


def test_tls(make_daemon, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(tmp_path / "server.key"), "-out", str(tmp_path / "server.crt")],
                   check=True, capture_output=True)
    d = make_daemon("server:\n  tls: {cert: server.crt, key: server.key}\n", start=False)
    d.proc = subprocess.Popen(d.args, stdout=open(d.log_path, "w"), stderr=subprocess.STDOUT)
    d.log = open(os.devnull, "w")
    creds = grpc.ssl_channel_credentials((tmp_path / "server.crt").read_bytes())
    ch = grpc.secure_channel(f"localhost:{d.port}", creds)
    grpc.channel_ready_future(ch).result(timeout=20)
    r = admin_pb2_grpc.AdminServiceStub(ch).GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    assert r.version
    ch.close()
    with grpc.insecure_channel(d.target) as plain:  # plaintext is refused on a TLS port
        with pytest.raises(grpc.RpcError):
            admin_pb2_grpc.AdminServiceStub(plain).GetStatus(admin_pb2.GetStatusRequest(),
                                                              timeout=2)


# ---- start-up and shutdown ----

def test_bad_config_at_start_exits_2_with_position(tmp_path):
    (tmp_path / "c.yaml").write_text("server:\n  listen: 127.0.0.1:1\n  workers: -3\n")
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert f"{tmp_path}/c.yaml:3:12: workers: '-3': expected a whole number" in p.stderr
    (tmp_path / "bad.yaml").write_text("server:\n  listen: [unclosed\n")
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "bad.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and f"{tmp_path}/bad.yaml:3:1:" in p.stderr
    p = subprocess.run([CASCAD, "--config", str(tmp_path / "missing.yaml")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and "cannot open" in p.stderr


def test_port_in_use_exits_1(daemon, tmp_path):
    p = subprocess.run([CASCAD, "--config", str(daemon.config_path), "--listen", daemon.target,
                        "--data-dir", str(tmp_path / "other-data")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "cannot listen on" in p.stderr


def test_shutdown_with_a_stream_open(make_daemon):
    d = make_daemon()
    stub = health_pb2_grpc.HealthStub(d.channel())
    stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=30)
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    seen = []

    def read():
        try:
            for m in stream:
                seen.append(m.status)
        except grpc.RpcError as e:
            seen.append(e.code())

    reader = threading.Thread(target=read)
    reader.start()
    started = time.time()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0, d.output()
    assert time.time() - started < 10
    reader.join(10)
    assert seen and seen[0] == health_pb2.HealthCheckResponse.NOT_SERVING
    assert seen[-1] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    d.log.close()


def test_server_ends_a_stream_whose_client_does_not_read(daemon):
    """A bidi client that sends and never reads fills the bounded send queue: the server ends the
    call with RESOURCE_EXHAUSTED (and, per the fixture, logs no error when the client's
    half-close arrives after that) and keeps serving."""
    stub = refl_v1_grpc.ServerReflectionStub(daemon.channel())
    reqs = [refl_v1.ServerReflectionRequest(file_containing_symbol="casca.v1.AdminService")
            for _ in range(2000)]
    replies = stub.ServerReflectionInfo(iter(reqs), timeout=30)
    time.sleep(2)  # let the server's queue fill while nothing is read
    with pytest.raises(grpc.RpcError) as e:
        for _ in replies:
            pass
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "not being read" in e.value.details()
    assert status(daemon).version
