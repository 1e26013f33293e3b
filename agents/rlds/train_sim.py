#!/usr/bin/python3
"""Trains an RLDS policy offline against the model of the demo's simulated service
(agents/rlds/sim_env.py: a day of varying grid intensity), fast: thousands of decisions in a
minute, with casca_rlds.py's own PPO and defaults (the reward counts the FPS SLO, the carbon SLO
and the footprint). The policy file it writes is what `make experiment` runs RLDS with
(--policy FILE --no-train); the command is the recipe, the file is never committed:

    CASCA_PY_STUBS=build/py /usr/bin/python3 agents/rlds/train_sim.py --steps 3000 --seed 1 \\
        --policy build/experiment/rlds-policy.pt

Prints the mean reward of the first and the last tenth of the decisions.
"""
import argparse
import contextlib
import io
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "clients", "python"))
if os.environ.get("CASCA_PY_STUBS"):
    sys.path.insert(0, os.environ["CASCA_PY_STUBS"])
sys.path.insert(0, HERE)
import casca_rlds  # noqa: E402
import sim_env  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000, help="decisions to train on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--policy", required=True, help="the policy file to write (replaced)")
    ap.add_argument("--carbon-max", type=float, default=840.0,
                    help="the carbon SLO's max (mg/min) the policy is normalised by: the demo's "
                         "auto value for its day (see deploy/demo/run.py)")
    opts = ap.parse_args()
    if os.path.exists(opts.policy):
        os.remove(opts.policy)  # a fresh policy: the result depends on the command only
    casca_rlds.CascaEnv = sim_env.model_env(carbon_max=opts.carbon_max, day=True,
                                            seed=opts.seed)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = casca_rlds.main(["--slo", "ServiceSLO", "ServiceCarbon", "--setting",
                              "ServiceParam", "--seed", str(opts.seed), "--steps",
                              str(opts.steps), "--policy", opts.policy])
    rewards = [float(line.rsplit("reward=", 1)[1].split()[0])
               for line in out.getvalue().splitlines() if line.startswith("rlds step=")]
    if rc or not rewards or not os.path.exists(opts.policy):
        sys.stderr.write(out.getvalue()[-3000:])
        return rc or 1
    tenth = max(1, len(rewards) // 10)
    print("trained %d decisions: mean reward %+.3f in the first tenth, %+.3f in the last; "
          "policy %s" % (len(rewards), statistics.mean(rewards[:tenth]),
                         statistics.mean(rewards[-tenth:]), opts.policy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
