#!/usr/bin/python3
"""The managed service of casca's media-streaming demo: a small transcoding service.

It behaves like the part of a Jellyfin media server that casca controls in the paper:

* an HTTP JSON configuration endpoint shaped like Jellyfin's encoding options:
      GET  /System/Configuration/encoding   -> the JSON object (EncodingThreadCount among others)
      POST /System/Configuration/encoding   <- the whole object, or only the fields to change;
                                               204 No Content, 400 with a reason on bad input
  GET /Sessions answers Jellyfin's session list with the transcoding session's measured
  TranscodingInfo.Framerate (for a player on another host: deploy/demo/player.py);
  GET /System/Info/Public and /health answer too, for probes.
* a workload whose speed depends on EncodingThreadCount:
    - real mode (default): ffmpeg transcodes a generated test video (lavfi testsrc2, no download)
      with libx264, `-threads N`, to the null muxer, continuously; when the thread count (or the
      preset or CRF) changes, ffmpeg is restarted with the new value. FPS is measured from the
      frame counter of ffmpeg's -progress output (frames encoded per second of wall-clock time
      over the last report interval).
    - --simulate: the deterministic model fps = 4.2 x threads x speed(preset) (threads 1..16;
      PRESET_MODEL below: veryfast, the default, is 1), plus seeded Gaussian noise of --noise SD
      (default 0). No ffmpeg.
  Each report also carries a quality score of the preset (PRESET_MODEL, 1 = medium): a faster
  preset needs fewer threads (less power) for the same FPS but encodes worse, so there is more
  than one way to meet an FPS objective, at different power and quality.
* a player that reports the transcoding FPS every --report-interval seconds by piping JSON lines
  to `casca report --bus BUS --topic TOPIC`, in the player-report shape of deploy/hooks/player.yaml:
      {"Autowatcher ID": "demo", "Transcoding FPS": 25.2, "Dropped frames": 0, "Quality": 0.96,
       "Time (UTC)": "2026-01-05 10:00:00"}

Usage:
  /usr/bin/python3 deploy/demo/transcoder.py --http 127.0.0.1:8096 --bus tcp://127.0.0.1:5556 \
      --casca build/clients/casca [--simulate] [--threads N] [--report-interval SECONDS] \
      [--topic autowatcher/demo] [--seed N] [--noise SD] [--no-report] [--api-key KEY]

SIGTERM and SIGINT stop it cleanly (ffmpeg and the reporter are stopped, exit status 0).
Standard library only (Debian's /usr/bin/python3).
"""
import argparse
import copy
import datetime
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_pipe import ReportPipe  # noqa: E402

ENDPOINT = "/System/Configuration/encoding"
MIN_THREADS = 1
MAX_THREADS = 16
FPS_PER_THREAD = 4.2  # the --simulate model: fps(threads) = FPS_PER_THREAD x threads
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")
# preset -> (speed relative to veryfast, quality relative to medium): the shape of x264's presets
# (each slower preset spends more CPU per frame for a smaller file at the same CRF, i.e. better
# quality per bit), rounded; the model of --simulate, and the quality score of real mode too
# (an estimate: measuring quality would need a reference decode).
PRESET_MODEL = {"ultrafast": (1.6, 0.90), "superfast": (1.3, 0.93), "veryfast": (1.0, 0.96),
                "faster": (0.85, 0.97), "fast": (0.7, 0.98), "medium": (0.55, 1.0),
                "slow": (0.4, 1.01), "slower": (0.25, 1.02), "veryslow": (0.15, 1.02)}

# Jellyfin 10.8's EncodingOptions, as GET /System/Configuration/encoding returns them (a subset;
# values are Jellyfin's defaults except EncodingThreadCount, which Jellyfin sets to -1 = auto).
# Only EncodingThreadCount, EncoderPreset and H264Crf affect this service.
DEFAULT_OPTIONS = {
    "EncodingThreadCount": 4,
    "TranscodingTempPath": "/var/lib/jellyfin/transcodes",
    "FallbackFontPath": "",
    "EnableFallbackFont": False,
    "DownMixAudioBoost": 2,
    "MaxMuxingQueueSize": 2048,
    "EnableThrottling": False,
    "ThrottleDelaySeconds": 180,
    "HardwareAccelerationType": "none",
    "EncoderAppPath": "/usr/bin/ffmpeg",
    "EncoderAppPathDisplay": "/usr/bin/ffmpeg",
    "VaapiDevice": "/dev/dri/renderD128",
    "EnableTonemapping": False,
    "EnableVppTonemapping": False,
    "TonemappingAlgorithm": "bt2390",
    "TonemappingRange": "auto",
    "TonemappingDesat": 0,
    "TonemappingPeak": 100,
    "TonemappingParam": 0,
    "H264Crf": 23,
    "H265Crf": 28,
    "EncoderPreset": "veryfast",
    "DeinterlaceDoubleRate": False,
    "DeinterlaceMethod": "yadif",
    "EnableDecodingColorDepth10Hevc": True,
    "EnableDecodingColorDepth10Vp9": True,
    "EnableEnhancedNvdecDecoder": False,
    "PreferSystemNativeHwDecoder": True,
    "EnableIntelLowPowerH264HwEncoder": False,
    "EnableIntelLowPowerHevcHwEncoder": False,
    "EnableHardwareEncoding": True,
    "AllowHevcEncoding": False,
    "EnableSubtitleExtraction": True,
    "HardwareDecodingCodecs": ["h264", "vc1"],
    "AllowOnDemandMetadataBasedKeyframeExtractionForExtensions": ["mkv"],
}

# Fields whose value restarts the workload, and how each is checked.
RESTART_FIELDS = ("EncodingThreadCount", "EncoderPreset", "H264Crf")


def log(msg):
    sys.stderr.write("transcoder: %s\n" % msg)
    sys.stderr.flush()


def validate(options):
    """Returns an error message for a bad options object, or None."""
    n = options.get("EncodingThreadCount")
    if isinstance(n, bool) or not isinstance(n, int):
        return "EncodingThreadCount must be an integer, got %s" % json.dumps(n)
    if not MIN_THREADS <= n <= MAX_THREADS:
        return ("EncodingThreadCount must be between %d and %d, got %d"
                % (MIN_THREADS, MAX_THREADS, n))
    if options.get("EncoderPreset") not in X264_PRESETS:
        return "EncoderPreset must be one of %s, got %s" % (", ".join(X264_PRESETS),
                                                            json.dumps(options.get("EncoderPreset")))
    crf = options.get("H264Crf")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        return "H264Crf must be an integer from 0 to 51, got %s" % json.dumps(crf)
    for key, default in DEFAULT_OPTIONS.items():
        if key in options and type(options[key]) is not type(default):
            return "%s must be of JSON type %s like %s" % (key, type(default).__name__,
                                                           json.dumps(default))
    return None


class Service:
    """The configuration and the latest measurement; shared by the HTTP, workload and reporter
    threads under one lock."""

    def __init__(self, threads):
        self.lock = threading.Condition()
        self.options = copy.deepcopy(DEFAULT_OPTIONS)
        self.options["EncodingThreadCount"] = threads
        self.generation = 0  # +1 on every change of a RESTART_FIELDS value
        self.size = "1280x720"
        self.fps = None      # latest measured FPS, None before the first measurement
        self.stopping = False

    def get(self):
        with self.lock:
            return copy.deepcopy(self.options)

    def update(self, changes):
        """Merges changes (a dict) into the options. Returns an error message or None."""
        if not isinstance(changes, dict):
            return "the body must be a JSON object of encoding options"
        unknown = sorted(k for k in changes if k not in DEFAULT_OPTIONS)
        if unknown:
            return "unknown field(s) %s; the fields are those GET %s returns" % (
                ", ".join(unknown), ENDPOINT)
        with self.lock:
            new = copy.deepcopy(self.options)
            new.update(changes)
            err = validate(new)
            if err:
                return err
            restart = any(new[k] != self.options[k] for k in RESTART_FIELDS)
            if restart:
                log("EncodingThreadCount %d -> %d, EncoderPreset %s -> %s, H264Crf %d -> %d"
                    % (self.options["EncodingThreadCount"], new["EncodingThreadCount"],
                       self.options["EncoderPreset"], new["EncoderPreset"],
                       self.options["H264Crf"], new["H264Crf"]))
                self.generation += 1
            self.options = new
            self.lock.notify_all()
        return None

    def stop(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    def sessions(self):
        """Jellyfin's GET /Sessions shape (a subset): the one transcoding session and its
        measured frame rate, for players on other hosts (deploy/demo/player.py)."""
        with self.lock:
            o, fps = self.options, self.fps
            w, _, h = self.size.partition("x")
            return [{
                "Id": "casca-demo-session", "Client": "casca demo", "DeviceName": "testsrc2",
                "DeviceId": "casca-demo", "ApplicationVersion": "10.8.13", "IsActive": True,
                "NowPlayingItem": {"Name": "testsrc2 %s" % self.size, "Type": "Movie",
                                   "MediaType": "Video"},
                "PlayState": {"IsPaused": False, "PlayMethod": "Transcode"},
                "TranscodingInfo": {
                    "AudioCodec": "", "VideoCodec": "h264", "Container": "null",
                    "IsVideoDirect": False, "IsAudioDirect": True,
                    "Framerate": None if fps is None else round(fps, 3),
                    "Width": int(w) if w.isdigit() else None,
                    "Height": int(h) if h.isdigit() else None,
                    "HardwareAccelerationType": o["HardwareAccelerationType"],
                    "TranscodeReasons": ["VideoCodecNotSupported"],
                    "EncodingThreadCount": o["EncodingThreadCount"]},
            }]


def make_handler(service, api_key):
    class Handler(BaseHTTPRequestHandler):
        server_version = "casca-demo-transcoder/1"
        protocol_version = "HTTP/1.1"  # keep-alive, as casca's http_json controller reuses connections

        def setup(self):
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm holds the
            # body until the client's delayed ACK (40 ms per request).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *args):  # quiet: one line per request is noise in the demo
            pass

        def _send(self, code, body=None, ctype="application/json; charset=utf-8"):
            data = b"" if body is None else body.encode()
            self.send_response(code)
            if body is not None:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        def _authorised(self):
            if not api_key:
                return True
            token = self.headers.get("X-Emby-Token") or self.headers.get("X-MediaBrowser-Token")
            auth = self.headers.get("Authorization", "")
            m = re.search(r'Token="([^"]*)"', auth)
            if token == api_key or (m and m.group(1) == api_key):
                return True
            self._send(401, json.dumps({"error": "missing or wrong X-Emby-Token"}))
            return False

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in ("/health", "/System/Ping"):
                self._send(200, "Healthy", "text/plain")
            elif path == "/Sessions":
                if self._authorised():
                    self._send(200, json.dumps(service.sessions()))
            elif path == "/System/Info/Public":
                self._send(200, json.dumps({"ServerName": "casca-demo", "Version": "10.8.13",
                                            "ProductName": "Jellyfin Server (casca demo)",
                                            "Id": "casca-demo", "StartupWizardCompleted": True}))
            elif path == ENDPOINT:
                if self._authorised():
                    self._send(200, json.dumps(service.get()))
            else:
                self._send(404, json.dumps({"error": "not found: %s" % path}))

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            length = self.headers.get("Content-Length")
            try:
                n = int(length) if length is not None else 0
            except ValueError:
                n = -1
            if n < 0 or n > 1 << 20:
                self._send(400, json.dumps({"error": "bad Content-Length (at most 1 MiB)"}))
                return
            body = self.rfile.read(n) if n else b""
            if path != ENDPOINT:
                self._send(404, json.dumps({"error": "not found: %s" % path}))
                return
            if not self._authorised():
                return
            try:
                changes = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                self._send(400, json.dumps({"error": "the body is not JSON: %s" % e}))
                return
            err = service.update(changes)
            if err:
                log("POST rejected: %s" % err)
                self._send(400, json.dumps({"error": err}))
            else:
                self._send(204)

    return Handler


class Reporter:
    """The player: one player report per FPS measurement, through a ReportPipe."""

    def __init__(self, casca, bus, topic, client_id):
        self.pipe = ReportPipe(casca, bus, topic, log)
        self.client_id = client_id

    def send(self, fps, quality):
        self.pipe.send({"Autowatcher ID": self.client_id, "Transcoding FPS": round(fps, 3),
                        "Dropped frames": 0, "Quality": quality,
                        "Time (UTC)": datetime.datetime.now(datetime.timezone.utc)
                                      .strftime("%Y-%m-%d %H:%M:%S")})

    def close(self):
        self.pipe.close()


class Simulated:
    """fps = 4.2 x threads x speed(preset), plus seeded Gaussian noise (never below 0)."""

    def __init__(self, service, seed, noise):
        self.service = service
        self.rng = random.Random(seed)
        self.noise = noise

    def measure(self, interval):
        options = self.service.get()
        fps = (FPS_PER_THREAD * options["EncodingThreadCount"] *
               PRESET_MODEL[options["EncoderPreset"]][0])
        if self.noise > 0:
            fps += self.rng.gauss(0.0, self.noise)
        return max(0.0, fps)

    def stop(self):
        pass


class Ffmpeg:
    """Runs ffmpeg continuously with the current options and measures its FPS."""

    STATS_PERIOD = 0.25  # seconds between ffmpeg's -progress blocks

    def __init__(self, service, ffmpeg, size, rate, clip_seconds):
        self.service = service
        self.ffmpeg = ffmpeg
        self.size = size
        self.rate = rate
        self.clip_seconds = clip_seconds
        self.proc = None
        self.generation = -1
        self.frames = 0         # frame count of the current run, from -progress
        self.total = 0          # frames over all runs
        self.base = 0           # frames of earlier runs
        self.samples = []       # (monotonic time, total frames): the run's start, then each block
        self.buf = b""

    def argv(self, options):
        # Each run encodes clip_seconds of video, then ffmpeg is started again; -progress writes
        # a block of key=value lines (frame=N ... progress=continue) every STATS_PERIOD.
        return [self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
                "-f", "lavfi", "-i", "testsrc2=size=%s:rate=%d:duration=%d"
                % (self.size, self.rate, self.clip_seconds),
                "-c:v", "libx264", "-preset", options["EncoderPreset"],
                "-crf", str(options["H264Crf"]), "-threads", str(options["EncodingThreadCount"]),
                "-filter_threads", "1",
                "-f", "null", "-", "-progress", "pipe:1", "-stats_period", str(self.STATS_PERIOD)]

    def _start(self):
        with self.service.lock:
            options = copy.deepcopy(self.service.options)
            self.generation = self.service.generation
        self.proc = subprocess.Popen(self.argv(options), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=None)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.base = self.total
        self.frames = 0
        self.buf = b""
        self.samples = [(time.monotonic(), self.total)]

    def _kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def _read(self):
        """Reads what ffmpeg has printed; records (time, total frames) at each progress block."""
        try:
            chunk = self.proc.stdout.read()
        except (BlockingIOError, ValueError):
            chunk = None
        if not chunk:
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            key, _, value = line.decode("ascii", "replace").strip().partition("=")
            if key == "frame":
                try:
                    self.frames = int(value)
                except ValueError:
                    pass
            elif key == "progress":
                self.total = self.base + self.frames
                self.samples.append((time.monotonic(), self.total))
                if len(self.samples) > 256:
                    del self.samples[1:-128]

    def measure(self, interval):
        """Lets ffmpeg run for about `interval` seconds (restarting it when a setting changed or
        it ended); returns the frames per second between the last progress block before the
        interval (or the current run's start) and the last block in it. None when no block came
        yet (just started); 0 when ffmpeg has reported nothing for 2 seconds (stalled)."""
        begin = time.monotonic()
        deadline = begin + interval
        while True:
            if self.proc is None or self.generation != self.service.generation:
                self._kill()
                self._start()
            elif self.proc.poll() is not None:
                self._read()
                if self.proc.returncode != 0:
                    log("ffmpeg exited with status %d; restarting it" % self.proc.returncode)
                    time.sleep(0.5)
                self.total = self.base + self.frames
                self._kill()
                self._start()
            left = deadline - time.monotonic()
            if left <= 0 or self.service.stopping:
                break
            select.select([self.proc.stdout], [], [], min(left, 0.1))
            self._read()
        before = [s for s in self.samples if s[0] <= begin]
        first = before[-1] if before else self.samples[0]
        last = self.samples[-1]
        if last[0] > first[0]:
            return (last[1] - first[1]) / (last[0] - first[0])
        if time.monotonic() - last[0] > 2.0:
            return 0.0
        return None

    def stop(self):
        self._kill()


def parse_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    return host.strip("[]") or "127.0.0.1", int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--http", required=True, type=parse_hostport, metavar="HOST:PORT",
                    help="address of the Jellyfin-shaped configuration endpoint")
    ap.add_argument("--bus", help="casca bus address, e.g. tcp://127.0.0.1:5556")
    ap.add_argument("--casca", help="path of the `casca` tool (BUILD/clients/casca)")
    ap.add_argument("--no-report", action="store_true",
                    help="publish no player reports (a player on another host reads GET /Sessions "
                         "instead: deploy/demo/player.py); --bus and --casca are then not needed")
    ap.add_argument("--simulate", action="store_true",
                    help="use the model fps = 4.2 x threads instead of ffmpeg")
    ap.add_argument("--threads", type=int, default=DEFAULT_OPTIONS["EncodingThreadCount"],
                    help="initial EncodingThreadCount (default %(default)s)")
    ap.add_argument("--report-interval", type=float, default=1.0, metavar="SECONDS",
                    help="seconds between player reports (default %(default)s)")
    ap.add_argument("--topic", default="autowatcher/demo", help="bus topic (default %(default)s)")
    ap.add_argument("--id", default="demo", help='the reports\' "Autowatcher ID" (default demo)')
    ap.add_argument("--seed", type=int, default=1, help="seed of the simulated noise")
    ap.add_argument("--noise", type=float, default=0.0, metavar="SD",
                    help="standard deviation of the simulated FPS noise (default 0)")
    ap.add_argument("--api-key", default=os.environ.get("DEMO_API_KEY", ""),
                    help="require this X-Emby-Token (default: $DEMO_API_KEY, none if empty)")
    ap.add_argument("--ffmpeg", default="/usr/bin/ffmpeg", help="ffmpeg binary (real mode)")
    ap.add_argument("--size", default="1280x720", help="test video size (real mode)")
    ap.add_argument("--rate", type=int, default=30, help="test video frame rate (real mode)")
    ap.add_argument("--preset", choices=X264_PRESETS, default=DEFAULT_OPTIONS["EncoderPreset"],
                    help="initial EncoderPreset (real mode; default %(default)s)")
    ap.add_argument("--clip-seconds", type=int, default=3600,
                    help="length of each generated test clip before ffmpeg starts again")
    ap.add_argument("--pid-file", help="write the process id here")
    args = ap.parse_args()

    if not MIN_THREADS <= args.threads <= MAX_THREADS:
        ap.error("--threads must be from %d to %d" % (MIN_THREADS, MAX_THREADS))
    if args.report_interval < 0.05:
        ap.error("--report-interval must be at least 0.05 seconds")
    if args.noise < 0:
        ap.error("--noise must not be negative")
    if not args.no_report and not (args.bus and args.casca):
        ap.error("--bus and --casca are required (or --no-report)")
    if not args.no_report and not (os.path.isfile(args.casca) and os.access(args.casca, os.X_OK)):
        ap.error("--casca %s is not an executable file" % args.casca)
    if not args.simulate and not (os.path.isfile(args.ffmpeg) and os.access(args.ffmpeg, os.X_OK)):
        ap.error("--ffmpeg %s is not an executable file (install Debian's ffmpeg, or use "
                 "--simulate)" % args.ffmpeg)

    service = Service(args.threads)
    service.options["EncoderPreset"] = args.preset
    service.size = args.size
    try:
        httpd = ThreadingHTTPServer(args.http, make_handler(service, args.api_key))
    except OSError as e:
        log("cannot listen on %s:%d: %s" % (args.http[0], args.http[1], e))
        return 1
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())

    def on_signal(signum, frame):
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    workload = (Simulated(service, args.seed, args.noise) if args.simulate
                else Ffmpeg(service, args.ffmpeg, args.size, args.rate, args.clip_seconds))
    reporter = None if args.no_report else Reporter(args.casca, args.bus, args.topic, args.id)
    log("serving http://%s:%d%s (%s mode, %d threads); %s"
        % (args.http[0], httpd.server_address[1], ENDPOINT,
           "simulated" if args.simulate else "ffmpeg", args.threads,
           "no reports (GET /Sessions)" if args.no_report else
           "reporting to %s topic %s every %gs" % (args.bus, args.topic, args.report_interval)))
    try:
        next_report = time.monotonic() + args.report_interval
        while not service.stopping:
            if args.simulate:
                with service.lock:
                    left = next_report - time.monotonic()
                    if left > 0 and not service.stopping:
                        service.lock.wait(left)
                if service.stopping:
                    break
                if time.monotonic() < next_report:
                    continue
                fps = workload.measure(args.report_interval)
            else:
                fps = workload.measure(max(0.0, next_report - time.monotonic()))
                if service.stopping:
                    break
            next_report += args.report_interval
            if next_report < time.monotonic():  # fell behind (suspended): no burst of reports
                next_report = time.monotonic() + args.report_interval
            if fps is None:
                continue
            with service.lock:
                service.fps = fps
                quality = PRESET_MODEL[service.options["EncoderPreset"]][1]
            if reporter:
                reporter.send(fps, quality)
    finally:
        workload.stop()
        if reporter:
            reporter.close()
        httpd.shutdown()
        httpd.server_close()
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
