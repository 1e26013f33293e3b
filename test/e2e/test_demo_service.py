"""The demo's managed service (deploy/demo/transcoder.py), power meter (powermeter.py) and player
(player.py) against the real cascad: the Jellyfin-shaped endpoint with good and bad input, reports
reaching the time series through the real hooks, the setting changed through cascad's http_json
controller, the power model, and a short real ffmpeg run whose FPS follows the thread count."""
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "demo"
PY = "/usr/bin/python3"
CASCA_CLI = os.environ.get("CASCA_CLI", str(ROOT / "build" / "clients" / "casca"))
FFMPEG = "/usr/bin/ffmpeg"
ENDPOINT = "/System/Configuration/encoding"

sys.path.insert(0, str(DEMO))
import transcoder  # noqa: E402

from casca.v1 import (common_pb2, control_pb2, control_pb2_grpc, slo_pb2,  # noqa: E402
                      slo_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc)


def config(bus, http, fps_window="2s"):
    return f"""\
server: {{log_level: info}}
store: {{sync: none}}
bus: {{listen: ["tcp://127.0.0.1:{bus}"]}}
hooks:
  - name: player
    topic: "autowatcher/"
    format: json
    values: {{transcoding_fps: "/Transcoding FPS"}}
    time: {{field: "/Time (UTC)", format: "%Y-%m-%d %H:%M:%S", timezone: UTC}}
    tags: {{client: "/Autowatcher ID"}}
  - name: plug
    topic: "tele/"
    format: json
    values: {{power_w: /ENERGY/Power, apparent_power_w: /ENERGY/ApparentPower,
              voltage_v: /ENERGY/Voltage}}
    time: {{field: /Time, format: rfc3339, timezone: UTC}}
    tags: {{plug: $TOPIC}}
settings:
  - id: ServiceParam
    type: int
    range: {{min: 1, max: 16}}
    controller:
      http_json:
        url: "http://127.0.0.1:{http}{ENDPOINT}"
        pointer: /EncodingThreadCount
        write: {{method: POST, body: read_modify_write}}
slos:
  - id: ServiceSLO
    series: transcoding_fps
    aggregation: mean
    window: {fps_window}
    objective: {{min: 24, max: 30}}
"""


class Proc:
    def __init__(self, argv, log):
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen([str(a) for a in argv], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def output(self):
        return Path(self.log_path).read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("did not stop on SIGTERM:\n" + self.output())
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def procs():
    started = []

    def start(argv, log):
        p = Proc(argv, log)
        started.append(p)
        return p

    yield start
    for p in started:
        rc = p.stop()
        assert rc == 0, "exit %s:\n%s" % (rc, p.output())


def http(method, url, body=None, headers=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def wait_http(url, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.proc.poll() is None, "exited:\n" + proc.output()
        try:
            return http("GET", url)
        except OSError:
            time.sleep(0.05)
    raise AssertionError("no answer from %s:\n%s" % (url, proc.output()))


def start_service(procs, tmp_path, http_port, bus_port, *extra, name="transcoder"):
    argv = [PY, DEMO / "transcoder.py", "--http", f"127.0.0.1:{http_port}",
            "--bus", f"tcp://127.0.0.1:{bus_port}", "--casca", CASCA_CLI, *extra]
    p = procs(argv, tmp_path / f"{name}.log")
    wait_http(f"http://127.0.0.1:{http_port}{ENDPOINT}", p)
    return p


def last_value(channel, series, tags=None, seconds=3):
    tele = telemetry_pb2_grpc.TelemetryServiceStub(channel)
    req = telemetry_pb2.QueryRequest(series=series, tags=tags or {},
                                     aggregation=telemetry_pb2.AGGREGATION_LAST)
    req.start.seconds = int(time.time()) - seconds
    for s in tele.Query(req, timeout=5).series:
        for x in s.samples:
            return x.value
    return None


def wait_value(channel, series, want, tags=None, timeout=10, tol=1e-6):
    deadline = time.time() + timeout
    v = None
    while time.time() < deadline:
        v = last_value(channel, series, tags)
        if v is not None and abs(v - want) <= tol:
            return v
        time.sleep(0.1)
    raise AssertionError("%s: last value %r, wanted %r" % (series, v, want))


def test_simulated_service_endpoint_and_reports(make_daemon, procs, tmp_path):
    bus, port = free_port(), free_port()
    d = make_daemon(config(bus, port))
    url = f"http://127.0.0.1:{port}{ENDPOINT}"
    svc = start_service(procs, tmp_path, port, bus, "--simulate", "--threads", "3",
                        "--report-interval", "0.2")
    code, opts = http("GET", url)
    assert code == 200 and opts["EncodingThreadCount"] == 3
    for key in ("EncoderPreset", "HardwareAccelerationType", "H264Crf", "TranscodingTempPath",
                "EnableThrottling", "MaxMuxingQueueSize"):
        assert key in opts, "a Jellyfin encoding field is missing: %s" % key

    # The whole object (what Jellyfin's dashboard posts), then a single field.
    opts["EncodingThreadCount"] = 5
    assert http("POST", url, opts) == (204, None)
    assert http("GET", url)[1]["EncodingThreadCount"] == 5
    assert http("POST", url, {"EncodingThreadCount": 6}) == (204, None)
    assert http("GET", url)[1] == dict(opts, EncodingThreadCount=6)

    # Bad input: 400 with a reason, nothing changed.
    for body, why in (({"EncodingThreadCount": 0}, "between 1 and 16"),
                      ({"EncodingThreadCount": 17}, "between 1 and 16"),
                      ({"EncodingThreadCount": "6"}, "must be an integer"),
                      ({"EncodingThreadCount": True}, "must be an integer"),
                      ({"EncodingThreadCount": 6.5}, "must be an integer"),
                      ({"EncoderPreset": "warp"}, "EncoderPreset must be one of"),
                      ({"H264Crf": 99}, "H264Crf"),
                      ({"EnableThrottling": "yes"}, "EnableThrottling must be of JSON type"),
                      ({"Threads": 4}, "unknown field(s) Threads"),
                      ([6], "must be a JSON object"),
                      (b"{not json", "not JSON"),
                      (b"\xff\xfe", "not JSON")):
        code, err = http("POST", url, body)
        assert code == 400 and why in err["error"], (body, code, err)
    assert http("GET", url)[1]["EncodingThreadCount"] == 6
    assert http("GET", f"http://127.0.0.1:{port}/nope")[0] == 404
    assert http("POST", f"http://127.0.0.1:{port}/nope", {})[0] == 404

    # Reports reach cascad's series through `casca report` and the player hook: 4.2 x 6 threads.
    ch = d.channel()
    wait_value(ch, "transcoding_fps", 25.2, {"client": "demo"})
    # cascad's http_json controller changes the thread count: the model follows.
    ctl = control_pb2_grpc.ServiceControlStub(ch)
    assert ctl.GetSetting(control_pb2.GetSettingRequest(id="ServiceParam"),
                          timeout=5).value.int_value == 6
    r = ctl.SetSetting(control_pb2.SetSettingRequest(
        id="ServiceParam", value=common_pb2.Value(int_value=7)), timeout=5)
    assert r.value.int_value == 7
    assert http("GET", url)[1] == dict(opts, EncodingThreadCount=7)  # the rest is kept
    wait_value(ch, "transcoding_fps", 29.4, {"client": "demo"})
    time.sleep(2.5)  # the SLO window (2 s) holds only 7-thread reports now
    s = slo_pb2_grpc.SloServiceStub(ch).GetSlo(slo_pb2.GetSloRequest(id="ServiceSLO"), timeout=5)
    assert s.has_value and s.fulfilled and abs(s.value - 29.4) < 1e-6

    # Jellyfin's session list carries the measured frame rate.
    code, sessions = http("GET", f"http://127.0.0.1:{port}/Sessions")
    assert code == 200 and abs(sessions[0]["TranscodingInfo"]["Framerate"] - 29.4) < 1e-6
    assert svc.stop() == 0
    assert "casca report:" in svc.output() and "0 dropped" in svc.output()


def test_api_key_is_required_when_set(procs, tmp_path):
    port = free_port()
    p = procs([PY, DEMO / "transcoder.py", "--http", f"127.0.0.1:{port}", "--no-report",
               "--simulate", "--api-key", "s3cret"], tmp_path / "t.log")
    url = f"http://127.0.0.1:{port}{ENDPOINT}"
    code, err = wait_http(url, p)
    assert code == 401 and "X-Emby-Token" in err["error"]
    assert http("GET", url, headers={"X-Emby-Token": "s3cret"})[0] == 200
    auth = {"Authorization": 'MediaBrowser Client="x", Token="s3cret"'}
    assert http("POST", url, {"EncodingThreadCount": 2}, auth)[0] == 204
    assert http("POST", url, {"EncodingThreadCount": 3}, {"X-Emby-Token": "nope"})[0] == 401
    assert http("GET", url, headers={"X-Emby-Token": "s3cret"})[1]["EncodingThreadCount"] == 2


def test_simulated_model_is_deterministic():
    svc = transcoder.Service(6)
    assert transcoder.Simulated(svc, 1, 0).measure(1) == pytest.approx(25.2)
    a = [transcoder.Simulated(svc, 42, 1.0).measure(1) for _ in range(1)]
    s1, s2 = transcoder.Simulated(svc, 42, 1.0), transcoder.Simulated(svc, 42, 1.0)
    seq1, seq2 = [s1.measure(1) for _ in range(50)], [s2.measure(1) for _ in range(50)]
    assert seq1 == seq2 and a[0] == seq1[0]
    assert seq1 != [transcoder.Simulated(svc, 43, 1.0).measure(1) for _ in range(50)]
    assert abs(statistics.fmean(seq1) - 25.2) < 0.6 and 0.5 < statistics.pstdev(seq1) < 1.6
    for n in (1, 7, 16):
        svc.update({"EncodingThreadCount": n})
        assert transcoder.Simulated(svc, 1, 0).measure(1) == pytest.approx(4.2 * n)


@pytest.mark.parametrize("args, why", [
    (["--threads", "0"], "--threads must be from 1 to 16"),
    (["--report-interval", "0"], "--report-interval must be at least"),
    (["--noise", "-1"], "--noise must not be negative"),
    (["--casca", "/nonexistent/casca"], "is not an executable file"),
    (["--http", "localhost"], "expected HOST:PORT"),
])
def test_transcoder_bad_flags(args, why, tmp_path):
    argv = [PY, str(DEMO / "transcoder.py"), "--http", "127.0.0.1:%d" % free_port(),
            "--bus", "tcp://127.0.0.1:1", "--casca", CASCA_CLI, "--simulate"]
    for i in range(0, len(args), 2):  # replace a flag already given, else append it
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and why in r.stderr, r.stderr


def test_transcoder_port_in_use(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = subprocess.run([PY, str(DEMO / "transcoder.py"), "--http",
                            "127.0.0.1:%d" % s.getsockname()[1], "--no-report", "--simulate"],
                           capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "cannot listen" in r.stderr


def test_powermeter_simulated_tasmota_reports(make_daemon, procs, tmp_path):
    bus, port = free_port(), free_port()
    d = make_daemon(config(bus, port))
    start_service(procs, tmp_path, port, bus, "--simulate", "--threads", "3", "--no-report")
    procs([PY, DEMO / "powermeter.py", "--bus", f"tcp://127.0.0.1:{bus}", "--casca", CASCA_CLI,
           "--simulate", "--http", f"http://127.0.0.1:{port}{ENDPOINT}", "--interval", "0.2",
           "--idle-watts", "10", "--watts-per-core", "12", "--power-factor", "0.8",
           "--topic", "tele/p1/SENSOR"], tmp_path / "meter.log")
    ch = d.channel()
    tags = {"plug": "tele/p1/SENSOR"}
    wait_value(ch, "power_w", 10 + 12 * 3, tags)                 # idle + per core x threads
    wait_value(ch, "apparent_power_w", 46 / 0.8, tags, tol=0.01)  # Power / power factor
    wait_value(ch, "voltage_v", 230, tags)
    http("POST", f"http://127.0.0.1:{port}{ENDPOINT}", {"EncodingThreadCount": 5})
    wait_value(ch, "power_w", 10 + 12 * 5, tags)


def test_powermeter_waits_for_a_service_that_starts_later(make_daemon, procs, tmp_path):
    """The meter starts first (nothing listens on the service's port yet): it keeps running, says
    what it waits for, and publishes once the service is up; a meter still waiting stops cleanly
    on SIGTERM (the fixture checks exit status 0)."""
    bus, port = free_port(), free_port()
    d = make_daemon(config(bus, port))
    url = f"http://127.0.0.1:{port}{ENDPOINT}"
    meter = procs([PY, DEMO / "powermeter.py", "--bus", f"tcp://127.0.0.1:{bus}", "--casca",
                   CASCA_CLI, "--simulate", "--http", url, "--interval", "0.2",
                   "--topic", "tele/late/SENSOR"], tmp_path / "meter.log")
    never = procs([PY, DEMO / "powermeter.py", "--bus", f"tcp://127.0.0.1:{bus}", "--casca",
                   CASCA_CLI, "--simulate", "--http", f"http://127.0.0.1:{free_port()}{ENDPOINT}",
                   "--interval", "0.2", "--topic", "tele/never/SENSOR"], tmp_path / "never.log")
    deadline = time.time() + 10
    while "waiting for the service at %s" % url not in meter.output():
        assert time.time() < deadline, "no waiting message:\n" + meter.output()
        assert meter.proc.poll() is None, "the meter exited:\n" + meter.output()
        time.sleep(0.1)
    time.sleep(1.0)  # several retries (every 0.2 s) against a closed port
    assert meter.proc.poll() is None, "the meter exited:\n" + meter.output()
    assert "Traceback" not in meter.output(), meter.output()
    assert meter.output().count("waiting for") == 1, "one message, not one per retry:\n" + \
        meter.output()
    ch = d.channel()
    assert last_value(ch, "power_w", {"plug": "tele/late/SENSOR"}) is None

    start_service(procs, tmp_path, port, bus, "--simulate", "--threads", "2", "--no-report")
    wait_value(ch, "power_w", 10 + 12 * 2, {"plug": "tele/late/SENSOR"})
    assert "answered after" in meter.output(), meter.output()
    assert never.proc.poll() is None and "waiting for" in never.output(), never.output()
    assert never.stop() == 0, never.output()
    assert last_value(ch, "power_w", {"plug": "tele/never/SENSOR"}) is None


def test_powermeter_measures_the_process_tree(make_daemon, procs, tmp_path):
    bus = free_port()
    d = make_daemon(config(bus, free_port()))
    # A parent that sleeps and a child that spins: the tree uses about one core.
    busy = procs([PY, "-c", "import subprocess, signal, sys\n"
                  "c = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
                  "signal.signal(signal.SIGTERM, lambda *a: (c.kill(), sys.exit(0)))\n"
                  "c.wait()"], tmp_path / "busy.log")
    idle = procs([PY, "-c", "import signal, sys, time\n"
                  "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                  "time.sleep(600)"], tmp_path / "idle.log")
    for pid, topic in ((busy.proc.pid, "tele/busy/SENSOR"), (idle.proc.pid, "tele/idle/SENSOR")):
        procs([PY, DEMO / "powermeter.py", "--bus", f"tcp://127.0.0.1:{bus}", "--casca",
               CASCA_CLI, "--pid", pid, "--interval", "0.5", "--topic", topic],
              tmp_path / f"meter{pid}.log")
    ch = d.channel()
    deadline = time.time() + 10
    while time.time() < deadline:
        b = last_value(ch, "power_w", {"plug": "tele/busy/SENSOR"})
        i = last_value(ch, "power_w", {"plug": "tele/idle/SENSOR"})
        if b is not None and i is not None:
            break
        time.sleep(0.2)
    time.sleep(1.5)
    b = last_value(ch, "power_w", {"plug": "tele/busy/SENSOR"})
    i = last_value(ch, "power_w", {"plug": "tele/idle/SENSOR"})
    # 10 W idle + 12 W per busy core; the spinning child may share its core with other work.
    assert 10 + 12 * 0.2 < b <= 10 + 12 * 2.2, b
    assert 10 <= i < 10.5, i


@pytest.mark.parametrize("args, why", [
    (["--pid", "999999999"], "no such process"),
    ([], "needs --pid"),
    (["--simulate"], "needs --http"),
    (["--pid", "1", "--power-factor", "0"], "power_factor must be in (0, 1]"),
    (["--pid", "1", "--idle-watts", "-1"], "idle_watts must not be negative"),
    (["--pid", "1", "--interval", "0"], "interval must be at least"),
    (["--pid", "1", "--config", "CONFIG"], "unknown key(s) idle_wats"),
])
def test_powermeter_bad_input(args, why, tmp_path):
    cfg = tmp_path / "meter.conf"
    cfg.write_text("idle_wats: 5\n")
    argv = [PY, str(DEMO / "powermeter.py"), "--bus", "tcp://127.0.0.1:1", "--casca", CASCA_CLI]
    argv += [str(cfg) if a == "CONFIG" else a for a in args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and why in r.stderr, r.stderr


def test_powermeter_config_file(tmp_path):
    import powermeter
    cfg = tmp_path / "m.conf"
    cfg.write_text("# my server, measured with a plug\nidle_watts: 41.5\nwatts_per_core: 9\n"
                   "topic: tele/rack1/SENSOR\n")
    assert powermeter.load_config(str(cfg)) == {"idle_watts": 41.5, "watts_per_core": 9.0,
                                                "topic": "tele/rack1/SENSOR"}
    cfg.write_text('{"idle_watts": "many"}')
    with pytest.raises(ValueError, match="idle_watts must be a number"):
        powermeter.load_config(str(cfg))


def test_powermeter_rapl_absent_or_readable():
    import powermeter
    if not os.path.isdir("/sys/class/powercap"):
        with pytest.raises(RuntimeError, match="no RAPL package domain"):
            powermeter.RaplSource()
    else:
        try:
            src = powermeter.RaplSource()
        except RuntimeError as e:
            assert "RAPL" in str(e)
            return
        src.power()
        time.sleep(0.2)
        watts, _ = src.power()
        assert watts is not None and watts >= 0


def test_player_reads_sessions_on_another_host(make_daemon, procs, tmp_path):
    bus, port = free_port(), free_port()
    d = make_daemon(config(bus, port))
    svc = procs([PY, DEMO / "transcoder.py", "--http", f"127.0.0.1:{port}", "--no-report",
                 "--simulate", "--threads", "4", "--report-interval", "0.2"], tmp_path / "t.log")
    wait_http(f"http://127.0.0.1:{port}{ENDPOINT}", svc)
    procs([PY, DEMO / "player.py", "--server", f"http://127.0.0.1:{port}", "--bus",
           f"tcp://127.0.0.1:{bus}", "--casca", CASCA_CLI, "--id", "w7", "--interval", "0.2"],
          tmp_path / "player.log")
    wait_value(d.channel(), "transcoding_fps", 16.8, {"client": "w7"})


def test_ffmpeg_fps_is_reported_and_follows_the_thread_count(make_daemon, procs, tmp_path):
    """About 20 s: ffmpeg at 1 and 2 threads in turn (three times each, 3.5 s a phase).

    The build machines are shared: at times two threads get no more CPU than one (measured: two
    spinning processes got 0.7 cores in all while others built). So the check measures, per
    phase, both the FPS reported through cascad and the CPU the service's process tree used
    (/proc), and asserts what holds on any machine:
      - FPS is reported in every phase, and ffmpeg runs with -threads N after each change;
      - one thread never uses much more than one core (the thread count bounds the encoder);
      - where the 2-thread phases together got at least 1.3x the CPU of the 1-thread phases,
        their median FPS is at least 1.1x higher: more threads turn into more frames. On a
        machine too busy to give a second core this is not checked, and the test says so."""
    assert os.access(FFMPEG, os.X_OK), "ffmpeg is missing: run deploy/install-deps.sh"
    import powermeter
    bus, port = free_port(), free_port()
    d = make_daemon(config(bus, port))
    url = f"http://127.0.0.1:{port}{ENDPOINT}"
    svc = start_service(procs, tmp_path, port, bus, "--threads", "1", "--report-interval", "1")
    ch = d.channel()
    wait_deadline = time.time() + 15
    while last_value(ch, "transcoding_fps", {"client": "demo"}) is None:
        assert time.time() < wait_deadline, "no FPS reported:\n" + svc.output()
        time.sleep(0.2)

    def ffmpeg_threads():
        kids = subprocess.run(["pgrep", "-P", str(svc.proc.pid), "-x", "ffmpeg"],
                              capture_output=True, text=True).stdout.split()
        out = set()
        for k in kids:
            try:
                argv = Path(f"/proc/{k}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-threads" in argv:
                out.add(int(argv[argv.index(b"-threads") + 1]))
        return out

    phases = []
    for threads in (1, 2, 1, 2, 1, 2):
        assert http("POST", url, {"EncodingThreadCount": threads}) == (204, None)
        t0 = time.time()
        seen = set()
        cpu = []
        while time.time() < t0 + 3.5:
            seen |= ffmpeg_threads()
            if time.time() >= t0 + 1.5 and len(cpu) < 1:
                cpu.append((time.time(), powermeter.tree_cpu_seconds(svc.proc.pid)))
            time.sleep(0.25)
        cpu.append((time.time(), powermeter.tree_cpu_seconds(svc.proc.pid)))
        assert threads in seen, "ffmpeg did not run with -threads %d: %s" % (threads, seen)
        busy = (cpu[1][1] - cpu[0][1]) / (cpu[1][0] - cpu[0][0])
        phases.append((threads, t0, time.time(), busy))
    time.sleep(1)
    tele = telemetry_pb2_grpc.TelemetryServiceStub(ch)
    req = telemetry_pb2.QueryRequest(series="transcoding_fps", tags={"client": "demo"},
                                     aggregation=telemetry_pb2.AGGREGATION_MEAN)
    req.start.seconds = int(phases[0][1]) - 1
    req.step.seconds = 1
    samples = [(x.time.seconds, x.value) for s in tele.Query(req, timeout=5).series
               for x in s.samples]
    assert samples and all(v >= 0 for _, v in samples)
    medians = []
    for threads, t0, t1, busy in phases:
        # Reports are stamped with whole seconds: skip the first 1.5 s (ffmpeg's restart).
        vals = [v for t, v in samples if t0 + 1.5 <= t < t1 - 0.5]
        assert vals, "no report during the %d-thread phase %s" % (threads, samples)
        medians.append(statistics.median(vals))
    busy = [p[3] for p in phases]
    what = "threads %s\nFPS %s\nbusy cores %s" % ([p[0] for p in phases],
                                                ["%.1f" % m for m in medians],
                                                ["%.2f" % b for b in busy])
    print(what)
    assert all(m > 0 for m in medians), what
    assert all(b < 1.5 for b, p in zip(busy, phases) if p[0] == 1), "1 thread, >1.5 cores:\n" + what
    # Per phase the FPS is noisy (one measured 73 then 117 fps at 1 thread on 1 core): compare the
    # 1-thread and 2-thread phases taken together.
    cpu_ratio = sum(busy[1::2]) / sum(busy[0::2])
    fps_ratio = statistics.median(medians[1::2]) / statistics.median(medians[0::2])
    if cpu_ratio >= 1.3:
        assert fps_ratio >= 1.1, \
            "2 threads got %.2fx the CPU but only %.2fx the frames:\n%s" % (cpu_ratio, fps_ratio,
                                                                          what)
    else:
        print("the machine gave 2 threads only %.2fx the CPU of 1: the speed-up is not checked"
              % cpu_ratio)
