#!/usr/bin/python3
"""How fast the RLDS agent (agents/rlds/casca_rlds.py) learns, offline: the agent runs unchanged
against a model of the demo's simulated service instead of a casca session, over many seeds.

    test/bench/rlds_sim.py [--seeds 20] [--steps 250] [--start 2] [--max 16] [--carbon-max 1000]
                           [--lag 0.1] [-- AGENT FLAGS...]

The model is agents/rlds/sim_env.py at a constant 200 gCO2eq/kWh: threads in [1, --max],
fps = 4.2 x threads with the SLO [24, 30], footprint = (10 + 12 x threads) W x 200 / 60 mg/min
with the carbon SLO max --carbon-max; the observation after an action shows the previous thread
count with probability --lag (a slow report). Prints, per
seed, the mean reward of the last quarter of the decisions, and the mean reward of uniformly
random values for comparison. A benchmark: nothing fails. Needs BUILD/py (CASCA_PY_STUBS).
"""
import argparse
import contextlib
import io
import os
import statistics
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "agents", "rlds"))
import casca_rlds  # noqa: E402
import sim_env  # noqa: E402  (the model, shared with agents/rlds/train_sim.py)

INTENSITY = 200.0


def reward(threads, cmax):
    fps, fp = sim_env.FPS_PER_THREAD * threads, (10 + 12 * threads) * INTENSITY / 60
    return sim_env.reward(fps, fp, cmax)


def main():
    argv = sys.argv[1:]
    agent_flags = []
    if "--" in argv:
        i = argv.index("--")
        argv, agent_flags = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=51)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--start", type=int, default=2)
    ap.add_argument("--max", type=int, default=16)
    ap.add_argument("--carbon-max", type=float, default=1000.0)
    ap.add_argument("--lag", type=float, default=0.1)
    ap.add_argument("--lag-seed", type=int, default=7)
    opts = ap.parse_args(argv)
    casca_rlds.CascaEnv = sim_env.model_env(opts.max, opts.start, opts.carbon_max, opts.lag,
                                            opts.lag_seed, INTENSITY)
    rand = statistics.mean(reward(t, opts.carbon_max) for t in range(1, opts.max + 1))
    best = max(reward(t, opts.carbon_max) for t in range(1, opts.max + 1))
    print(f"model: threads 1..{opts.max} from {opts.start}, carbon max {opts.carbon_max:g}, "
          f"lag {opts.lag:g}; best reward {best:+.3f}, uniformly random values {rand:+.3f}")
    lasts = []
    for seed in range(opts.first_seed, opts.first_seed + opts.seeds):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            casca_rlds.main(["--slo", "ServiceSLO", "ServiceCarbon", "--setting", "ServiceParam",
                             "--seed", str(seed), "--steps", str(opts.steps), *agent_flags])
        rewards = [float(line.rsplit("reward=", 1)[1].split()[0])
                   for line in out.getvalue().splitlines() if line.startswith("rlds step=")]
        q = rewards[-max(1, len(rewards) // 4):]
        lasts.append(statistics.mean(q))
        print(f"seed {seed}: mean reward {statistics.mean(rewards):+.3f}, last quarter "
              f"{lasts[-1]:+.3f}", flush=True)
    print(f"last quarter over {len(lasts)} seeds: mean {statistics.mean(lasts):+.3f}, min "
          f"{min(lasts):+.3f}, max {max(lasts):+.3f}; above random + 0.3 in "
          f"{sum(x > rand + 0.3 for x in lasts)} of {len(lasts)}")


if __name__ == "__main__":
    main()
