"""A model of the demo's simulated service with the interface of casca.env.CascaEnv that
casca_rlds.py uses, so RLDS trains offline, thousands of decisions a minute, without cascad:
agents/rlds/train_sim.py, and test/bench/rlds_sim.py (how fast it learns).

The model (deploy/demo/transcoder.py --simulate, powermeter.py --simulate): threads in
[1, max], fps = 4.2 x threads with the SLO [24, 30], power = 10 + 12 x threads W, footprint =
power x intensity / 60 mg/min with the carbon SLO max carbon_max. The intensity is constant, or
(day=True) walks a day of hourly values between 100 and 550 g/kWh, an hour every hour_steps
decisions, so a policy sees the footprints of a real grid's day. The observation after an action
shows the previous thread count with probability lag (a slow report). Observations are
normalised the way CascaEnv does (see casca/env.py).
"""
import math
import random
import types

from casca.env import Box

FPS_PER_THREAD = 4.2
IDLE_W, CORE_W = 10.0, 12.0


def model_env(max_threads=8, start=4, carbon_max=800.0, lag=0.1, seed=7, intensity=200.0,
              day=False, hour_steps=30):
    """The class casca_rlds.main instantiates in place of CascaEnv (its arguments ignored)."""

    class ModelEnv:
        def __init__(self, *args, **kw):
            self.threads = self.seen = start
            self.action_space = Box([1], [max_threads], ["ServiceParam"], integer=[True],
                                    step=[1.0])
            self.observation_names = ["setting:ServiceParam", "slo:ServiceSLO",
                                      "slo:ServiceCarbon", "carbon:footprint_mg_per_min"]
            # what CascaEnv.normalization gives for the demo's Welcome (saved with the policy)
            self.normalization = {"settings": [["ServiceParam", 1.0, float(max_threads)]],
                                  "slos": [["ServiceSLO", 27.0, 3.0],
                                           ["ServiceCarbon", carbon_max / 2, carbon_max / 2]],
                                  "carbon_ref": carbon_max, "clip": 5.0}
            self.session = types.SimpleNamespace(session_id="model")
            self.welcome = types.SimpleNamespace(leased_setting_ids=["ServiceParam"])
            self.rng = random.Random(seed)
            self.seq = 0
            self.peak = self.rng.uniform(0, 24)

        def intensity(self):
            if not day:
                return intensity
            hour = self.seq / hour_steps
            if self.seq % (24 * hour_steps) == 0:  # a new day: another shape
                self.peak = self.rng.uniform(0, 24)
            return 325 + 225 * math.cos(2 * math.pi * (hour - self.peak) / 24)

        def setting_number(self, sid, value):
            return float(value)

        def _observe(self):
            t = self.seen
            fps, fp = FPS_PER_THREAD * t, (IDLE_W + CORE_W * t) * self.intensity() / 60
            self.seq += 1
            obs = [(self.threads - 1) / (max_threads - 1) * 2 - 1,
                   max(-5.0, min(5.0, (fps - 27) / 3)),
                   max(-5.0, min(5.0, 2 * fp / carbon_max - 1)),
                   min(5.0, fp / carbon_max)]
            info = {"seq": self.seq, "settings": {"ServiceParam": self.threads},
                    "slos": {"ServiceSLO": {"value": fps, "has_value": True,
                                            "fulfilled": 24 <= fps <= 30},
                             "ServiceCarbon": {"value": fp, "has_value": True,
                                               "fulfilled": fp <= carbon_max}},
                    "footprint_mg_per_min": fp, "applied": {}, "rejected": {}}
            return obs, reward(fps, fp, carbon_max), info

        def reset(self, seed=None):
            obs, _, info = self._observe()
            return obs, info

        def step(self, target):
            new = int(round(target[0]))
            applied = {"ServiceParam": new} if new != self.threads else {}
            self.threads = new
            if self.rng.random() >= lag:
                self.seen = new
            obs, r, info = self._observe()
            info["applied"] = applied
            return obs, r, False, False, info

        def close(self):
            pass

    return ModelEnv


def reward(fps, footprint, carbon_max, w=0.5):
    """casca.env.CarbonAwareReward of the two SLOs."""
    c = min(1.0, footprint / carbon_max)
    terms = [(1 + w * (1 - c)) / (1 + w) if ok else -(1 + w * c) / (1 + w)
             for ok in (24 <= fps <= 30, footprint <= carbon_max)]
    return sum(terms) / 2
