"""Revoking a token bites (issue 12, part 5): a reload that removes a token ends that token's open
calls (agent session, WatchSettings, WatchSlos) with UNAUTHENTICATED within a second, releases
the leases its sessions held and audits the release; a reload that gives a token a role that may
no longer call its method ends those calls with PERMISSION_DENIED; other tokens' calls stay
open. Health and reflection answer whatever token is sent, or none."""
import queue
import threading
import time

import grpc
import pytest

from casca.v1 import admin_pb2, admin_pb2_grpc, control_pb2, control_pb2_grpc
from casca.v1 import slo_pb2, slo_pb2_grpc
from grpc.reflection.v1 import reflection_pb2, reflection_pb2_grpc

from conftest import carbon_bundle, health_pb2, health_pb2_grpc
from test_agent import CONTROL, Session, change

OP, A, B = ("op-0123456789abcdef0123", "tok-a-0123456789abcdef0123",
            "tok-b-0123456789abcdef0123")


def config(bundle, tokens):
    lines = "\n".join("    - {name: %s, role: %s, token: %s}" % t for t in tokens)
    return f"""\
auth:
  tokens:
{lines}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
slos:
  - {{id: fps, series: fps, aggregation: mean, window: 1m, objective: {{min: 24}}}}
settings:
  - {{id: Threads, type: int, range: {{min: 1, max: 8}}, controller: {{memory: {{value: 4}}}}}}
"""


ALL = [("ops", "operator", OP), ("gds", "agent", A), ("other", "agent", B)]


class Stream:
    """A server stream read by a thread: ended() gives the status it ended with and when."""

    def __init__(self, call):
        self.call, self.msgs, self.end = call, queue.Queue(), None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for m in self.call:
                self.msgs.put(m)
        except grpc.RpcError as e:
            self.end = (e.code(), e.details(), time.monotonic())

    def ended(self, timeout):
        deadline = time.monotonic() + timeout
        while self.end is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.end


def reload(d):
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert r.ok, r.errors
    return time.monotonic()


def test_revoking_a_token_ends_its_calls_and_leases(make_daemon, tmp_path):
    bundle = carbon_bundle(tmp_path, hours=48)
    d = make_daemon(config(bundle, ALL))
    a = Session(d, A, agent_name="gds", mode=CONTROL, setting_ids=["Threads"], period_ms=200)
    assert list(a.recv("welcome").leased_setting_ids) == ["Threads"]
    ctl_a = control_pb2_grpc.ServiceControlStub(d.channel(A))
    watch_a = Stream(ctl_a.WatchSettings(control_pb2.WatchSettingsRequest(ids=["Threads"]),
                                         timeout=60))
    slos_a = Stream(slo_pb2_grpc.SloServiceStub(d.channel(A)).WatchSlos(
        slo_pb2.WatchSlosRequest(), timeout=60))
    watch_b = Stream(control_pb2_grpc.ServiceControlStub(d.channel(B)).WatchSettings(
        control_pb2.WatchSettingsRequest(ids=["Threads"]), timeout=60))
    for s in (watch_a, slos_a, watch_b):
        s.msgs.get(timeout=10)  # open and answering
    # the second agent is refused while A holds the lease
    b = Session(d, B, agent_name="other", mode=CONTROL, setting_ids=["Threads"], period_ms=200)
    assert b.ended(timeout=10).code() == grpc.StatusCode.FAILED_PRECONDITION

    d.write_config(config(bundle, [t for t in ALL if t[2] != A]))
    t0 = reload(d)
    err = a.ended(timeout=5)
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert "revoked" in err.details() and A not in err.details()
    for s in (watch_a, slos_a):
        end = s.ended(timeout=5)
        assert end and end[0] == grpc.StatusCode.UNAUTHENTICATED, end
        assert end[2] - t0 < 1.0, "ended %.2f s after the reload" % (end[2] - t0)
    # B's watch is untouched: it still gets the next change
    assert watch_b.ended(timeout=0.2) is None
    ops = control_pb2_grpc.ServiceControlStub(d.channel(OP))
    ops.SetSetting(control_pb2.SetSettingRequest(id="Threads", value=change("Threads", 6).value),
                   timeout=10)  # no longer leased: the operator may change it
    deadline = time.monotonic() + 10
    while watch_b.msgs.get(timeout=10).value.int_value != 6:
        assert time.monotonic() < deadline
    # the lease is free: B takes it
    b = Session(d, B, agent_name="other", mode=CONTROL, setting_ids=["Threads"], period_ms=200)
    assert list(b.recv("welcome").leased_setting_ids) == ["Threads"]
    # the audit log says why the lease ended
    admin = admin_pb2_grpc.AdminServiceStub(d.channel(OP))
    log = admin.GetAuditLog(admin_pb2.GetAuditLogRequest(), timeout=10).entries
    revoked = [e for e in log if e.outcome == admin_pb2.AUDIT_OUTCOME_REVOKED]
    assert len(revoked) == 1 and revoked[0].setting_id == "Threads"
    assert revoked[0].caller == "gds" and "lease released" in revoked[0].reason
    assert not revoked[0].HasField("new_value")
    # a call of A made after the reload is refused as before
    with pytest.raises(grpc.RpcError) as e:
        ctl_a.GetSetting(control_pb2.GetSettingRequest(id="Threads"), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # B's role drops to viewer: its CONTROL session ends, PERMISSION_DENIED, and names the role
    d.write_config(config(bundle, [("ops", "operator", OP), ("other", "viewer", B)]))
    reload(d)
    err = b.ended(timeout=5)
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    assert "viewer" in err.details()
    # ...but a viewer may still watch settings: that stream stays
    assert watch_b.ended(timeout=0.5) is None
    watch_b.call.cancel()
    a.close()
    b.close()


def test_health_and_reflection_answer_any_token(make_daemon, tmp_path):
    d = make_daemon(config(carbon_bundle(tmp_path, hours=48), ALL))
    for token in (None, "not-a-token-at-all-0123456789", OP):
        ch = d.channel(token)
        h = health_pb2_grpc.HealthStub(ch)
        assert h.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        w = h.Watch(health_pb2.HealthCheckRequest(), timeout=5)
        assert next(w).status == health_pb2.HealthCheckResponse.SERVING
        w.cancel()
        r = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        assert "casca.v1.AdminService" in {s.name for s in next(r).list_services_response.service}
    # and a wrong token is still refused everywhere else
    with pytest.raises(grpc.RpcError) as e:
        admin_pb2_grpc.AdminServiceStub(d.channel("not-a-token-at-all-0123456789")).GetStatus(
            admin_pb2.GetStatusRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
