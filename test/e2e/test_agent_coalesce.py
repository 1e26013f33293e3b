"""AgentService.Session with agents that do not read: states are coalesced (latest wins, at most one
pending, State.missed counts the ones replaced, seq keeps increasing), the server hands the
transport almost nothing meanwhile and its memory does not grow; an agent that floods actions and
reads nothing is closed with a clear error without holding a worker thread (other blocking calls
go on). The client's HTTP/2 window is made small so the transport stops taking messages at once."""
import queue
import threading
import time

import grpc
import pytest
from google.protobuf import duration_pb2

from conftest import SANITIZED
from casca.v1 import admin_pb2, admin_pb2_grpc
from casca.v1 import agent_pb2, agent_pb2_grpc
from casca.v1 import common_pb2, control_pb2, control_pb2_grpc

PERIOD_MS = 100
NSETTINGS = 100  # states of ~3 KB: buffering them would show


def config():
    rows = "".join(
        f"  - {{id: setting_{i:03d}, description: a setting with a longer description, "
        f"type: int, range: {{min: 0, max: 1000}}, controller: {{memory: {{value: {i}}}}}}}\n"
        for i in range(NSETTINGS))
    return f"server:\n  log_level: debug\n  workers: 4\nsettings:\n{rows}"


@pytest.fixture
def d(make_daemon):
    return make_daemon(config())


class SlowAgent:
    """A session whose reader can be stopped: with a 1 KB stream window and no BDP probing, the
    server's transport can push almost nothing while the reader is stopped."""

    def __init__(self, d, name, mode, setting_ids=(), period_ms=PERIOD_MS):
        self.ch = grpc.insecure_channel(d.target, options=[
            ("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)])
        self.q = queue.Queue()
        self.call = agent_pb2_grpc.AgentServiceStub(self.ch).Session(self._gen(), timeout=60)
        self.it = iter(self.call)
        self.send(hello=agent_pb2.Hello(
            agent_name=name, mode=mode, setting_ids=list(setting_ids),
            period=duration_pb2.Duration(seconds=period_ms // 1000,
                                         nanos=period_ms % 1000 * 1000000)))

    def _gen(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m

    def send(self, **kw):
        self.q.put(agent_pb2.AgentMessage(**kw))

    def next(self):
        return next(self.it)

    def read_for(self, seconds):
        """Every message that arrives within seconds, with its arrival time."""
        out, t0 = [], time.monotonic()
        box = queue.Queue()

        def reader():
            try:
                for m in self.it:
                    box.put((time.monotonic() - t0, m))
                    if time.monotonic() - t0 > seconds:
                        return
            except grpc.RpcError as e:
                box.put((time.monotonic() - t0, e))

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        th.join(seconds + 2)
        while not box.empty():
            out.append(box.get())
        return out

    def close(self):
        self.q.put(None)
        self.call.cancel()
        self.ch.close()


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def sessions(d):
    stub = admin_pb2_grpc.AdminServiceStub(d.channel())
    return {s.agent_name: s for s in
            stub.ListAgentSessions(admin_pb2.ListAgentSessionsRequest(), timeout=5).sessions}


def test_slow_reader_gets_coalesced_states(d):
    n = 12
    agents = [SlowAgent(d, f"slow-{i}", agent_pb2.AGENT_MODE_OBSERVE) for i in range(n)]
    for a in agents:
        w = a.next().welcome
        assert len(w.settings) == NSETTINGS
    time.sleep(1.0)  # the transports fill up; from here on the server can only coalesce
    rss0 = rss_anon_kb(d.proc.pid)
    sent0 = {k: s.states_sent for k, s in sessions(d).items()}
    stall = 3.0  # 30 periods without reading
    time.sleep(stall)
    sent1 = {k: s.states_sent for k, s in sessions(d).items()}
    rss1 = rss_anon_kb(d.proc.pid)
    # the server handed the transport (almost) nothing while nobody read: no queue grows
    for k in sent0:
        assert sent1[k] - sent0[k] <= 2, (k, sent0[k], sent1[k])

    got = agents[0].read_for(1.5)
    states = [m.state for _, m in got if not isinstance(m, Exception)
              and m.WhichOneof("msg") == "state"]
    burst = [m.state for t, m in got if t < 0.05 and not isinstance(m, Exception)
             and m.WhichOneof("msg") == "state"]
    # what was waiting: the few states the transport held, plus at most one pending state
    assert 1 <= len(burst) <= 4, [(s.seq, s.missed) for s in burst]
    assert max(s.missed for s in burst) >= 20, [(s.seq, s.missed) for s in burst]
    # seq keeps increasing, and every state is either delivered or counted as missed
    for a, b in zip(states, states[1:]):
        assert b.seq == a.seq + 1 + b.missed, (a.seq, b.seq, b.missed)
    # read promptly again: one state per period, none missed
    later = states[len(burst) + 1:]
    assert len(later) >= 8 and all(s.missed == 0 for s in later), [(s.seq, s.missed) for s in later]
    if not SANITIZED:  # ASan's quarantine holds freed memory: RSS says nothing there
        # n sessions x 30 states x ~3 KB would be ~3.5 MB if they were queued
        assert rss1 - rss0 < 1500, (rss0, rss1)
    for a in agents:
        a.close()


def test_flooding_reader_is_closed_without_holding_workers(d):
    # more flooders than worker threads: before, each held a worker while its results waited
    flooders = [SlowAgent(d, f"flood-{i}", agent_pb2.AGENT_MODE_CONTROL,
                          setting_ids=[f"setting_{i:03d}"], period_ms=1000) for i in range(6)]
    for f in flooders:
        assert f.next().WhichOneof("msg") == "welcome"
    change = control_pb2.SetSettingRequest(id="setting_999", value=common_pb2.Value(int_value=7))
    for f in flooders:
        for k in range(300):
            f.send(action=agent_pb2.Action(state_seq=0, nonce=f"n{k}", changes=[change]))
    time.sleep(1.0)
    # blocking calls still find a worker at once (GetSetting runs on the pool; it writes nothing,
    # so the store's backlog of recorded steps does not slow it down)
    stub = control_pb2_grpc.ServiceControlStub(d.channel())
    t = time.monotonic()
    for _ in range(5):
        stub.GetSetting(control_pb2.GetSettingRequest(id="setting_050"), timeout=10)
    assert time.monotonic() - t < 2.0, time.monotonic() - t
    # each flooder gets its results in order, then the end of the session with the reason
    for f in flooders:
        got = f.read_for(3.0)
        results = [m.result for _, m in got if not isinstance(m, Exception)
                   and m.WhichOneof("msg") == "result"]
        errors = [m for _, m in got if isinstance(m, Exception)]
        nonces = [int(r.nonce[1:]) for r in results]
        assert nonces == list(range(len(nonces))) and 64 <= len(nonces) < 300, nonces[-3:]
        assert all(r.rejected and "unknown setting" in r.rejected[0].reason
                   or "rate limit" in r.rejected[0].reason for r in results)
        assert errors and errors[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "does not read its stream" in errors[0].details()
        f.close()
    # the leases went with the sessions
    assert not sessions(d)
