"""The scrape probe end to end (issue 16, part 3): a probe with `scrape: true` reads Debian's real
`prometheus-node-exporter` every period; the samples it keeps (`match:`) become casca series
with their labels and the probe's tags as tags, and an SLO declared over one of them (free
memory) gets a value without any reporter. A page with bad lines (a small HTTP server on
loopback) keeps its good samples, and the probe's own response time and success are recorded."""
import http.server
import os
import shutil
import subprocess
import threading

import pytest

from casca.v1 import slo_pb2, slo_pb2_grpc
from casca.v1 import telemetry_pb2 as tm
from casca.v1 import telemetry_pb2_grpc as tm_grpc

from conftest import free_port
from test_metrics import wait_for

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"


def series(d):
    r = tm_grpc.TelemetryServiceStub(d.channel()).ListSeries(tm.ListSeriesRequest(), timeout=10)
    return {(s.series, tuple(sorted(s.tags.items()))) for s in r.series}


@pytest.fixture
def node_exporter(tmp_path):
    if not os.path.exists(NODE_EXPORTER):
        pytest.fail(f"{NODE_EXPORTER} is missing: run deploy/install-deps.sh (Debian package "
                    "prometheus-node-exporter)")
    port = free_port()
    log = open(tmp_path / "node_exporter.log", "w")
    p = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                          "--collector.disable-defaults", "--collector.meminfo",
                          "--collector.loadavg", "--collector.rapl"],
                         stdout=log, stderr=subprocess.STDOUT)
    yield f"127.0.0.1:{port}"
    p.terminate()
    p.wait(20)
    log.close()


def test_slo_over_node_exporter_metrics(make_daemon, node_exporter):
    d = make_daemon(f"""\
probes:
  - name: node
    url: http://{node_exporter}/metrics
    period: 200ms
    scrape: true
    match: [node_memory_MemAvailable_bytes, node_load, node_rapl_]
    tags: {{host: lab-1}}
slos:
  - id: FreeMemory
    unit: bytes
    series: node_memory_MemAvailable_bytes
    tags: {{probe: node}}
    aggregation: last
    window: 1m
    objective: {{min: 1}}
slo_engine: {{interval: 100ms}}
""")
    want = {("node_memory_MemAvailable_bytes", (("host", "lab-1"), ("probe", "node"))),
            ("node_load1", (("host", "lab-1"), ("probe", "node"))),
            ("probe_success", (("host", "lab-1"), ("probe", "node")))}
    got = wait_for(lambda: want <= series(d) and series(d), 60)
    assert got, (series(d), d.output())
    # match: kept only these (RAPL counters too, where the hardware has them)
    names = {s for s, _ in got}
    assert names - {"node_rapl_package_joules_total", "node_rapl_core_joules_total",
                    "node_rapl_dram_joules_total", "node_rapl_uncore_joules_total"} == {
        "node_memory_MemAvailable_bytes", "node_load1", "node_load5", "node_load15",
        "probe_success", "probe_response_ms"}, names
    stub = slo_pb2_grpc.SloServiceStub(d.channel())
    st = wait_for(lambda: (lambda s: s if s.has_value else None)(
        stub.GetSlo(slo_pb2.GetSloRequest(id="FreeMemory"), timeout=10)), 30)
    assert st and st.fulfilled, st
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < st.value <= total * 1.1


class Page(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_bad_lines_and_values_are_left_out(make_daemon):
    Page.body = (b"# TYPE good gauge\n"
                 b'good{probe="theirs",le="+Inf"} 7\n'
                 b"not a sample line\n"
                 b"not_finite NaN\n"
                 b"infinite +Inf\n"
                 b'long_label{v="' + b"x" * 5000 + b'"} 1\n'
                 b"old 1 1000\n"
                 b"also_good 8\n")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/metrics"
        d = make_daemon(f"""\
probes:
  - {{name: page, url: "{url}", period: 200ms,
     scrape: true}}
""")
        got = wait_for(lambda: {"good", "also_good"} <= {s for s, _ in series(d)} and series(d),
                       60)
        assert got, d.output()
        assert {s for s, _ in got} == {"good", "also_good", "probe_success", "probe_response_ms"}
        # the page's own probe label does not hide the probe's
        assert ("good", (("exported_probe", "theirs"), ("le", "+Inf"), ("probe", "page"))) in got
        out = d.output()
        assert (f"probe page: 1 line of {url} is not a Prometheus sample, the first at line 3: "
                "the value is not a number") in out, out
        assert ("probe page: 2 samples refused by the store, the first: long_label: the series "
                "name and tags take 5025 bytes, over the limit of 480") in out, out
    finally:
        srv.shutdown()
