#!/usr/bin/python3
"""`make demo`: casca's media-streaming use case on one machine.

Starts cascad with deploy/demo/casca.yaml, the transcoding service (deploy/demo/transcoder.py:
ffmpeg, or the model with --simulate), the power meter (deploy/demo/powermeter.py) and a decision
agent (GDS, RDS or RLDS); shows the progress once a second; after --duration seconds or Ctrl-C
stops everything and prints the paper's figures for the run (share of time each SLO was
fulfilled, mean and standard deviation of FPS, power and carbon footprint, the agent's decision
time), writes summary.json, samples.csv and PNG plots (gnuplot) into the run directory.

    deploy/demo/run.py --build build [--agent gds|rds|rlds|none] [--simulate] [--duration 180]

Everything runs on loopback on free ports; each run gets its own directory (default
BUILD/demo/run-YYYYmmdd-HHMMSS) with the effective config, the store and every process's log.
"""
import argparse
import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import powermeter  # noqa: E402  (the power model's defaults and the /proc reader)
import transcoder  # noqa: E402  (the ffmpeg workload, for the real-mode calibration)

FPS_SLO, CARBON_SLO, SETTING = "ServiceSLO", "ServiceCarbon", "ServiceParam"
SETTING2 = "ServiceParam2"  # the preset (deploy/demo/casca.yaml)
ZONE = "AT"


PORT_NAMES = ("grpc", "bus", "http", "dashboard")


def free_ports(n):
    """n distinct free loopback ports: all are bound at once before any is released, so two of
    them cannot be the same (a port released is free for the next bind)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def parse_ports(text):
    """--ports GRPC,BUS,HTTP,DASHBOARD: four distinct port numbers."""
    try:
        ports = [int(p) for p in text.split(",")]
    except ValueError:
        ports = []
    if len(ports) != len(PORT_NAMES) or len(set(ports)) != len(ports) or \
            not all(0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(
            "want four distinct ports, GRPC,BUS,HTTP,DASHBOARD (e.g. 50051,5555,8080,9464)")
    return ports



class Proc:
    """A child process with its output in a log file (and optionally echoed line by line)."""

    def __init__(self, name, argv, log_path, env=None, echo=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.lines = []
        # Each child gets its own session: Ctrl-C reaches only this driver, which stops the
        # children in order (and on any exit, see Demo.cleanup). No preexec_fn: Python code run
        # between fork and exec in a process with gRPC's threads can deadlock (seen once in
        # twelve parallel runs), start_new_session runs none.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if echo else self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.reader = None
        if echo:
            self.reader = threading.Thread(target=self._pump, args=(echo,), daemon=True)
            self.reader.start()

    def _pump(self, echo):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.write(line + "\n")
            self.log.flush()
            self.lines.append(line)
            echo(self.name, line)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader:
            self.reader.join(5)
        self.log.close()
        return self.proc.returncode

    def tail(self, n=15):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def calibrate(args, log):
    """Real mode: FPS at 1 thread and at one thread per core, and the busy cores at the latter."""
    ncpu = os.cpu_count() or 1
    service = transcoder.Service(1)
    service.options["EncoderPreset"] = args.preset
    ff = transcoder.Ffmpeg(service, args.ffmpeg, args.size, args.rate, 3600)
    results = {}
    try:
        for threads in (1, max(2, ncpu)):
            if threads != 1:
                service.update({"EncodingThreadCount": threads})
            ff.measure(2.0)  # warm-up: x264's lookahead, the first frames
            cpu0, t0 = powermeter.tree_cpu_seconds(ff.proc.pid) or 0.0, time.monotonic()
            fps = ff.measure(args.calibrate_seconds)
            cpu1 = powermeter.tree_cpu_seconds(ff.proc.pid) if ff.proc else None
            busy = (cpu1 - cpu0) / (time.monotonic() - t0) if cpu1 is not None else float(threads)
            results[threads] = (fps or 0.0, busy)
            log("calibration: %d thread(s): %.1f fps, %.2f busy cores" % (threads, fps or 0, busy))
    finally:
        ff.stop()
    return results


def run_intensity(carbon, carbon_pb2, duration, args):
    """The highest hourly intensity of ZONE over the hours the run spans (now .. now+duration;
    under a carbon replay, the replayed hours)."""
    now = int(time.time())
    span = duration
    if args.replay_from:
        req = carbon_pb2.GetLocationIntensityRequest(zone=ZONE)
        now = carbon.GetLocationIntensity(req, timeout=5).time.seconds  # the replayed hour
        span = duration * args.replay_speed
    worst = None
    for t in range(now - now % 3600, now + int(span) + 1, 3600):
        req = carbon_pb2.GetLocationIntensityRequest(zone=ZONE)
        req.time.seconds = max(t, now)
        i = carbon.GetLocationIntensity(req, timeout=5).gco2eq_per_kwh
        worst = i if worst is None else max(worst, i)
    return worst


def sim_watts(args, threads):
    return args.idle_watts + args.watts_per_core * threads  # powermeter --simulate, share 1.0


def carbon_objective(args, objective, calibration, intensity):
    """The carbon SLO's max, scaled so that both SLOs can be met at once: the footprint of the
    cheapest configuration meeting the FPS SLO passes, one more thread (simulated) does not, at the
    highest intensity of the hours the run spans. Returns (max, explanation)."""
    lo = objective.get("min", 0)
    if calibration:
        watts = args.idle_watts + args.watts_per_core * calibration[max(calibration)][1]
        cmax = round(watts * 1.1 * intensity / 60)
        return cmax, ("%.1f W (a thread per core) + 10%% at %.0f g/kWh" % (watts, intensity))
    n = max(1, math.ceil(lo / transcoder.FPS_PER_THREAD - 1e-9))
    watts = (sim_watts(args, n) + sim_watts(args, n + 1)) / 2
    cmax = round(watts * intensity / 60)
    return cmax, ("between %d threads (%.0f W) and %d (%.0f W) at %.0f g/kWh, the highest "
                  "intensity of the hours this run spans" % (n, sim_watts(args, n), n + 1,
                                                             sim_watts(args, n + 1), intensity))


# RLDS learns from the state that follows each decision, so in its runs (simulated service) the
# SLOs judge the last RLDS_WINDOW_S (not the config's 5 s, which would mix in the 2-3 decisions
# before) and are re-evaluated every RLDS_ENGINE_INTERVAL; the agent's period (rlds_period) is
# longer than that window plus the evaluation lag, and longer than the setting's cooldown.
RLDS_WINDOW_S = 2.0
RLDS_ENGINE_INTERVAL = "250ms"
RLDS_ROLLOUT = 8  # decisions per PPO update: ~70 decisions in 180 s make 8-9 updates
# The reward counts each SLO fulfilled or not, the carbon SLO included; RLDS's extra footprint term
# (--carbon-weight, 0.5 by default) is left out: it ranks every configuration that misses the FPS
# band by its footprint, which drags an agent that starts below the band (4 threads) to 1 thread
# within a few updates, before it has found the band (measured: 0% FPS SLO in 180 s).
RLDS_CARBON_WEIGHT = 0.0


def seconds_of(text):
    """A config duration (`2s`, `500ms`, `1m`, or a number of seconds) in seconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError("not a duration: %r" % (text,))
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


def setting_rails(config_path):
    """(cooldown in seconds, max_step or None) of the demo's setting in the config file."""
    import yaml
    with open(config_path) as f:
        cfg = yaml.safe_load(f)
    for s in cfg.get("settings") or []:
        if s.get("id") == SETTING:
            try:
                cooldown = seconds_of(s["cooldown"]) if s.get("cooldown") is not None else 0.0
            except ValueError as e:
                raise SystemExit("%s: setting %s: cooldown: %s" % (config_path, SETTING, e))
            return cooldown, s.get("max_step")
    raise SystemExit("%s: no setting %s" % (config_path, SETTING))


def rlds_period(args):
    """The RLDS agent's default period: 25% more than the setting's cooldown (every change it
    picks is then allowed: decisions come from states a period apart), and more than the SLO
    window plus the evaluation lag in simulate mode (each reward sees only that decision's
    effect); at least 1 s."""
    cooldown, _ = setting_rails(args.config)
    period = max(1.0, 1.25 * cooldown)
    if args.simulate:
        period = max(period, RLDS_WINDOW_S + 0.5)
    return round(period, 2)


def effective_config(args, ports, out_dir, calibration, intensity):
    """The demo's config with this run's ports and objectives (scaled, see the README)."""
    import yaml
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    cfg["server"]["listen"] = "127.0.0.1:%d" % ports["grpc"]
    cfg["bus"]["listen"] = ["tcp://127.0.0.1:%d" % ports["bus"]]
    cfg.setdefault("http", {})["listen"] = "127.0.0.1:%d" % ports["dashboard"]
    for s in cfg["settings"]:  # every setting of the demo is a field of the service's endpoint
        hj = s["controller"].get("http_json")
        if hj:
            hj["url"] = "http://127.0.0.1:%d/System/Configuration/encoding" % ports["http"]
    notes = []
    slos = {s["id"]: s for s in cfg["slos"]}
    cfg["carbon"]["default_zone"] = ZONE
    slos[CARBON_SLO]["zone"] = ZONE
    if args.replay_from:
        cfg["carbon"]["replay"] = {"from": args.replay_from, "speed": args.replay_speed}
        notes.append("carbon replay: %s's grid from %s at %gx (a day in %.1f min)"
                     % (ZONE, args.replay_from, args.replay_speed, 1440 / args.replay_speed))
    if args.budget_target:
        slos[FPS_SLO]["error_budget"] = {"target": args.budget_target,
                                         "window": args.budget_window}
        notes.append("FPS SLO error budget: fulfilled %g%% of any %s"
                     % (100 * args.budget_target, args.budget_window))
    if calibration:
        (f1, _), (fn, _) = calibration[1], calibration[max(calibration)]
        if fn >= f1 * 1.15:
            # One thread misses the band, a thread per core meets it.
            lo, hi = round((f1 + fn) / 2, 1), round(fn * 1.25, 1)
        else:
            lo, hi = round(0.8 * max(f1, fn), 1), round(1.3 * max(f1, fn), 1)
            notes.append("warning: more threads did not help (%.1f fps at %d threads, %.1f at 1): "
                         "the machine is busy with other work or gives this run one core, so the "
                         "band is around what it can do" % (fn, max(calibration), f1))
        slos[FPS_SLO]["objective"] = {"min": lo, "max": hi}
        # Real FPS is noisy (ffmpeg restarts, other work): judge both SLOs over 15 s.
        for sid in (FPS_SLO, CARBON_SLO):
            slos[sid]["window"] = "15s"
        notes.append("FPS SLO scaled to this machine: [%.1f, %.1f] over 15 s (1 thread %.1f fps, "
                     "%d threads %.1f fps)" % (lo, hi, f1, max(calibration), fn))
    if args.fps_min is not None or args.fps_max is not None:
        o = dict(slos[FPS_SLO]["objective"])
        if args.fps_min is not None:
            o["min"] = args.fps_min
        if args.fps_max is not None:
            o["max"] = args.fps_max
        slos[FPS_SLO]["objective"] = o
    if args.agent == "rlds" and not calibration:
        for sid in (FPS_SLO, CARBON_SLO):
            slos[sid]["window"] = "%gs" % RLDS_WINDOW_S
        cfg.setdefault("slo_engine", {})["interval"] = RLDS_ENGINE_INTERVAL
        notes.append("RLDS run: both SLOs judge the last %g s (mean), evaluated every %s, so the "
                     "state after each decision (every %g s) shows that decision's effect only"
                     % (RLDS_WINDOW_S, RLDS_ENGINE_INTERVAL, args.period))
    if args.carbon_max == "auto" and intensity is not None:
        cmax, why = carbon_objective(args, slos[FPS_SLO]["objective"], calibration, intensity)
        slos[CARBON_SLO]["objective"] = {"max": cmax}
        notes.append("carbon SLO scaled to the FPS SLO and the grid: at most %d mg CO2eq/min (%s)"
                     % (cmax, why))
    elif args.carbon_max not in ("auto", "config"):
        slos[CARBON_SLO]["objective"] = {"max": float(args.carbon_max)}
    path = os.path.join(out_dir, "casca.yaml")
    with open(path, "w") as f:
        f.write("# Generated by deploy/demo/run.py from %s for this run.\n" % args.config)
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path, cfg, notes


def agent_argv(args, target, build):
    period = str(args.period)
    duration = str(int(args.duration) + 60)  # the driver stops it; this is a backstop
    env = dict(os.environ)
    if args.agent in ("gds", "cgds"):
        argv = [os.path.join(build, "agents/gds/casca-gds"), "--target", target,
                "--slo", FPS_SLO, "--setting", SETTING, "--step", "1", "--sign", "+1",
                "--carbon-slo", CARBON_SLO, "--period", period, "--zone", ZONE,
                "--name", "%s-demo" % args.agent, "--duration", duration]
        if args.agent == "cgds":  # its bigger moves keep to the setting's rails
            cooldown, max_step = setting_rails(args.config)
            argv += ["--carbon-aware", "--cooldown", "%g" % cooldown]
            if max_step:
                argv += ["--max-move", str(max_step)]
    elif args.agent == "rds":
        env["CASCA"] = os.path.join(build, "clients/casca")
        argv = [os.path.join(SRC, "agents/rds/casca-rds"), "--target", target,
                "--setting", SETTING, "--period", period, "--seed", str(args.seed),
                "--duration", duration]
    elif args.agent == "rlds":
        env["CASCA_PY_STUBS"] = os.path.join(build, "py")
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(SRC, "clients/python"), os.path.join(build, "py")] +
            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        argv = ["/usr/bin/python3", os.path.join(SRC, "agents/rlds/casca_rlds.py"),
                "--target", target, "--slo", FPS_SLO, "--slo", CARBON_SLO, "--setting", SETTING,
                "--period", period, "--seed", str(args.seed), "--duration", duration,
                "--rollout", str(RLDS_ROLLOUT), "--carbon-weight", "%g" % RLDS_CARBON_WEIGHT]
        # Never pick a change the max_step rail would refuse: a refused change teaches nothing.
        _, max_step = setting_rails(args.config)
        if max_step:
            argv += ["--max-move", str(max_step)]
        # The policy is kept in the build tree: each `make demo AGENT=rlds` goes on training it.
        policy = args.policy or os.path.join(build, "demo", "rlds-policy.pt")
        os.makedirs(os.path.dirname(policy), exist_ok=True)
        argv += ["--policy", policy]
        if args.no_train:
            argv.append("--no-train")
    elif args.agent_cmd:
        argv = [a.replace("{target}", target) for a in args.agent_cmd.split()]
    else:
        return None, env
    return argv, env


# One decision's time as agents print it: GDS "decided in 120 us", or "decision_time=0.2ms",
# "decision 12 us" (a summary such as "decision time mean 120 us" does not match).
DECISION_RE = re.compile(
    r"(?:decided in|decision[ _-]?(?:time)?\s*[=:]?)\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|s)\b",
    re.I)
UNIT = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}


def decision_times_from_output(lines):
    """Decision times (ms) the agent printed, e.g. `decision 0.012 ms` or `decision_time=12us`."""
    out = []
    for line in lines:
        m = DECISION_RE.search(line)
        if m:
            out.append(float(m.group(1)) * UNIT[m.group(2).lower()])
    return out


def mean_sd(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None, None, 0
    return (statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0,
            len(values))


def quantile(values, q):
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def write_plots(out_dir, samples, objectives, log):
    """PNG plots with gnuplot: fps.png, threads.png, carbon.png and overview.png."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        log("gnuplot not found (install Debian's gnuplot-nox): no plots")
        return []
    dat = os.path.join(out_dir, "samples.dat")

    def fmt(v):
        return "?" if v is None else "%.6g" % v

    with open(dat, "w") as f:
        f.write("# t_s fps fps_slo threads power_w carbon_mg_min carbon_slo intensity\n")
        for s in samples:
            f.write(" ".join(fmt(s[k]) for k in ("t", "fps", "fps_slo", "threads", "power_w",
                                                 "carbon", "carbon_slo", "intensity")) + "\n")
    fps_lo, fps_hi = objectives["fps"]
    cmax = objectives["carbon"]
    lines = lambda v, title: ("%g with lines dt 2 lc rgb 'gray40' title '%s'" % (v, title)
                              if v is not None else "")
    fps_plot = ", ".join(x for x in (
        "'%s' using 1:2 with lines lw 1 lc rgb '#1f77b4' title 'FPS reported'" % dat,
        "'' using 1:3 with lines lw 2 lc rgb '#d62728' title 'ServiceSLO (mean over window)'",
        lines(fps_lo, "objective min"), lines(fps_hi, "objective max")) if x)
    thr_plot = "'%s' using 1:4 with steps lw 2 lc rgb '#2ca02c' title 'EncodingThreadCount'" % dat
    carbon_plot = ", ".join(x for x in (
        "'%s' using 1:6 with lines lw 1 lc rgb '#8c564b' title 'carbon footprint (power x intensity)'"
        % dat,
        "'' using 1:7 with lines lw 2 lc rgb '#ff7f0e' title 'ServiceCarbon (mean over window)'",
        lines(cmax, "objective max")) if x)
    def top(keys, extra):
        vals = [s[k] for s in samples for k in keys if s[k] is not None] + \
               [v for v in extra if v is not None]
        return max(vals) * 1.15 if vals and max(vals) > 0 else 1
    tmax = max([s["t"] for s in samples] + [1])
    common = ("set datafile missing '?'\nset grid\nset key outside bottom center horizontal\n"
              "set xlabel 'time since start (s)'\nset xrange [0:%g]\n" % tmax)
    script = common + """
set terminal pngcairo size 1000,420 font ',10'
set output '{d}/fps.png'
set title 'Transcoding FPS'
set ylabel 'frames per second'
set yrange [0:{fps_top}]
plot {fps}
set output '{d}/threads.png'
set title 'Thread count chosen by the agent (ServiceParam = EncodingThreadCount)'
set ylabel 'threads'
set yrange [0:{thr_top}]
plot {thr}
set output '{d}/carbon.png'
set title 'Carbon footprint of the service (zone {zone})'
set ylabel 'mg CO2eq per minute'
set yrange [0:{carbon_top}]
plot {carbon}
set output '{d}/overview.png'
set terminal pngcairo size 1000,1000 font ',10'
set multiplot layout 3,1
set title 'FPS'
set ylabel 'fps'
set yrange [0:{fps_top}]
plot {fps}
set title 'threads'
set ylabel 'threads'
set yrange [0:{thr_top}]
plot {thr}
set title 'carbon footprint'
set ylabel 'mg CO2eq/min'
set yrange [0:{carbon_top}]
plot {carbon}
unset multiplot
""".format(d=out_dir, fps=fps_plot, thr=thr_plot, carbon=carbon_plot, zone=ZONE,
           fps_top=top(("fps", "fps_slo"), (fps_lo, fps_hi)),
           thr_top=max([s["threads"] for s in samples] + [1]) + 1,
           carbon_top=top(("carbon", "carbon_slo"), (cmax,)))
    gp = os.path.join(out_dir, "plots.gp")
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run([gnuplot, gp], capture_output=True, text=True)
    if r.returncode != 0:
        log("gnuplot failed: %s" % r.stderr.strip())
        return []
    return [os.path.join(out_dir, n) for n in ("fps.png", "threads.png", "carbon.png",
                                              "overview.png")]


class Demo:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.procs = []
        self.stop_event = threading.Event()
        self.agent = None
        self.print_lock = threading.Lock()

    def say(self, msg):
        with self.print_lock:
            try:
                print(msg, flush=True)
            except (BrokenPipeError, OSError):
                # The terminal or pipe went away (e.g. `| head`): the run goes on, quietly, and
                # still writes its figures and plots to the run directory.
                sys.stdout = open(os.devnull, "w")

    def echo_agent(self, name, line):
        """Shows the agent's lines, except decisions that changed nothing (in the log only)."""
        if self.args.quiet_agent or (not self.args.verbose_agent and
                                     re.search(r"\b(kept|settling)\b", line)):
            return
        self.say("    [%s] %s" % (name, line))

    def start(self, name, argv, **kw):
        p = Proc(name, argv, os.path.join(self.out, name + ".log"), **kw)
        self.procs.append(p)
        return p

    def wait_serving(self, cascad, timeout=60):
        from grpc.health.v1 import health_pb2, health_pb2_grpc
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not cascad.alive():
                raise SystemExit("cascad exited %s:\n%s" % (cascad.proc.returncode, cascad.tail()))
            try:
                r = health_pb2_grpc.HealthStub(self.channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except self.grpc.RpcError:
                time.sleep(0.1)
        raise SystemExit("cascad did not start serving in %ds:\n%s" % (timeout, cascad.tail()))

    def wait_http(self, service, url, timeout=60):
        """Waits until the service answers url (any HTTP status), so the agent starts on a service
        that is up; casca would cope with a later one, but a demo should start clean."""
        import urllib.error
        import urllib.request
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not service.alive():
                raise SystemExit("the transcoder exited %s:\n%s"
                                 % (service.proc.returncode, service.tail()))
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answers, if not with 200
            except (OSError, ValueError):
                time.sleep(0.1)
        raise SystemExit("the transcoder did not answer %s in %ds:\n%s"
                         % (url, timeout, service.tail()))

    def run(self):
        a = self.args
        stubs = os.path.join(self.build, "py")
        sys.path.insert(0, stubs)
        import grpc
        grpc.__path__.append(os.path.join(stubs, "grpc"))
        self.grpc = grpc
        from casca.v1 import (admin_pb2, admin_pb2_grpc, carbon_pb2, carbon_pb2_grpc,
                              control_pb2, control_pb2_grpc, slo_pb2, slo_pb2_grpc,
                              telemetry_pb2, telemetry_pb2_grpc)

        cascad_bin = os.path.join(self.build, "server/cascad")
        casca_bin = os.path.join(self.build, "clients/casca")
        for b in (cascad_bin, casca_bin):
            if not os.access(b, os.X_OK):
                raise SystemExit("%s is missing: build first (make build)" % b)
        self.out = os.path.abspath(a.out or os.path.join(
            self.build, "demo", time.strftime("run-%Y%m%d-%H%M%S")))
        os.makedirs(self.out, exist_ok=True)
        ports = dict(zip(PORT_NAMES, a.ports or free_ports(len(PORT_NAMES))))
        target = "127.0.0.1:%d" % ports["grpc"]
        mode = "simulated (fps = 4.2 x threads)" if a.simulate else "ffmpeg (real transcoding)"
        self.say("== casca media-streaming demo: %s, agent %s, %d s; run directory %s"
                 % (mode, a.agent if not a.agent_cmd else "custom", a.duration, self.out))

        agent, agent_env = agent_argv(a, target, self.build)
        if agent and not os.path.exists(agent[0 if agent[0] != "/usr/bin/python3" else 1]):
            raise SystemExit("the %s agent is not there: %s (build it, or pick another with "
                             "AGENT=gds|rds|rlds)" % (a.agent, agent[0]))

        calibration = None
        if not a.simulate and (a.fps_min is None or a.fps_max is None):
            self.say("== calibrating the FPS SLO to this machine (%d s)"
                     % (2 * (a.calibrate_seconds + 2)))
            calibration = calibrate(a, self.say)
        config, cfg, notes = effective_config(a, ports, self.out, calibration, None)
        cascad = self.start("cascad", [cascad_bin, "--config", config,
                                       "--data-dir", os.path.join(self.out, "data")])
        self.channel = grpc.insecure_channel(target)
        self.wait_serving(cascad)
        self.say("== cascad serving on %s (config %s)" % (target, config))
        self.say("== dashboard: http://127.0.0.1:%d/  (metrics: http://127.0.0.1:%d/metrics)"
                 % (ports["dashboard"], ports["dashboard"]))
        ctl = control_pb2_grpc.ServiceControlStub(self.channel)
        slo = slo_pb2_grpc.SloServiceStub(self.channel)
        tele = telemetry_pb2_grpc.TelemetryServiceStub(self.channel)
        carbon = carbon_pb2_grpc.CarbonServiceStub(self.channel)
        admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        if a.carbon_max == "auto":
            # The carbon objective depends on the grid's intensity, which cascad knows: ask it,
            # rewrite the file and reload (no restart).
            worst = run_intensity(carbon, carbon_pb2, a.duration, a)
            config, cfg, notes = effective_config(a, ports, self.out, calibration, worst)
            r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
            if not r.ok:
                raise SystemExit("reloading %s failed: %s" % (config, "; ".join(r.errors)))
        for n in notes:
            self.say("   " + n)
        slos = {s["id"]: s for s in cfg["slos"]}
        settings = {s["id"] for s in cfg["settings"]}
        fps_obj = slos[FPS_SLO]["objective"]
        carbon_obj = slos[CARBON_SLO]["objective"]
        objectives = {"fps": (fps_obj.get("min"), fps_obj.get("max")),
                      "carbon": carbon_obj.get("max")}

        svc_argv = ["/usr/bin/python3", os.path.join(HERE, "transcoder.py"),
                    "--http", "127.0.0.1:%d" % ports["http"],
                    "--bus", "tcp://127.0.0.1:%d" % ports["bus"], "--casca", casca_bin,
                    "--threads", str(a.threads), "--report-interval", "1",
                    "--seed", str(a.seed), "--noise", str(a.noise)]
        if a.simulate:
            svc_argv.append("--simulate")
        else:
            svc_argv += ["--preset", a.preset, "--size", a.size, "--rate", str(a.rate)]
        service = self.start("transcoder", svc_argv)
        url = "http://127.0.0.1:%d/System/Configuration/encoding" % ports["http"]
        meter_argv = ["/usr/bin/python3", os.path.join(HERE, "powermeter.py"),
                      "--bus", "tcp://127.0.0.1:%d" % ports["bus"], "--casca", casca_bin,
                      "--idle-watts", str(a.idle_watts), "--watts-per-core", str(a.watts_per_core)]
        if a.meter_source == "rapl":
            meter_argv += ["--source", "rapl"]
        elif a.simulate:
            meter_argv += ["--simulate", "--http", url]
        else:
            meter_argv += ["--pid", str(service.pid)]
        # The simulated meter reads the service's endpoint: it waits for it if it is not up yet.
        meter = self.start("powermeter", meter_argv)
        self.say("== service %s (pid %d), meter: %s W + %s W x busy cores%s"
                 % (url, service.pid, a.idle_watts, a.watts_per_core,
                    " (simulated: cores = threads)" if a.simulate else
                    " (CPU time of the service's process tree)"))

        ci = carbon.GetLocationIntensity(carbon_pb2.GetLocationIntensityRequest(zone=ZONE),
                                         timeout=5)
        self.say("== carbon: zone %s now %.1f gCO2eq/kWh (%s%s)" % (
            ZONE, ci.gco2eq_per_kwh, ci.provider,
            ", estimated: %s" % ci.note if ci.estimated else ""))
        if not a.replay_from:
            self.say("   The bundled data is 2022; at today's date the carbon SLO uses the same "
                     "hour of 2022 (carbon.estimate_from_nearest_year).")
        self.say("== objectives: %s in [%s, %s] fps, %s at most %s mg CO2eq/min"
                 % (FPS_SLO, objectives["fps"][0], objectives["fps"][1], CARBON_SLO,
                    objectives["carbon"]))

        if agent:
            self.wait_http(service, url)
            self.agent = self.start(a.agent if not a.agent_cmd else "agent", agent,
                                    env=agent_env, echo=self.echo_agent)
            self.say("== agent: %s" % " ".join(os.path.relpath(x, SRC) if x.startswith(SRC)
                                               else x for x in agent))
        else:
            self.say("== no agent: the thread count stays at %d" % a.threads)

        def on_signal(signum, frame):
            self.stop_event.set()
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        def last_value(series, now):
            req = telemetry_pb2.QueryRequest(series=series,
                                             aggregation=telemetry_pb2.AGGREGATION_LAST)
            req.start.seconds = int(now) - 3
            r = tele.Query(req, timeout=2)
            for s in r.series:
                for x in s.samples:
                    return x.value
            return None

        samples = []
        session_id = None
        intensity, intensity_at = ci.gco2eq_per_kwh, time.time()
        t0 = time.monotonic()
        next_tick = t0 + 1
        # time | now: FPS, threads, power, carbon | the SLOs (mean over their window) | share of
        # the samples so far in which each SLO was fulfilled
        header = ("   time |    fps threads   power  mg/min | ServiceSLO ok  | ServiceCarbon ok  "
                  "| fulfilled: FPS carbon")
        if not a.quiet:
            self.say(header)
        died = None
        budget = None
        while not self.stop_event.is_set():
            if self.stop_event.wait(max(0.0, next_tick - time.monotonic())):
                break
            next_tick += 1
            t = time.monotonic() - t0
            if t > a.duration:
                break
            for p in (cascad, service, meter):
                if not p.alive():
                    died = p
            if died:
                self.say("!! %s exited %s:\n%s" % (died.name, died.proc.returncode, died.tail()))
                break
            now = time.time()
            try:
                if now - intensity_at > 60 or a.replay_from:  # replayed: a new hour every tick
                    ci = carbon.GetLocationIntensity(
                        carbon_pb2.GetLocationIntensityRequest(zone=ZONE), timeout=2)
                    intensity, intensity_at = ci.gco2eq_per_kwh, now
                preset = None
                if SETTING2 in settings:
                    preset = ctl.GetSetting(control_pb2.GetSettingRequest(id=SETTING2),
                                            timeout=2).value.string_value
                threads = ctl.GetSetting(control_pb2.GetSettingRequest(id=SETTING),
                                         timeout=2).value.int_value
                sf = slo.GetSlo(slo_pb2.GetSloRequest(id=FPS_SLO), timeout=2)
                sc = slo.GetSlo(slo_pb2.GetSloRequest(id=CARBON_SLO), timeout=2)
                fps = last_value("transcoding_fps", now)
                power = last_value("power_w", now)
                if session_id is None and self.agent:
                    for s in admin.ListAgentSessions(admin_pb2.ListAgentSessionsRequest(),
                                                     timeout=2).sessions:
                        session_id = s.session_id
            except grpc.RpcError as e:
                self.say("   %5.0fs  (query failed: %s %s)" % (t, e.code().name, e.details()))
                continue
            if sf.HasField("budget"):
                budget = sf.budget
            s = {"t": round(t, 2), "time": now, "carbon_time": ci.time.seconds,
                 "preset": preset, "fps": fps,
                 "fps_slo": sf.value if sf.has_value else None,
                 "fps_ok": sf.fulfilled if sf.has_value else None,
                 "threads": threads, "power_w": power, "intensity": intensity,
                 "carbon": power * intensity / 60 if power is not None else None,
                 "carbon_slo": sc.value if sc.has_value else None,
                 "carbon_ok": sc.fulfilled if sc.has_value else None}
            samples.append(s)
            share = lambda key: (100.0 * sum(1 for x in samples if x[key]) /
                                 max(1, sum(1 for x in samples if x[key] is not None)))
            f = lambda v, w, p: ("%*.*f" % (w, p, v)) if v is not None else " " * (w - 1) + "-"
            ok = lambda v: "-" if v is None else ("yes" if v else "NO")
            if not a.quiet:
                self.say("  %4.0fs | %6s %7d %5s W %7s | %10s %-3s | %13s %-3s | %13.0f%% %5.0f%%"
                         % (t, f(fps, 6, 1), threads, f(power, 5, 1), f(s["carbon"], 7, 0),
                            f(s["fps_slo"], 10, 2), ok(s["fps_ok"]), f(s["carbon_slo"], 13, 1),
                            ok(s["carbon_ok"]), share("fps_ok"), share("carbon_ok")))
            if self.agent and not self.agent.alive() and not self.stop_event.is_set():
                self.say("!! the agent exited %s:\n%s" % (self.agent.proc.returncode,
                                                         self.agent.tail()))
                self.agent = None

        # The end: stop the agent first (it says goodbye and its lease ends), read the server's
        # figures, then the reporters and the daemon.
        self.say("== stopping")
        agent_rc = None
        agent_lines = []
        if self.agent:
            agent_rc = self.agent.stop()
            agent_lines = self.agent.lines
        figures = {}
        try:
            sf = slo.GetSlo(slo_pb2.GetSloRequest(id=FPS_SLO), timeout=5)
            sc = slo.GetSlo(slo_pb2.GetSloRequest(id=CARBON_SLO), timeout=5)
            figures["server_compliance"] = {
                FPS_SLO: sf.compliance if sf.compliance_covered.seconds else None,
                CARBON_SLO: sc.compliance if sc.compliance_covered.seconds else None,
                "covered_s": {FPS_SLO: sf.compliance_covered.seconds,
                              CARBON_SLO: sc.compliance_covered.seconds}}
            traj = []
            if session_id:
                traj = list(admin.ExportTrajectory(
                    admin_pb2.ExportTrajectoryRequest(session_id=session_id), timeout=30))
            audit = admin.GetAuditLog(admin_pb2.GetAuditLogRequest(), timeout=5)
            figures["setting_changes"] = sum(
                1 for e in audit.entries
                if admin_pb2.AuditOutcome.Name(e.outcome) == "AUDIT_OUTCOME_APPLIED")
        except grpc.RpcError as e:
            self.say("!! reading the final figures failed: %s %s" % (e.code().name, e.details()))
            traj = []
        for p in (meter, service):
            p.stop()
        self.channel.close()
        cascad_rc = cascad.stop(30)

        # Decision times: what the agent printed, and from the trajectory the time from a state
        # to the change it caused being applied (server clock; includes the service's HTTP call).
        printed = decision_times_from_output(agent_lines)
        apply_lat = []
        acted = 0
        for step in traj:
            if step.HasField("action") and step.action.changes:
                acted += 1
                for v in step.result.applied:
                    d = ((v.updated_at.seconds - step.state.time.seconds) * 1e3 +
                         (v.updated_at.nanos - step.state.time.nanos) / 1e6)
                    if d >= 0:
                        apply_lat.append(d)
        fps_vals = [s["fps"] for s in samples]
        figures.update({
            "mode": "simulate" if a.simulate else "ffmpeg",
            "agent": a.agent if not a.agent_cmd else "custom",
            "duration_s": round(samples[-1]["t"], 1) if samples else 0,
            "samples": len(samples),
            "objectives": {"fps": list(objectives["fps"]), "carbon_max": objectives["carbon"]},
            "fulfilled_share": {
                FPS_SLO: share_of(samples, "fps_ok"), CARBON_SLO: share_of(samples, "carbon_ok")},
            "fps": stats(fps_vals), "power_w": stats([s["power_w"] for s in samples]),
            "presets": {p: sum(1 for s in samples if s["preset"] == p)
                        for p in sorted({s["preset"] for s in samples if s["preset"]})},
            "carbon_mg_per_min": stats([s["carbon"] for s in samples]),
            "threads": stats([s["threads"] for s in samples]),
            "carbon_total_mg": sum(s["carbon"] / 60 for s in samples if s["carbon"] is not None),
            "decision_ms_printed": stats(printed, with_quantiles=True),
            "state_to_applied_ms": stats(apply_lat, with_quantiles=True),
            "trajectory_steps": len(traj), "actions_with_changes": acted,
            "exit_status": {"cascad": cascad_rc, "agent": agent_rc},
            "intensity_note": ci.note, "run_dir": self.out,
            "zone": ZONE,
            "replay": ({"from": a.replay_from, "speed": a.replay_speed} if a.replay_from
                       else None),
            # the service ran for the replayed time: its footprint over that time
            "carbon_total_replayed_g": (stats([s["carbon"] for s in samples])["mean"] or 0) *
                                       (samples[-1]["t"] if samples else 0) *
                                       (a.replay_speed if a.replay_from else 1) / 60 / 1000,
            "budget": ({"target": budget.target, "window_s": budget.window.seconds,
                        "allowed_s": budget.allowed.seconds, "spent_s": budget.spent.seconds,
                        "remaining_ratio": budget.remaining_ratio} if budget else None),
            "pids": {p.name: p.pid for p in self.procs},
        })
        with open(os.path.join(self.out, "samples.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(samples[0].keys()) if samples else ["t"])
            w.writeheader()
            w.writerows(samples)
        plots = write_plots(self.out, samples, objectives, self.say) if samples else []
        figures["plots"] = plots
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(figures, f, indent=2)
        self.report(figures)
        if cascad_rc != 0:
            self.say("!! cascad exited %s (see %s)" % (cascad_rc, cascad.log_path))
        return 0 if cascad_rc == 0 and not died else 1

    def report(self, g):
        def ms(st):
            return ("%.3f ms mean, %.3f ms median, %.3f ms p99 over %d decisions"
                    % (st["mean"], st["p50"], st["p99"], st["n"]) if st["n"] else "none recorded")

        def ms_sd(st, unit, p=1):
            return ("%.*f %s, standard deviation %.*f (n = %d)" % (p, st["mean"], unit, p, st["sd"],
                                                                  st["n"])
                    if st["n"] else "no data")
        share = g["fulfilled_share"]
        comp = g.get("server_compliance", {})
        pct = lambda v: "-" if v is None else "%.1f%%" % (100 * v)
        self.say("")
        self.say("== the run in figures (%s mode, agent %s, %.0f s, %d samples)" % (
            g["mode"], g["agent"], g["duration_s"], g["samples"]))
        self.say("   share of time fulfilled:  %s %s (server's compliance %s),  %s %s (server's %s)"
                 % (FPS_SLO, pct(share[FPS_SLO]), pct(comp.get(FPS_SLO)), CARBON_SLO,
                    pct(share[CARBON_SLO]), pct(comp.get(CARBON_SLO))))
        self.say("   FPS:               %s" % ms_sd(g["fps"], "fps"))
        self.say("   threads:           %s" % ms_sd(g["threads"], "threads", 2))
        self.say("   power:             %s  (estimated, see the power model)" % ms_sd(g["power_w"],
                                                                                      "W"))
        self.say("   carbon footprint:  %s  (%.0f mg CO2eq in all)" % (
            ms_sd(g["carbon_mg_per_min"], "mg CO2eq/min"), g["carbon_total_mg"]))
        self.say("   agent decision time (printed by the agent):  %s" % ms(g["decision_ms_printed"]))
        self.say("   state -> change applied (server clock, incl. the service's HTTP call):  %s"
                 % ms(g["state_to_applied_ms"]))
        self.say("   setting changes applied: %s; trajectory steps recorded: %d"
                 % (g.get("setting_changes", "-"), g["trajectory_steps"]))
        if g["intensity_note"]:
            self.say("   carbon intensity: %s" % g["intensity_note"])
        self.say("   run directory: %s (summary.json, samples.csv, logs)" % g["run_dir"])
        for p in g["plots"]:
            self.say("   plot: %s" % p)

    def cleanup(self):
        for p in reversed(self.procs):
            if p.proc.poll() is None:
                p.stop(10)


def share_of(samples, key):
    known = [s[key] for s in samples if s[key] is not None]
    return sum(1 for v in known if v) / len(known) if known else None


def stats(values, with_quantiles=False):
    m, sd, n = mean_sd(values)
    out = {"mean": m, "sd": sd, "n": n}
    if with_quantiles:
        v = [x for x in values if x is not None]
        out.update({"p50": quantile(v, 0.5), "p99": quantile(v, 0.99)})
    return out


def main():
    ap = argparse.ArgumentParser(description="casca's media-streaming demo (make demo)")
    ap.add_argument("--build", default=os.path.join(SRC, "build"), help="the build directory")
    ap.add_argument("--agent", default="gds", choices=("gds", "cgds", "rds", "rlds", "none"),
                    help="cgds: GDS --carbon-aware (spends the FPS SLO's error budget in the "
                         "dirtiest hours; needs --budget-target)")
    ap.add_argument("--agent-cmd", help="run this agent command line instead ({target} = the "
                                        "gRPC address)")
    ap.add_argument("--simulate", action="store_true", help="the model instead of ffmpeg")
    ap.add_argument("--duration", type=float, default=180, help="seconds (default 180)")
    ap.add_argument("--period", type=float, default=None,
                    help="the agent's period in seconds (default: 1, RDS 5 like its own "
                         "default, RLDS 1.25 x the setting's cooldown, at least 2.5 simulated)")
    ap.add_argument("--threads", type=int, default=None,
                    help="initial thread count (default 4 simulated, 1 with ffmpeg)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.5, help="simulated FPS noise (SD, fps)")
    ap.add_argument("--policy", help="RLDS policy file (default BUILD/demo/rlds-policy.pt, kept "
                                     "between runs so RLDS goes on learning)")
    ap.add_argument("--config", default=os.path.join(HERE, "casca.yaml"))
    ap.add_argument("--out", help="run directory (default BUILD/demo/run-TIMESTAMP)")
    ap.add_argument("--fps-min", type=float, help="override the FPS objective's minimum")
    ap.add_argument("--fps-max", type=float, help="override the FPS objective's maximum")
    ap.add_argument("--carbon-max", default="auto",
                    help="the carbon objective in mg CO2eq/min: a number, `config` (the config "
                         "file's), or `auto` (default: scaled to the FPS SLO and the grid)")
    ap.add_argument("--idle-watts", type=float, default=powermeter.DEFAULTS["idle_watts"])
    ap.add_argument("--watts-per-core", type=float,
                    default=powermeter.DEFAULTS["watts_per_core"])
    ap.add_argument("--meter-source", choices=("model", "rapl"), default="model")
    ap.add_argument("--ffmpeg", default="/usr/bin/ffmpeg")
    ap.add_argument("--preset", default="veryfast", choices=transcoder.X264_PRESETS)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--rate", type=int, default=30)
    ap.add_argument("--calibrate-seconds", type=float, default=5)
    ap.add_argument("--quiet-agent", action="store_true", help="do not echo the agent's lines")
    ap.add_argument("--ports", type=parse_ports,
                    help="GRPC,BUS,HTTP,DASHBOARD ports (default: free ones; runs started "
                         "together need ports chosen together, as make experiment does)")
    ap.add_argument("--quiet", action="store_true", help="no line a second (make experiment)")
    ap.add_argument("--zone", default=ZONE, help="grid zone of the service (default AT)")
    ap.add_argument("--replay-from", help="replay the zone's grid from this UTC time, e.g. "
                                          "2022-05-21T00:00:00Z (carbon.replay)")
    ap.add_argument("--replay-speed", type=float, default=120,
                    help="replayed seconds per second (default 120: a day in 12 minutes)")
    ap.add_argument("--budget-target", type=float,
                    help="give the FPS SLO an error budget: fulfilled this share of the window")
    ap.add_argument("--budget-window", default="24h", help="the error budget's window (24h)")
    ap.add_argument("--no-train", action="store_true",
                    help="RLDS: run the --policy as it is (no learning during the run)")
    ap.add_argument("--verbose-agent", action="store_true",
                    help="echo every agent line (default: only those that change something)")
    args = ap.parse_args()
    globals()["ZONE"] = args.zone  # the zone every part of the run uses
    if args.agent == "cgds" and not args.budget_target:
        ap.error("--agent cgds needs --budget-target (the FPS SLO's error budget it spends)")
    if args.period is None:
        args.period = (5 if args.agent == "rds" else
                       rlds_period(args) if args.agent == "rlds" and not args.agent_cmd else 1)
    if args.threads is None:
        args.threads = 4 if args.simulate else 1
    if args.duration <= 0:
        ap.error("--duration must be positive")
    if args.carbon_max not in ("auto", "config"):
        try:
            float(args.carbon_max)
        except ValueError:
            ap.error("--carbon-max: a number, auto or config")
    if args.agent_cmd:
        args.agent = "none"
    demo = Demo(args)
    try:
        return demo.run()
    finally:
        demo.cleanup()


if __name__ == "__main__":
    sys.exit(main())
