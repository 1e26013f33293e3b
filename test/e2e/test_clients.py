"""What independent clients tripped on (issue 17): a complete client generated from proto/ alone,
INVALID_ARGUMENT naming the field for every missing required field, an action on an unknown
setting said to be unknown, an action ahead of the States recorded against the State it really
followed, and GetStatus's counts as the proto documents them. (The README's commands run in
test_readme.py.)"""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, slo_pb2, slo_pb2_grpc
from casca.v1 import control_pb2, control_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc
from conftest import carbon_bundle
from test_agent import CONTROL, GDS, OP, TOKENS, Session, change, config, iv, publish_fps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def d(make_daemon, tmp_path):
    return make_daemon(config(carbon_bundle(tmp_path, hours=48)), env=TOKENS)


def test_proto_dir_alone_generates_a_complete_client(d, tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    # casca's API and health; the vendored Prometheus and OTLP protos are for what casca receives
    protos = sorted(str(p.relative_to(ROOT / "proto"))
                    for top in ("casca", "grpc") for p in (ROOT / "proto" / top).rglob("*.proto"))
    assert "grpc/health/v1/health.proto" in protos
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                    "--python_out", str(out), "--grpc_python_out", str(out), *protos],
                   check=True, cwd=ROOT / "proto")
    # a fresh interpreter that knows only the generated code
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(out)!r})
        import grpc
        grpc.__path__.append({str(out / "grpc")!r})  # generated grpc/health beside grpcio's own
        from grpc.health.v1 import health_pb2, health_pb2_grpc
        from casca.v1 import slo_pb2, slo_pb2_grpc
        ch = grpc.insecure_channel({d.target!r})
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        md = [("authorization", "Bearer {OP}")]
        slos = slo_pb2_grpc.SloServiceStub(ch).ListSlos(slo_pb2.ListSlosRequest(), metadata=md,
                                                         timeout=10)
        print(",".join(s.id for s in slos.slos))
        """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fps"


def invalid(call, field):
    with pytest.raises(grpc.RpcError) as e:
        r = call()
        if hasattr(r, "__next__"):
            next(r)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert e.value.details().startswith(field + " "), e.value.details()
    return e.value.details()


def test_missing_required_fields_are_invalid_argument(d):
    slo = slo_pb2_grpc.SloServiceStub(d.channel(OP))
    ctl = control_pb2_grpc.ServiceControlStub(d.channel(OP))
    tele = tm_grpc.TelemetryServiceStub(d.channel(OP))
    assert "ListSlos" in invalid(lambda: slo.GetSlo(slo_pb2.GetSloRequest(id=""), timeout=5),
                                 "id")
    invalid(lambda: slo.GetSloHistory(slo_pb2.GetSloHistoryRequest(), timeout=5), "id")
    invalid(lambda: slo.ListSlos(slo_pb2.ListSlosRequest(ids=["fps", ""]), timeout=5), "ids[1]")
    invalid(lambda: slo.WatchSlos(slo_pb2.WatchSlosRequest(ids=[""]), timeout=5), "ids[0]")
    assert "ListSettings" in invalid(
        lambda: ctl.GetSetting(control_pb2.GetSettingRequest(id=""), timeout=5), "id")
    invalid(lambda: ctl.SetSetting(control_pb2.SetSettingRequest(value=iv(3)), timeout=5), "id")
    invalid(lambda: ctl.ListSettings(control_pb2.ListSettingsRequest(ids=[""]), timeout=5),
            "ids[0]")
    invalid(lambda: ctl.WatchSettings(control_pb2.WatchSettingsRequest(ids=["Threads", ""]),
                                      timeout=5), "ids[1]")
    # the same shape Query already had
    with pytest.raises(grpc.RpcError) as e:
        tele.Query(tm.QueryRequest(series=""), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # an id that is given but unknown is still NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        ctl.GetSetting(control_pb2.GetSettingRequest(id="Nope"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_action_reasons_and_recorded_seq(d):
    publish_fps(d, [25, 25, 25])
    a = Session(d, GDS, agent_name="gds", mode=CONTROL, slo_ids=["fps"], setting_ids=["Threads"],
                period_ms=200)
    w = a.recv("welcome")
    st = a.recv("state")
    # unknown setting: said so, not "not leased ... name it in Hello"
    a.act(st.seq, "u", change("NoSuchSetting", 3))
    r = a.recv("result")
    assert r.rejected[0].reason.startswith("unknown setting 'NoSuchSetting'"), r.rejected[0]
    # known but not part of the session: the Hello advice stands
    a.act(st.seq, "q", change("Quality", 3))
    assert "Hello.setting_ids" in a.recv("result").rejected[0].reason
    a.act(st.seq, "e", change("", 3))
    assert a.recv("result").rejected[0].reason.startswith("changes[0].id is required")
    # ahead of the last State: rejected, and recorded against the State it followed
    last = a.recv("state")
    a.act(last.seq + 1000, "ahead", change("Threads", 5))
    r = a.recv("result")
    assert "ahead of the last State" in r.rejected[0].reason
    a.send(goodbye=agent_pb2.Goodbye(reason="done"))
    a.close()
    a.ended()
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    steps = list(admin.ExportTrajectory(
        admin_pb2.ExportTrajectoryRequest(session_id=w.session_id), timeout=10))
    ahead = [s for s in steps if s.HasField("action") and s.action.nonce == "ahead"]
    assert len(ahead) == 1
    assert ahead[0].seq <= last.seq + 1, (ahead[0].seq, last.seq)  # a State that was sent
    assert any(s.seq == ahead[0].seq and s.HasField("state") for s in steps), \
        "the step an action is recorded against holds that State"


def test_get_status_counts(d):
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    s = admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    c = dict(s.counts)
    assert c["slos"] == 1 and c["settings"] == 2 and c["hooks"] == 0
    assert c["agent_sessions"] == 0 and c["auth_tokens"] == 3 and c["services"] >= 9
    for k in ("audit_entries", "bus_received", "bus_malformed", "bus_unrouted"):
        assert k in c, k
    a = Session(d, GDS, agent_name="gds", mode=CONTROL, setting_ids=["Threads"], period_ms=200)
    a.recv("welcome")
    # the session is counted once listed, just after its Welcome is sent: wait for it
    deadline = time.time() + 10
    while dict(admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5).counts)[
            "agent_sessions"] != 1 and time.time() < deadline:
        time.sleep(0.02)
    assert dict(admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5).counts)[
        "agent_sessions"] == 1
    a.close()
