#!/usr/bin/python3
"""Ingest benchmark: 4 reporter processes (libcasca, batches of points as casca.v1.PublishRequest)
-> cascad's nng bus over tcp -> a protobuf hook -> the LMDB time-series store.

Phase 1, sustained: the reporters send at a fixed total rate; prints points stored per second
(from AdminService.GetStatus hook counters) and cascad's RSS each second, then the average and
whether anything was dropped. Phase 2, overload: the reporters send flat out; the hook's bounded
queue and the store's bounded queue drop (counted) and RSS must stay flat.

  test/bench/ingest/run.sh [--rate 600000] [--seconds 15] [--batch 1000]
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

p = argparse.ArgumentParser()
p.add_argument("--build", required=True)
p.add_argument("--reporter", required=True)
p.add_argument("--rate", type=int, default=600000, help="total points/s in the sustained phase")
p.add_argument("--seconds", type=int, default=15)
p.add_argument("--batch", type=int, default=1000, help="points per message")
p.add_argument("--sync", default="periodic")
p.add_argument("--transport", default="tcp", choices=["tcp", "udp"],
               help="how the reporters reach the bus: nng over tcp, or one datagram per message")
args = p.parse_args()

sys.path.insert(0, os.path.join(args.build, "py"))
import grpc  # noqa: E402
from casca.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402

REPORTERS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid, key="RssAnon:"):
    """RssAnon: the process's own memory (heap, queues). LMDB's map is file-backed (RssFile): its
    pages are the data file in the page cache, growing with the data and reclaimable."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0


def cpu_s(pid):
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_phase(name, rate_each, seconds):
    tmp = tempfile.mkdtemp(prefix="casca-ingest-")
    grpc_port, bus_port = free_port(), free_port()
    cfg = os.path.join(tmp, "casca.yaml")
    with open(cfg, "w") as f:
        f.write(f"""server: {{log_level: warn, listen: "127.0.0.1:{grpc_port}", data_dir: {tmp}/data}}
store: {{sync: {args.sync}, map_size: 1GiB}}
bus: {{listen: ["{args.transport}://127.0.0.1:{bus_port}"], udp_buffer: 32MiB}}
hooks:
  - {{name: bench, topic: "bench/", format: protobuf, queue: 64, queue_bytes: 64MiB}}
""")
    log = open(os.path.join(tmp, "cascad.log"), "w")
    d = subprocess.Popen([os.path.join(args.build, "server", "cascad"), "--config", cfg],
                         stdout=log, stderr=subprocess.STDOUT)
    ch = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    admin = admin_pb2_grpc.AdminServiceStub(ch)

    def status():
        return admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)

    def hook():
        return status().hooks[0]
    for _ in range(200):
        try:
            hook()
            break
        except grpc.RpcError:
            time.sleep(0.05)
    time.sleep(0.3)
    rss0 = rss_mib(d.pid)
    cascad_cpu0, reporters_cpu0 = cpu_s(d.pid), children_cpu_s()
    bus = f"{args.transport}://127.0.0.1:{bus_port}"
    reps = [subprocess.Popen([args.reporter, bus, f"bench/{i}",
                              str(seconds), str(args.batch), str(rate_each), str(i)],
                             stdout=subprocess.PIPE, text=True) for i in range(REPORTERS)]
    print(f"\n## {name}: {REPORTERS} reporters, "
          + (f"{rate_each * REPORTERS:,} points/s offered" if rate_each else "flat out")
          + f", batches of {args.batch} points, {seconds} s")
    print(f"{'t':>4} {'stored pts/s':>13} {'stored':>11} {'dropped msgs':>12} {'queued':>6} "
          f"{'anon MiB':>8} {'file MiB':>8}")
    start = time.time()
    last_t, last_stored = start, hook().stored
    first_stored = last_stored
    rates, rss = [], []
    # the longest time the stored count stood still while the reporters were sending, sampled
    # every 20 ms: a stall of the ingest path (a commit gap) shows here
    gap, still_since, seen = 0.0, time.time(), last_stored
    while any(r.poll() is None for r in reps):
        tick = time.time() + 1
        while time.time() < tick and any(r.poll() is None for r in reps):
            time.sleep(0.02)
            now, stored = time.time(), hook().stored
            if stored != seen:
                if seen != last_stored:  # from the first point stored on
                    gap = max(gap, now - still_since)
                seen, still_since = stored, now
        h, t = hook(), time.time()
        rate = (h.stored - last_stored) / (t - last_t)
        rates.append(rate)
        rss.append(rss_mib(d.pid))
        print(f"{t - start:4.0f} {rate:13,.0f} {h.stored:11,} {h.dropped:12,} {h.queued:6} "
              f"{rss[-1]:8.1f} {rss_mib(d.pid, 'RssFile:'):8.1f}")
        last_t, last_stored = t, h.stored
    sent = 0
    for r in reps:
        out = r.stdout.read()
        sent += int(out.split()[1])
        r.wait()
    send_end = time.time()
    reporters_cpu = children_cpu_s() - reporters_cpu0
    # let the queues drain
    prev = -1
    while hook().stored != prev:
        prev = hook().stored
        time.sleep(0.5)
    cascad_cpu = cpu_s(d.pid) - cascad_cpu0
    st = status()
    h, counts = st.hooks[0], dict(st.counts)
    steady = rates[1:-1] or rates
    print(f"points sent by reporters: {sent:,}; stored: {h.stored - first_stored:,}; "
          f"hook dropped {h.dropped:,} messages ({h.dropped * args.batch:,} points), "
          f"errors {h.errors}")
    print(f"steady ingest: mean {sum(steady) / len(steady):,.0f} points/s, "
          f"min {min(steady):,.0f} points/s (whole run incl. drain: "
          f"{(h.stored - first_stored) / (time.time() - start):,.0f} points/s, sending window "
          f"{send_end - start:.1f} s)")
    print(f"longest stall (nothing stored while sending): {gap * 1000:.0f} ms; longest wait of a "
          f"store write for its commit: {counts.get('store_max_write_wait_us', 0) / 1000:.1f} ms; "
          f"{counts.get('store_commits', 0):,} commits; datagrams lost: "
          f"{counts.get('bus_datagrams_lost', 0):,}")
    msgs, stored_msgs = max(sent // args.batch, 1), max((h.stored - first_stored) // args.batch, 1)
    print(f"CPU per message: reporters {reporters_cpu / msgs * 1e6:.1f} us per message sent, "
          f"cascad {cascad_cpu / stored_msgs * 1e6:.1f} us per message stored")
    print(f"cascad anonymous RSS (heap, queues): {rss0:.1f} MiB idle, max {max(rss):.1f} MiB, "
          f"last {rss[-1]:.1f} MiB; growth over the second half of the run: "
          f"{rss[-1] - rss[len(rss) // 2]:+.1f} MiB")
    ch.close()
    d.terminate()
    d.wait(60)
    log.close()
    errors = [l for l in open(os.path.join(tmp, "cascad.log")) if " error " in l]
    if errors:
        print("cascad logged errors:\n" + "".join(errors[:5]))
    subprocess.run(["rm", "-rf", tmp])


print(f"# casca ingest benchmark ({os.cpu_count()} cores, store sync {args.sync})")
run_phase("sustained", args.rate // REPORTERS, args.seconds)
run_phase("overload", 0, args.seconds)
