#!/usr/bin/python3
"""`make experiment`: the CASCA paper's evaluation on one machine, over a replayed day of a real
grid, in minutes.

Each agent drives the demo service (deploy/demo: the transcoder, the power meter, cascad) through
the same day of the zone's hourly carbon intensity, replayed fast (carbon.replay), with the FPS
SLO given an error budget; the run is repeated and the paper's table is printed with the spread
over repeats: FPS-SLO fulfilment, budget spent, FPS, threads, power, carbon per minute and over
the day, decision time. Every run is deploy/demo/run.py with the same options but the agent; the
agents of one repeat run side by side (each with its own cascad, service and meter on its own
ports) in simulate mode, one after the other in real mode (ffmpeg needs the cores).

    deploy/experiment.py --build build [--real] [--repeats 3] [--agents rds,gds,cgds,rlds]
        [--zone ES] [--day 2022-04-10] [--speed 240] [--budget-target 0.8] [--out DIR]

Writes DIR/experiment.md and DIR/experiment.json (the table and every run's figures), and
DIR/day.png (gnuplot: the zone's intensity, each agent's threads and FPS over the replayed day, of
the first repeat); each run's own directory is DIR/repeat-N/AGENT.

The agents (one row each in AGENTS): RDS (random), GDS (the paper's Algorithm 1), CGDS (GDS
--carbon-aware: spends the FPS SLO's error budget in the dirtiest hours ahead) and RLDS (PPO,
trained beforehand against the simulated service with agents/rlds/train_sim.py, a reproducible
command, then run with its policy fixed).
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
RUN = os.path.join(HERE, "demo", "run.py")
TRAIN = os.path.join(SRC, "agents", "rlds", "train_sim.py")
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.dirname(RUN))
from run import PORT_NAMES, free_ports  # noqa: E402  (the demo's own port choice)

# name -> (run.py --agent, extra run.py options, what it is)
AGENTS = {
    "rds": ("rds", [], "RDS: a random thread count every period"),
    "gds": ("gds", [], "GDS: the paper's Algorithm 1"),
    "cgds": ("cgds", [], "CGDS: GDS spending the error budget in the dirtiest hours"),
    "rlds": ("rlds", ["--no-train"], "RLDS: PPO, trained on the simulated service first"),
}

# Days of the bundled 2022 data with a large daily swing (see the README): a sunny spring day in
# Germany (173 to 538 gCO2eq/kWh), a windy one in western Denmark (153 to 571), a sunny one in
# Spain (90 to 283).
DAYS = {"DE": "2022-05-21", "DK-DK1": "2022-03-27", "ES": "2022-04-10"}


def mean_sd(values):
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def pm(values, fmt="%.1f", scale=1.0):
    m, sd = mean_sd(values)
    if m is None:
        return "-"
    return (fmt + " ± " + fmt) % (m * scale, sd * scale)


def run_one(args, agent, repeat, out, policy, ports):
    what, extra, _ = AGENTS[agent]
    argv = [PY, RUN, "--build", args.build, "--agent", what, "--duration", str(args.duration),
            "--ports", ",".join(map(str, ports)),
            "--zone", args.zone, "--replay-from", args.day + "T00:00:00Z",
            "--replay-speed", str(args.speed), "--budget-target", str(args.budget_target),
            "--seed", str(repeat), "--threads", str(args.threads), "--quiet", "--quiet-agent",
            "--out", out] + extra
    if not args.real:
        argv.append("--simulate")
    if agent == "rlds":
        argv += ["--policy", policy]
    if args.fps_band:  # real mode: every run gets the band the first one calibrated
        argv += ["--fps-min", "%g" % args.fps_band[0], "--fps-max", "%g" % args.fps_band[1]]
    log = open(os.path.join(os.path.dirname(out), agent + ".log"), "w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=SRC), log


def train_rlds(args, policy):
    if os.path.exists(policy) and not args.retrain:
        print("== RLDS policy %s (kept; --retrain trains it again)" % policy, flush=True)
        return
    argv = [PY, TRAIN, "--steps", str(args.rlds_steps), "--seed", "1", "--policy", policy]
    print("== training RLDS: %s" % " ".join(os.path.relpath(a, SRC) if a.startswith(SRC) else a
                                            for a in argv), flush=True)
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=SRC, capture_output=True, text=True,
                       env=dict(os.environ, CASCA_PY_STUBS=os.path.join(args.build, "py")))
    if r.returncode != 0:
        raise SystemExit("training RLDS failed:\n" + r.stdout[-2000:] + r.stderr[-2000:])
    print("   %s (%.0f s)" % (r.stdout.strip().splitlines()[-1], time.monotonic() - t0),
          flush=True)


def read_samples(path):
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def day_plot(args, runs, out, fps_band):
    """day.png: intensity, threads and FPS over the replayed day, one line per agent."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("gnuplot not found (Debian's gnuplot-nox): no plot")
        return None
    files = []
    for agent, run_dir in runs:
        samples = read_samples(os.path.join(run_dir, "samples.csv"))
        dat = os.path.join(out, agent + ".dat")
        with open(dat, "w") as f:
            f.write("# replayed_hour intensity threads fps\n")
            for s in samples:
                hour = float(s["t"]) * args.speed / 3600
                f.write("%.4f %s %s %s\n" % (hour, s["intensity"] or "?", s["threads"] or "?",
                                             s["fps"] or "?"))
        files.append((agent, dat))
    colours = {"rds": "#7f7f7f", "gds": "#1f77b4", "cgds": "#2ca02c", "rlds": "#d62728"}
    per = lambda col: ", ".join("'%s' using 1:%d with steps lw 2 lc rgb '%s' title '%s'"
                                % (dat, col, colours.get(a, "black"), a.upper())
                                for a, dat in files)
    png = os.path.join(out, "day.png")
    hours = min(24.0, args.duration * args.speed / 3600)  # the replayed span a run covers
    script = """set terminal pngcairo size 1000,1100 font ',10'
set output '{png}'
set datafile missing '?'
set grid
set key outside right top
set xrange [0:{hours:g}]
set xtics {xtics:g}
set xlabel 'hour of {day} (UTC, replayed at {speed:g}x)'
set multiplot layout 3,1
set title 'Grid carbon intensity, {zone}'
set ylabel 'gCO2eq/kWh'
plot '{first}' using 1:2 with steps lw 2 lc rgb '#8c564b' title 'intensity'
set title 'Threads chosen'
set ylabel 'threads'
set yrange [0:9]
plot {threads}
set title 'Transcoding FPS (objective {lo:g} to {hi:g})'
set ylabel 'fps'
set yrange [0:*]
plot {fps}, {lo:g} with lines dt 2 lc rgb 'gray40' notitle, {hi:g} with lines dt 2 lc rgb 'gray40' notitle
unset multiplot
""".format(png=png, day=args.day, speed=args.speed, zone=args.zone, first=files[0][1],
           threads=per(3), fps=per(4), lo=fps_band[0], hi=fps_band[1], hours=hours,
           xtics=max(1, round(hours / 12)))
    gp = os.path.join(out, "day.gp")
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run([gnuplot, gp], capture_output=True, text=True)
    if r.returncode != 0:
        print("gnuplot failed: %s" % r.stderr.strip())
        return None
    return png


def table(args, results):
    rows = []
    head = ("| agent | FPS SLO fulfilled | budget spent | FPS | threads | power (W) | "
            "carbon (mg/min) | carbon over the day (g) | decision (ms) |")
    rows.append(head)
    rows.append("|" + "---|" * 9)
    for agent in args.agents:
        runs = results[agent]
        col = lambda f: [f(r) for r in runs]
        budget = col(lambda r: (r["budget"]["spent_s"] / r["budget"]["allowed_s"])
                     if r.get("budget") and r["budget"]["allowed_s"] else None)
        rows.append("| %s | %s %% | %s %% | %s | %s | %s | %s | %s | %s |" % (
            agent.upper(),
            pm(col(lambda r: r["fulfilled_share"]["ServiceSLO"]), scale=100),
            pm(budget, "%.0f", scale=100),
            pm(col(lambda r: r["fps"]["mean"])),
            pm(col(lambda r: r["threads"]["mean"]), "%.2f"),
            pm(col(lambda r: r["power_w"]["mean"])),
            pm(col(lambda r: r["carbon_mg_per_min"]["mean"]), "%.0f"),
            pm(col(lambda r: r["carbon_total_replayed_g"]), "%.1f"),
            pm(col(lambda r: r["decision_ms_printed"]["mean"]), "%.2f")))
    return "\n".join(rows)


def goals(args, results):
    """The issue's goals, checked on the table's figures."""
    lines = []
    m = lambda agent, f: mean_sd([f(r) for r in results.get(agent, [])])[0]
    fps = lambda r: r["fulfilled_share"]["ServiceSLO"]
    carbon = lambda r: r["carbon_mg_per_min"]["mean"]
    if "cgds" in results and "gds" in results:
        f, c, g = m("cgds", fps), m("cgds", carbon), m("gds", carbon)
        saving = 1 - c / g if c is not None and g else None
        lines.append("- CGDS fulfilment %.1f%% against its target %.0f%%: %s" % (
            100 * f, 100 * args.budget_target, "met" if f >= args.budget_target else "MISSED"))
        lines.append("- CGDS carbon per minute %.1f%% below GDS's (goal: at least 10%%): %s" % (
            100 * saving, "met" if saving >= 0.10 else "MISSED"))
    if "rds" in results:
        r = m("rds", fps)
        better = [a.upper() for a in ("gds", "cgds") if a in results and m(a, fps) > r + 0.2]
        lines.append("- GDS and CGDS well above RDS in fulfilment (RDS %.1f%%): %s" % (
            100 * r, ", ".join(better) or "no"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="the paper's evaluation over a replayed day")
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--real", action="store_true", help="ffmpeg instead of the simulated service")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agents", default="rds,gds,cgds,rlds")
    ap.add_argument("--zone", default="ES", help="grid zone (default ES; see DAYS)")
    ap.add_argument("--day", help="the replayed UTC day (default: the zone's in DAYS)")
    ap.add_argument("--speed", type=float, default=None,
                    help="replayed seconds per second (default 240 simulated: a day in 6 min; "
                         "120 with --real)")
    ap.add_argument("--duration", type=float, help="seconds per run (default: one day)")
    ap.add_argument("--budget-target", type=float, default=0.8,
                    help="the FPS SLO must be met this share of any 24 h (default 0.8: 4.8 h "
                         "of misses a day)")
    ap.add_argument("--threads", type=int, default=6,
                    help="the service's thread count at the start (default 6: the objective is "
                         "met, so the day, not the climb to it, decides the figures)")
    ap.add_argument("--rlds-steps", type=int, default=3000, help="RLDS training decisions")
    ap.add_argument("--retrain", action="store_true", help="train RLDS again")
    ap.add_argument("--out", help="directory (default BUILD/experiment/TIMESTAMP)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    for a in args.agents:
        if a not in AGENTS:
            ap.error("unknown agent %r (known: %s)" % (a, ", ".join(AGENTS)))
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if not 0 < args.budget_target < 1:
        ap.error("--budget-target must be between 0 and 1")
    args.day = args.day or DAYS.get(args.zone)
    if not args.day:
        ap.error("--day is needed for zone %s (no default day)" % args.zone)
    args.speed = args.speed or (120 if args.real else 240)
    args.duration = args.duration or 86400 / args.speed
    args.fps_band = None
    out = os.path.abspath(args.out or os.path.join(
        args.build, "experiment", time.strftime("%Y%m%d-%H%M%S")))
    os.makedirs(out, exist_ok=True)
    policy = os.path.join(args.build, "experiment", "rlds-policy.pt")
    print("== casca experiment: %s, zone %s on %s replayed at %gx (%.1f min a run), agents %s, "
          "%d repeat(s), FPS SLO budget %.0f%%; %s" % (
              "ffmpeg" if args.real else "simulated service", args.zone, args.day, args.speed,
              args.duration / 60, ", ".join(args.agents), args.repeats,
              100 * args.budget_target, out), flush=True)
    if "rlds" in args.agents:
        os.makedirs(os.path.dirname(policy), exist_ok=True)
        train_rlds(args, policy)

    results = {a: [] for a in args.agents}
    first = []
    for rep in range(1, args.repeats + 1):
        rep_dir = os.path.join(out, "repeat-%d" % rep)
        os.makedirs(rep_dir, exist_ok=True)
        batches = [args.agents] if not args.real else [[a] for a in args.agents]
        for batch in batches:
            t0 = time.monotonic()
            # runs started together get their ports together: chosen one by one, two runs
            # could both be given a port the other had just released
            ports = free_ports(len(batch) * len(PORT_NAMES))
            procs = {a: run_one(args, a, rep, os.path.join(rep_dir, a), policy,
                                ports[i * len(PORT_NAMES):(i + 1) * len(PORT_NAMES)])
                     for i, a in enumerate(batch)}
            for a, (p, log) in procs.items():
                # a run that outlives its duration by minutes is stuck: stop it (run.py stops
                # its children on SIGTERM) and say so, rather than wait for ever
                try:
                    rc = p.wait(timeout=max(0, t0 + args.duration + 300 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.terminate()
                    rc = "stuck, stopped after %.0f s" % (time.monotonic() - t0)
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                log.close()
                summary = os.path.join(rep_dir, a, "summary.json")
                if rc != 0 or not os.path.exists(summary):
                    raise SystemExit("run %s of repeat %d failed (exit %s): see %s" % (
                        a, rep, rc, os.path.join(rep_dir, a + ".log")))
                with open(summary) as f:
                    results[a].append(json.load(f))
                # ffmpeg's FPS depends on the machine: the first run calibrates the objective
                # (run.py), the others reuse it so that every agent is judged by the same band
                if args.real and not args.fps_band:
                    args.fps_band = results[a][-1]["objectives"]["fps"]
                if rep == 1:
                    first.append((a, os.path.join(rep_dir, a)))
            print("== repeat %d: %s done in %.0f s" % (rep, ", ".join(batch),
                                                      time.monotonic() - t0), flush=True)

    md = table(args, results)
    check = goals(args, results)
    fps_band = results[args.agents[0]][0]["objectives"]["fps"]
    png = day_plot(args, first, out, fps_band)
    header = ("casca experiment, %s, zone %s on %s replayed at %gx for %.0f s a run, FPS SLO "
              "[%g, %g] with a %.0f%% error budget over 24 h, %d repeat(s) (± = standard "
              "deviation over repeats)"
              % ("ffmpeg" if args.real else "simulated service", args.zone, args.day,
                 args.speed, args.duration, fps_band[0], fps_band[1], 100 * args.budget_target,
                 args.repeats))
    text = "%s\n\n%s\n\n%s\n" % (header, md, check)
    with open(os.path.join(out, "experiment.md"), "w") as f:
        f.write(text + ("\n![the day](day.png)\n" if png else ""))
    with open(os.path.join(out, "experiment.json"), "w") as f:
        json.dump({"options": {k: v for k, v in vars(args).items()}, "results": results,
                   "when": datetime.datetime.now(datetime.timezone.utc).isoformat()}, f,
                  indent=2)
    print("\n" + text)
    print("written: %s, %s%s" % (os.path.join(out, "experiment.md"),
                                 os.path.join(out, "experiment.json"),
                                 ", " + png if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
