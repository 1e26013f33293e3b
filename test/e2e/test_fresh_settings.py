"""Fresh setting values (issue 12, part 1): a setting that an agent session or a WatchSettings
needs is re-read from its service, so its States and the watch follow a change made on the
service itself, say when the service stops answering (no value, a public reason, never the URL)
and show the first good read after it. The service is a real HTTP server on loopback that the
test stops, restarts on the same port and changes behind casca's back; an agent that said Hello
before the service was up sees the value once it is."""
import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import duration_pb2

from casca.v1 import agent_pb2, agent_pb2_grpc, common_pb2, control_pb2, control_pb2_grpc
from conftest import carbon_bundle, free_port


class Service:
    """A JSON service holding {"threads": n} on 127.0.0.1:port; stop() and start() keep the port."""

    def __init__(self, port, threads=4):
        self.port, self.threads, self.httpd = port, threads, None

    def start(self):
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"threads": svc.threads}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                n = int(self.headers.get("Content-Length", 0))
                svc.threads = json.loads(self.rfile.read(n))["threads"]
                self.send_response(204)
                self.end_headers()

        deadline = time.monotonic() + 10
        while True:  # the port may linger briefly after a stop
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def config(bundle, port):
    return f"""\
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
settings:
  - id: Threads
    type: int
    range: {{min: 1, max: 8}}
    controller:
      http_json:
        url: "http://127.0.0.1:{port}/private/encoding"
        pointer: /threads
        write: {{method: PUT, body: read_modify_write}}
        timeout: 500ms
"""


def value_of(sv):
    return sv.value.int_value if sv.HasField("value") else None


class Agent:
    """An OBSERVE session on Threads at a 200 ms period; states() yields the Threads values."""

    def __init__(self, channel):
        self.out = queue.Queue()
        hello = agent_pb2.Hello(agent_name="watcher", setting_ids=["Threads"],
                                mode=agent_pb2.AGENT_MODE_OBSERVE,
                                period=duration_pb2.Duration(nanos=200_000_000))
        self.out.put(agent_pb2.AgentMessage(hello=hello))
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.call = stub.Session(iter(self.out.get, None))
        welcome = next(self.call)
        assert welcome.HasField("welcome")

    def wait_state(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = next(self.call)
            if m.HasField("state"):
                sv = [s for s in m.state.settings if s.id == "Threads"][0]
                if pred(sv):
                    return sv
        raise AssertionError("no state matched within %s s" % timeout)

    def close(self):
        self.out.put(None)
        self.call.cancel()


def wait_watch(it, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sv = next(it)
        if pred(sv):
            return sv
    raise AssertionError("no watched value matched within %s s" % timeout)


def test_states_and_watches_follow_the_service(make_daemon, tmp_path):
    port = free_port()
    svc = Service(port, threads=4)
    d = make_daemon(config(carbon_bundle(tmp_path, hours=48), port))
    with d.channel() as ch:
        # the agent and the watch start before the service is up: no value yet, and why
        agent = Agent(ch)
        watch = control_pb2_grpc.ServiceControlStub(ch).WatchSettings(
            control_pb2.WatchSettingsRequest(ids=["Threads"]), timeout=120)
        sv = agent.wait_state(lambda s: not s.HasField("value"))
        assert "service unavailable since" in sv.reason, sv
        assert str(port) not in sv.reason and "private" not in sv.reason
        sv = wait_watch(watch, lambda s: not s.HasField("value"))
        assert "service unavailable since" in sv.reason

        # the service comes up: the value reaches both within a period or two
        svc.start()
        t0 = time.monotonic()
        assert value_of(agent.wait_state(lambda s: s.HasField("value"))) == 4
        assert value_of(wait_watch(watch, lambda s: s.HasField("value"))) == 4
        came_up = time.monotonic() - t0

        # changed on the service itself, not through casca
        svc.threads = 7
        assert value_of(agent.wait_state(lambda s: value_of(s) == 7)) == 7
        sv = wait_watch(watch, lambda s: value_of(s) == 7)
        assert sv.reason == ""

        # the service goes away, then comes back with the same value
        svc.stop()
        sv = agent.wait_state(lambda s: not s.HasField("value"))
        assert sv.reason.startswith("service unavailable since ")
        wait_watch(watch, lambda s: not s.HasField("value"))
        svc.start()
        assert value_of(agent.wait_state(lambda s: s.HasField("value"))) == 7
        assert value_of(wait_watch(watch, lambda s: s.HasField("value"))) == 7

        # a change through casca still answers with the value read back
        ctl = control_pb2_grpc.ServiceControlStub(ch)
        r = ctl.SetSetting(control_pb2.SetSettingRequest(
            id="Threads", value=common_pb2.Value(int_value=5)), timeout=10)
        assert r.value.int_value == 5 and svc.threads == 5
        assert value_of(agent.wait_state(lambda s: value_of(s) == 5)) == 5
        agent.close()
        watch.cancel()
    svc.stop()
    print(f"value reached the agent and the watch {came_up:.2f} s after the service came up")
    d.stop()


def test_no_rereads_without_watchers(make_daemon, tmp_path):
    """Nobody watching: casca leaves the service alone (reads only on demand)."""
    port = free_port()
    hits = []
    svc = Service(port, threads=2)
    svc.start()
    orig = svc.httpd.RequestHandlerClass.do_GET

    def counting(self):
        hits.append(time.monotonic())
        orig(self)

    svc.httpd.RequestHandlerClass.do_GET = counting
    d = make_daemon(config(carbon_bundle(tmp_path, hours=48), port))
    with d.channel() as ch:
        ctl = control_pb2_grpc.ServiceControlStub(ch)
        assert ctl.GetSetting(control_pb2.GetSettingRequest(id="Threads"),
                              timeout=10).value.int_value == 2
        n = len(hits)
        time.sleep(1.5)
        assert len(hits) == n, "re-read with no watcher"
        # one watch: re-read about every second, one read shared, not one per caller
        watch = ctl.WatchSettings(control_pb2.WatchSettingsRequest(ids=["Threads"]), timeout=60)
        watch2 = ctl.WatchSettings(control_pb2.WatchSettingsRequest(ids=["Threads"]), timeout=60)
        next(watch), next(watch2)
        t0, n0 = time.monotonic(), len(hits)
        deadline = t0 + 20
        while len(hits) < n0 + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        rate = (len(hits) - n0) / (time.monotonic() - t0)
        assert len(hits) >= n0 + 3, "the watched setting was not re-read"
        assert rate < 2.5, f"{rate:.1f} reads/s for two watchers of a 1 s default"
        watch.cancel()
        watch2.cancel()
    svc.stop()
    d.stop()
