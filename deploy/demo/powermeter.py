#!/usr/bin/python3
"""A power meter for casca's media-streaming demo: publishes the managed service's power in the
JSON shape of a Tasmota smart plug's telemetry (see deploy/hooks/tasmota.yaml), e.g. on topic
tele/demo-plug/SENSOR:

    {"Time": "2026-01-05T10:00:00",
     "ENERGY": {"TotalStartTime": "2026-01-05T09:55:00", "Total": 0.00412, "Yesterday": 0.0,
                "Today": 0.00412, "Period": 0.0042, "Power": 15.2, "ApparentPower": 16.0,
                "ReactivePower": 5.0, "Factor": 0.95, "Voltage": 230, "Current": 0.07}}

by piping one JSON line per --interval to `casca report --bus BUS --topic TOPIC`.

THE POWER IS AN ESTIMATE, from one of these sources (--source):

  model (default)  a linear power model of the service's CPU use:
                       Power [W] = idle_watts + watts_per_core x busy_cores
                   busy_cores = CPU seconds (user + system) used by the process tree of --pid (the
                   process and all its descendants, read from /proc/PID/stat, children that exited
                   included through cutime/cstime) per second of wall-clock time over the interval.
                   With --simulate, busy_cores comes from the demo service's model instead:
                       busy_cores = EncodingThreadCount x sim_core_share
                   (EncodingThreadCount read from --http, the service's Jellyfin-shaped endpoint),
                   i.e. each transcoding thread keeps sim_core_share of a core busy.
  rapl             Intel/AMD RAPL energy counters where the kernel exposes them
                   (/sys/class/powercap/intel-rapl:N/energy_uj, package domains; needs read
                   access, usually root): the whole CPU package's power, not only the service's.

A real meter needs none of this: bridge a Tasmota plug's MQTT topic tele/PLUG/SENSOR to the casca
bus (e.g. `mosquitto_sub -t tele/plug1/SENSOR | casca report --bus ... --topic tele/plug1/SENSOR`)
and point the carbon SLO's power_series at the hook's series.

Parameters may also come from a JSON or simple "key: value" file (--config) with the keys
idle_watts, watts_per_core, sim_core_share, voltage, power_factor, interval, topic.
The meter may start before the service: while the source gives no first reading (the service's
endpoint not listening yet, say) it says what it waits for and retries every --interval; a reading
that fails later is skipped (and logged) the same way. SIGTERM and SIGINT stop it cleanly, waiting
or not. Standard library only (Debian's /usr/bin/python3).
"""
import argparse
import datetime
import glob
import json
import os
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_pipe import ReportPipe  # noqa: E402

DEFAULTS = {
    # The defaults describe a small server: about 10 W idle, about 12 W more per fully busy core
    # (a 2-core VM host of the kind the demo runs on; measure yours with a plug and fit the two).
    "idle_watts": 10.0,
    "watts_per_core": 12.0,
    "sim_core_share": 1.0,
    "voltage": 230.0,
    "power_factor": 0.95,
    "interval": 1.0,
    "topic": "tele/demo-plug/SENSOR",
}
CONFIG_KEYS = set(DEFAULTS)


def log(msg):
    sys.stderr.write("powermeter: %s\n" % msg)
    sys.stderr.flush()


def load_config(path):
    """Reads a JSON object, or lines of `key: value` (a YAML subset; # comments)."""
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError("%s:%d: expected `key: value`" % (path, n))
            data[key.strip()] = value.strip().strip('"\'')
    if not isinstance(data, dict):
        raise ValueError("%s: expected an object of parameters" % path)
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ValueError("%s: unknown key(s) %s; known: %s"
                         % (path, ", ".join(unknown), ", ".join(sorted(CONFIG_KEYS))))
    out = {}
    for key, value in data.items():
        if key == "topic":
            out[key] = str(value)
        else:
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError("%s: %s must be a number, got %r" % (path, key, value))
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    """(ppid, cpu seconds incl. waited-for children) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or parentheses.
    fields = data[data.rfind(")") + 2:].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / CLK_TCK


def tree_cpu_seconds(root):
    """CPU seconds used so far by root and all its descendants (None if root is gone)."""
    stats = {}
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = read_stat(int(entry))
        if st is None:
            continue
        stats[int(entry)] = st
        children.setdefault(st[0], []).append(int(entry))
    if root not in stats:
        return None
    total = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


class ModelSource:
    """Power = idle + per_core x busy cores of a process tree."""

    def __init__(self, pid, params):
        self.pid = pid
        self.p = params
        self.last = None

    def power(self):
        now = time.monotonic()
        cpu = tree_cpu_seconds(self.pid)
        if cpu is None:
            raise RuntimeError("process %d is gone" % self.pid)
        busy = None
        if self.last is not None and now > self.last[0]:
            # A process that exited between two readings takes its time with it unless it was
            # waited for: never report a negative use.
            busy = max(0.0, (cpu - self.last[1]) / (now - self.last[0]))
        self.last = (now, cpu)
        if busy is None:
            return None, None
        return self.p["idle_watts"] + self.p["watts_per_core"] * busy, busy


class SimulatedSource:
    """Power = idle + per_core x (EncodingThreadCount x sim_core_share)."""

    def __init__(self, url, params):
        self.url = url
        self.p = params

    def power(self):
        with urllib.request.urlopen(self.url, timeout=2) as r:
            threads = json.load(r)["EncodingThreadCount"]
        busy = threads * self.p["sim_core_share"]
        return self.p["idle_watts"] + self.p["watts_per_core"] * busy, busy


class RaplSource:
    """Package power from the RAPL energy counters."""

    def __init__(self):
        self.domains = []
        for d in sorted(glob.glob("/sys/class/powercap/intel-rapl:[0-9]*")):
            if d.count(":") != 1:  # sub-domains (core, uncore, dram) are inside the package
                continue
            try:
                with open(os.path.join(d, "max_energy_range_uj")) as f:
                    wrap = int(f.read())
                with open(os.path.join(d, "energy_uj")) as f:
                    int(f.read())
            except (OSError, ValueError) as e:
                raise RuntimeError("RAPL domain %s is not readable: %s (run as root?)" % (d, e))
            self.domains.append((os.path.join(d, "energy_uj"), wrap))
        if not self.domains:
            raise RuntimeError("no RAPL package domain under /sys/class/powercap (not an Intel or "
                               "AMD CPU with powercap, or a virtual machine): use --source model")
        self.last = None

    def _read(self):
        total = []
        for path, _ in self.domains:
            with open(path) as f:
                total.append(int(f.read()))
        return total

    def power(self):
        now = time.monotonic()
        e = self._read()
        watts = None
        if self.last is not None and now > self.last[0]:
            joules = 0.0
            for (path, wrap), a, b in zip(self.domains, self.last[1], e):
                joules += ((b - a) % (wrap + 1)) / 1e6  # the counter wraps at max_energy_range
            watts = joules / (now - self.last[0])
        self.last = (now, e)
        return watts, None


READ_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


def first_reading(source, stop, interval, what):
    """Takes the source's first reading (a counter's base; the simulated service's first value),
    retrying every `interval` seconds while it fails: the service may come up after the meter
    (its HTTP endpoint not listening yet). Says once what it waits for, then every minute; returns
    the reading, or None if stop was set first."""
    started = time.monotonic()
    tries = 0
    next_note = 0.0
    while True:
        try:
            reading = source.power()
        except READ_ERRORS as e:
            tries += 1
            waited = time.monotonic() - started
            if waited >= next_note:
                log("waiting for %s: %s (retrying every %gs)" % (what, e, interval))
                next_note = waited + 60
            if stop.wait(interval):
                return None
            continue
        if tries:
            log("%s answered after %.1fs: publishing" % (what, time.monotonic() - started))
        return reading


def tasmota_time(t, local):
    dt = datetime.datetime.fromtimestamp(t, None if local else datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def main():
    ap = argparse.ArgumentParser(
        description="Publish the demo service's estimated power as Tasmota plug telemetry.",
        epilog="Power [W] = idle_watts + watts_per_core x busy_cores (an estimate; see the "
               "module documentation).")
    ap.add_argument("--bus", required=True, help="casca bus address, e.g. tcp://127.0.0.1:5556")
    ap.add_argument("--casca", required=True, help="path of the `casca` tool")
    ap.add_argument("--source", choices=("model", "rapl"), default="model")
    ap.add_argument("--pid", type=int, help="root of the measured process tree (model source)")
    ap.add_argument("--simulate", action="store_true",
                    help="busy cores = EncodingThreadCount x sim_core_share, read from --http")
    ap.add_argument("--http", metavar="URL",
                    help="the service's encoding endpoint (with --simulate), e.g. "
                         "http://127.0.0.1:8096/System/Configuration/encoding")
    ap.add_argument("--config", help="JSON or `key: value` file with the parameters below")
    for key, value in DEFAULTS.items():
        ap.add_argument("--" + key.replace("_", "-"), dest=key, default=None,
                        type=str if key == "topic" else float,
                        help="default %s" % value)
    ap.add_argument("--local-time", action="store_true",
                    help="write Time in local time like a real Tasmota plug (default: UTC)")
    ap.add_argument("--verbose", action="store_true", help="print each reading on stderr")
    args = ap.parse_args()

    params = dict(DEFAULTS)
    if args.config:
        try:
            params.update(load_config(args.config))
        except (OSError, ValueError) as e:
            ap.error(str(e))
    for key in DEFAULTS:
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    for key in ("idle_watts", "watts_per_core", "sim_core_share"):
        if params[key] < 0:
            ap.error("%s must not be negative" % key)
    if not 0 < params["power_factor"] <= 1:
        ap.error("power_factor must be in (0, 1]")
    if params["voltage"] <= 0:
        ap.error("voltage must be positive")
    if params["interval"] < 0.05:
        ap.error("interval must be at least 0.05 seconds")
    if not (os.path.isfile(args.casca) and os.access(args.casca, os.X_OK)):
        ap.error("--casca %s is not an executable file" % args.casca)

    try:
        if args.source == "rapl":
            source = RaplSource()
        elif args.simulate:
            if not args.http:
                ap.error("--simulate needs --http URL of the service's encoding endpoint")
            source = SimulatedSource(args.http, params)
        else:
            if args.pid is None:
                ap.error("the model source needs --pid (or --simulate --http URL)")
            source = ModelSource(args.pid, params)
            if tree_cpu_seconds(args.pid) is None:
                ap.error("--pid %d: no such process" % args.pid)
    except RuntimeError as e:
        ap.error(str(e))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())

    reporter = ReportPipe(args.casca, args.bus, params["topic"], log)
    start = time.time()
    total_wh = 0.0
    last_t = None
    log("publishing to %s topic %s every %gs: %s" % (
        args.bus, params["topic"], params["interval"],
        "RAPL package power" if args.source == "rapl" else
        "%g W + %g W x busy cores (%s)" % (params["idle_watts"], params["watts_per_core"],
                                           "simulated: threads x %g" % params["sim_core_share"]
                                           if args.simulate else "CPU of pid %d" % args.pid)))
    what = ("the RAPL counters" if args.source == "rapl" else
            "the service at %s" % args.http if args.simulate else "process %d" % args.pid)
    failures = 0
    try:
        # The first reading of a counter only sets its base; it is retried until the source
        # answers, so the meter may start before the service.
        if first_reading(source, stop, params["interval"], what) is None:
            stop.set()
        while not stop.wait(params["interval"]):
            try:
                watts, busy = source.power()
                failures = 0
            except READ_ERRORS as e:
                failures += 1
                if failures in (1, 10) or failures % 60 == 0:
                    log("no reading: %s" % e)
                continue
            if watts is None:
                continue
            now = time.time()
            period_wh = watts * (now - last_t if last_t else params["interval"]) / 3600
            last_t = now
            total_wh += period_wh
            apparent = watts / params["power_factor"]
            reactive = (max(0.0, apparent ** 2 - watts ** 2)) ** 0.5
            reading = {
                "Time": tasmota_time(now, args.local_time),
                "ENERGY": {
                    "TotalStartTime": tasmota_time(start, args.local_time),
                    "Total": round(total_wh / 1000, 6),
                    "Yesterday": 0.0,
                    "Today": round(total_wh / 1000, 6),
                    "Period": round(period_wh, 4),
                    "Power": round(watts, 2),
                    "ApparentPower": round(apparent, 2),
                    "ReactivePower": round(reactive, 2),
                    "Factor": round(params["power_factor"], 2),
                    "Voltage": round(params["voltage"]),
                    "Current": round(apparent / params["voltage"], 3),
                },
            }
            if args.verbose:
                log("%.2f W%s" % (watts, "" if busy is None else " (%.2f busy cores)" % busy))
            reporter.send(reading)
    finally:
        reporter.close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
