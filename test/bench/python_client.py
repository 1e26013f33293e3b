#!/usr/bin/python3
"""The Python package (clients/python) against a local cascad with a memory setting: the latency
of a unary call (Client.get_setting), an agent session's act() round trip (Action ->
ActionResult, memory controller), and casca.Reporter's publishing rate.

    test/bench/python_client.py [BUILD_DIR] [--calls 2000] [--actions 500] [--points 100000]

A benchmark, not a test: nothing fails.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--actions", type=int, default=500)
    ap.add_argument("--points", type=int, default=100000)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ.setdefault("CASCA_PY_STUBS", os.path.join(build, "py"))
    sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
    import casca

    work = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = os.path.join(work, "casca.yaml")
    with open(cfg, "w") as f:
        f.write("server: {log_level: warn}\nstore: {sync: periodic}\n"
                "settings:\n  - {id: Threads, type: int, range: {min: 1, max: 1000000},"
                " controller: {memory: {value: 1}}}\n")
    proc = subprocess.Popen([os.path.join(build, "server", "cascad"), "--config", cfg,
                             "--listen", f"127.0.0.1:{port}", "--data-dir",
                             os.path.join(work, "data")], stdout=subprocess.DEVNULL)
    try:
        c = casca.Client(f"127.0.0.1:{port}").ready(10)
        for _ in range(100):  # warm-up
            c.get_setting("Threads")
        lat = []
        for _ in range(a.calls):
            t0 = time.perf_counter()
            c.get_setting("Threads")
            lat.append((time.perf_counter() - t0) * 1000)
        print(f"Client.get_setting: {a.calls} calls, p50 {pct(lat, 50):.3f} ms, p99 "
              f"{pct(lat, 99):.3f} ms, {a.calls / (sum(lat) / 1000):.0f} calls/s")

        s = c.session("bench", settings=["Threads"], period=0.1)
        s.hello()
        s.next_state(timeout=5)
        lat = []
        for i in range(a.actions):
            t0 = time.perf_counter()
            r = s.act({"Threads": i + 2})
            lat.append((time.perf_counter() - t0) * 1000)
            assert not r.rejected, r.rejected
            time.sleep(0.011)  # at most 10 actions per 100 ms period (the server's rate limit)
        s.goodbye()
        print(f"Session.act (memory controller): {a.actions} actions, p50 {pct(lat, 50):.3f} ms, "
              f"p99 {pct(lat, 99):.3f} ms, mean {statistics.mean(lat):.3f} ms")

        t0 = time.perf_counter()
        rep = casca.Reporter(c, batch=1000, interval=0.2, max_queue=a.points)
        now = time.time() - 60
        for i in range(a.points):
            rep.report("bench_series", float(i), {"w": str(i % 10)}, now + i * 1e-6)
        queued = time.perf_counter() - t0
        rep.close(timeout=120)
        total = time.perf_counter() - t0
        print(f"Reporter: {a.points} points, report() {queued / a.points * 1e6:.1f} us each, "
              f"all published in {total:.2f} s ({a.points / total:.0f} points/s; accepted "
              f"{rep.accepted}, dropped {rep.dropped}, failed {rep.failed})")
        c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
