#!/usr/bin/python3
"""How fast the RLDS agent (agents/rlds/casca_rlds.py) learns, offline: the agent runs unchanged
against a model of the demo's simulated service instead of a casca session, over many seeds.

    test/bench/rlds_sim.py [--seeds 20] [--steps 250] [--start 2] [--max 16] [--carbon-max 1000]
                           [--lag 0.1] [-- AGENT FLAGS...]

The model (deploy/demo/transcoder.py --simulate and powermeter.py --simulate at a constant
200 gCO2eq/kWh): threads in [1, --max], fps = 4.2 x threads with the SLO [24, 30], footprint =
(10 + 12 x threads) W x 200 / 60 mg/min with the carbon SLO max --carbon-max; the observation
after an action shows the previous thread count with probability --lag (a slow report). Prints, per
seed, the mean reward of the last quarter of the decisions, and the mean reward of uniformly
random values for comparison. A benchmark: nothing fails. Needs BUILD/py (CASCA_PY_STUBS).
"""
import argparse
import contextlib
import io
import os
import random
import statistics
import sys
import types

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "agents", "rlds"))
import casca_rlds  # noqa: E402
from casca.env import Box  # noqa: E402

INTENSITY = 200.0


def reward(threads, cmax, w=0.5):
    fps, fp = 4.2 * threads, (10 + 12 * threads) * INTENSITY / 60
    c = min(1.0, fp / cmax)
    terms = [(1 + w * (1 - c)) / (1 + w) if ok else -(1 + w * c) / (1 + w)
             for ok in (24 <= fps <= 30, fp <= cmax)]
    return sum(terms) / 2


def model_env(opts):
    class ModelEnv:
        """The parts of casca.env.CascaEnv the agent uses, over the model."""

        def __init__(self, *args, **kw):
            self.threads = self.seen = opts.start
            self.action_space = Box([1], [opts.max], ["ServiceParam"], integer=[True],
                                    step=[1.0])
            self.observation_names = ["setting:ServiceParam", "slo:ServiceSLO",
                                      "slo:ServiceCarbon", "carbon:footprint_mg_per_min"]
            self.normalization = {"carbon_ref": opts.carbon_max}
            self.session = types.SimpleNamespace(session_id="model")
            self.welcome = types.SimpleNamespace(leased_setting_ids=["ServiceParam"])
            self.rng = random.Random(opts.lag_seed)
            self.seq = 0

        def setting_number(self, sid, value):
            return float(value)

        def _observe(self):
            t = self.seen
            fps, fp = 4.2 * t, (10 + 12 * t) * INTENSITY / 60
            self.seq += 1
            obs = [(self.threads - 1) / (opts.max - 1) * 2 - 1,
                   max(-5.0, min(5.0, (fps - 27) / 3)),
                   max(-5.0, min(5.0, 2 * fp / opts.carbon_max - 1)),
                   min(5.0, fp / opts.carbon_max)]
            info = {"seq": self.seq, "settings": {"ServiceParam": self.threads},
                    "slos": {"ServiceSLO": {"value": fps, "has_value": True,
                                            "fulfilled": 24 <= fps <= 30},
                             "ServiceCarbon": {"value": fp, "has_value": True,
                                               "fulfilled": fp <= opts.carbon_max}},
                    "footprint_mg_per_min": fp, "applied": {}, "rejected": {}}
            return obs, reward(t, opts.carbon_max), info

        def reset(self, seed=None):
            obs, _, info = self._observe()
            return obs, info

        def step(self, target):
            new = int(round(target[0]))
            applied = {"ServiceParam": new} if new != self.threads else {}
            self.threads = new
            if self.rng.random() >= opts.lag:
                self.seen = new
            obs, r, info = self._observe()
            info["applied"] = applied
            return obs, r, False, False, info

        def close(self):
            pass

    return ModelEnv


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
    casca_rlds.CascaEnv = model_env(opts)
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
