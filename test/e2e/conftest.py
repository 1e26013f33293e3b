"""End-to-end fixtures: start the real cascad on a free loopback port with a config written by the
test, talk to it with Debian's grpcio, and stop it with SIGTERM, checking it exits cleanly."""
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

STUBS = os.environ.get("CASCA_PY_STUBS", "build/py")
sys.path.insert(0, STUBS)
# The casca package (clients/python): `casca` is it, `casca.v1` the generated modules in STUBS.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

import grpc  # noqa: E402

# The health and reflection stubs are generated as grpc/health/..., grpc/reflection/...: let the
# installed grpc package find them.
grpc.__path__.append(os.path.join(STUBS, "grpc"))
from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

CASCAD = os.environ.get("CASCAD", "build/server/cascad")
SANITIZED = os.environ.get("CASCA_SANITIZE", "OFF") in ("ON", "1", "TRUE")
START_TIMEOUT = 30 if SANITIZED else 10


def carbon_bundle(tmp_path, zone="AT", value=lambda hour: 100 + hour % 24, hours=8760):
    """A bundled_data dir with `hours` hours of one zone from 2022-01-01T00Z (the whole year by
    default), hour i at value(i) gCO2eq/kWh: much faster to load than the shipped data."""
    d = tmp_path / "bundle"
    d.mkdir(exist_ok=True)
    start = datetime.datetime(2022, 1, 1)
    rows = ["zone,datetime_utc,carbon_intensity_gco2eq_per_kwh"]
    rows += [f"{zone},{(start + datetime.timedelta(hours=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},"
             f"{value(i)}" for i in range(hours)]
    (d / "hourly.csv").write_text("\n".join(rows) + "\n")
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, tmp_path, config, env=None, extra_args=()):
        self.tmp = tmp_path
        self.port = free_port()
        self.config_path = tmp_path / "casca.yaml"
        self.write_config(config)
        self.log_path = tmp_path / "cascad.log"
        self.env = dict(os.environ, **(env or {}))
        self.args = [CASCAD, "--config", str(self.config_path),
                     "--listen", f"127.0.0.1:{self.port}",
                     "--data-dir", str(tmp_path / "data"), *extra_args]
        self.proc = None
        self.channels = []

    def write_config(self, text):
        self.config_path.write_text(text)

    def start(self):
        # a restart (same port and data dir) keeps the earlier runs' lines
        self.log = open(self.log_path, "a" if self.proc else "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cascad exited {self.proc.returncode}:\n{self.output()}")
            try:
                with grpc.insecure_channel(self.target) as ch:
                    stub = health_pb2_grpc.HealthStub(ch)
                    r = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
            except grpc.RpcError:
                time.sleep(0.05)
        raise RuntimeError("cascad did not start serving:\n" + self.output())

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def channel(self, token=None):
        ch = grpc.insecure_channel(self.target)
        if token:
            ch = grpc.intercept_channel(ch, BearerToken(token))
        self.channels.append(ch)
        return ch

    def output(self):
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self, timeout=20):
        """SIGTERM, then the exit code (0 means clean, and under ASan also leak-free)."""
        for ch in self.channels:
            ch.close()
        self.channels = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("cascad did not stop within %ss:\n%s" % (timeout, self.output()))
        self.log.close()
        return self.proc.returncode


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token):
        self.md = ("authorization", f"Bearer {token}")

    def _details(self, d):
        md = list(d.metadata or []) + [self.md]
        return d._replace(metadata=md)

    def intercept_unary_unary(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_unary_stream(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_stream_unary(self, cont, d, it):
        return cont(self._details(d), it)

    def intercept_stream_stream(self, cont, d, it):
        return cont(self._details(d), it)


BASIC_CONFIG = """\
server:
  log_level: debug
store:
  sync: every_commit
"""


@pytest.fixture
def make_daemon(tmp_path):
    """make_daemon(config, env=None) -> a started Daemon; each is stopped (and must exit 0)."""
    started = []

    def make(config=BASIC_CONFIG, env=None, start=True, extra_args=()):
        d = Daemon(tmp_path, config, env, extra_args)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        if d.proc and d.proc.returncode is None:
            rc = d.stop()
            assert rc == 0, f"cascad exited {rc}:\n{d.output()}"
        # an error-level line means the daemon hit something it did not expect
        errors = [l for l in d.output().splitlines() if re.search(r"Z error ", l)]
        assert not errors, "cascad logged errors:\n" + "\n".join(errors)


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()
