"""casca.env.CascaEnv: a Gym-style environment over one AgentService.Session.

    from casca.env import CascaEnv
    env = CascaEnv("127.0.0.1:50051", token=..., slos=["ServiceSLO", "ServiceCarbon"],
                   settings=["ServiceParam"], period=1.0)
    obs, info = env.reset()
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    env.close()

The methods have Gymnasium's shapes (reset -> (observation, info), step -> (observation, reward,
terminated, truncated, info), observation_space / action_space with low, high, shape, dtype,
sample(), contains()) without depending on gym, so any RL library fits (wrap it in
gymnasium.spaces.Box(env.observation_space.low, env.observation_space.high) where one is wanted).

Observation: one float per selected setting, then one per selected SLO, then the carbon footprint
(mg CO2eq/min), in the order of the Welcome (observation_names says which is which).
With normalize=True (the default), from the ranges in the Welcome:
  - setting: (v - min) / (max - min) * 2 - 1, in [-1, 1] (bool: 0/1, enum: the index in allowed);
  - SLO with objective [lo, hi]: (v - (lo + hi)/2) / ((hi - lo)/2), so [-1, 1] is "fulfilled";
    only a max M > 0: 2 v / M - 1 (<= 1 fulfilled); only a min m: (v - m) / |m| (>= 0 fulfilled);
    clipped to [-clip, clip]; no value yet (has_value false): 0, and info["slos"] says so;
  - footprint: footprint / C clipped to [0, clip], C = carbon_scale, else the max of a
    carbon-footprint SLO's objective in the session, else 100 mg/min.
With normalize=False the raw values (a missing SLO value is the objective's middle, or 0).
normalize may also be a dict saved from env.normalization (e.g. with a trained policy): the
observation is then normalised with those ranges, not the Welcome's (same ids required).

Action: the new value of each selected setting, in its own unit (action_space: low/high = the
setting's range). Values are clamped to the range and rounded to the setting's step (integers for
INT settings, 0/1 for BOOL, an index into allowed for ENUM); a setting whose value would not change
is not sent. One Action per step (an empty one keeps a CONTROL lease alive); step() then waits for
the first State that arrives after the ActionResult (`settle` of them), so the observation shows
the action's effect as far as the service has reported it.

Reward: reward(state, welcome) -> float, CarbonAwareReward() unless another function is given.
terminated is always False (a service has no terminal state); truncated is True every max_steps
steps (None = never); reset() after that continues the same session with the newest state.
A session the server ends (keepalive, shutdown, lease refused) raises casca.CascaError.
"""
import math
import random

import grpc

from .client import Client, range_of, value_of
from .errors import CascaError
from .session import Session
from .v1 import agent_pb2, common_pb2, slo_pb2

try:
    import numpy as np
except ImportError:  # observations are then plain lists
    np = None

_CARBON = slo_pb2.SLO_KIND_CARBON_FOOTPRINT
DEFAULT_CARBON_SCALE = 100.0  # mg CO2eq/min, when the session has no carbon SLO with a max


def carbon_reference(welcome, carbon_scale=None):
    """C: the footprint (mg/min) that normalises to 1: carbon_scale, else the max of the first
    carbon-footprint SLO's objective in the Welcome, else None."""
    if carbon_scale:
        return float(carbon_scale)
    for s in welcome.slos:
        lo, hi = range_of(s.objective)
        if s.kind == _CARBON and hi is not None and hi > 0:
            return float(hi)
    return None


class CarbonAwareReward:
    """The reward of the RLDS agent (issue 7): per SLO +1 if fulfilled and -1 if not, scaled by the
    carbon footprint, averaged over the session's SLOs:

        c   = min(1, footprint / C)                    (C: carbon_reference, see above)
        r_i = +(1 + w (1 - c)) / (1 + w)   if SLO i is fulfilled      (in [1/(1+w), 1])
        r_i = -(1 + w c) / (1 + w)         if not, or it has no value (in [-1, -1/(1+w)])
        R   = (1/n) sum_i r_i              in [-1, 1]

    so a lower footprint raises a fulfilled SLO's reward and softens an unfulfilled one, and every
    fulfilled SLO is worth more than any unfulfilled one. w = carbon_weight (default 0.5). With no
    carbon reference (no carbon SLO with a max and no carbon_scale) w is 0: R is the plain mean
    of the +-1 terms. No SLOs: 0.
    """

    def __init__(self, carbon_weight=0.5, carbon_scale=None):
        if carbon_weight < 0:
            raise ValueError("carbon_weight must be >= 0")
        self.carbon_weight = carbon_weight
        self.carbon_scale = carbon_scale

    def __call__(self, state, welcome):
        if not state.slos:
            return 0.0
        ref = carbon_reference(welcome, self.carbon_scale)
        w = self.carbon_weight if ref else 0.0
        c = min(1.0, max(0.0, state.carbon.footprint_mg_per_min / ref)) if ref else 0.0
        total = 0.0
        for s in state.slos:
            if s.has_value and s.fulfilled:
                total += (1 + w * (1 - c)) / (1 + w)
            else:
                total -= (1 + w * c) / (1 + w)
        return total / len(state.slos)


class Box:
    """A box of floats, shaped like gym.spaces.Box: low, high, shape, dtype, names, sample(),
    contains(). integer[i] is True where the dimension only takes whole values (step says the
    spacing, 0 = any)."""

    def __init__(self, low, high, names, integer=None, step=None):
        self.names = list(names)
        self.integer = list(integer or [False] * len(self.names))
        self.step = list(step or [0.0] * len(self.names))
        self.low = _array(low)
        self.high = _array(high)
        self.shape = (len(self.names),)
        self.dtype = np.float32 if np is not None else float
        self._rng = random.Random()

    def seed(self, seed=None):
        self._rng.seed(seed)

    def sample(self):
        """A uniformly random point (whole values where integer; on the step grid where set)."""
        out = []
        for lo, hi, integ, st in zip(self.low, self.high, self.integer, self.step):
            lo, hi = float(lo), float(hi)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                lo, hi = max(lo, -1.0), min(hi, 1.0)
            if st > 0:
                out.append(lo + st * self._rng.randint(0, int(math.floor((hi - lo) / st + 1e-9))))
            elif integ:
                out.append(float(self._rng.randint(math.ceil(lo), math.floor(hi))))
            else:
                out.append(self._rng.uniform(lo, hi))
        return _array(out)

    def contains(self, x):
        x = list(x)
        return len(x) == len(self.names) and all(
            float(lo) <= float(v) <= float(hi) for v, lo, hi in zip(x, self.low, self.high))

    def __repr__(self):
        return f"Box(low={list(self.low)}, high={list(self.high)}, names={self.names})"


def _array(values):
    values = [float(v) for v in values]
    return np.array(values, dtype=np.float32) if np is not None else values


class CascaEnv:
    """CascaEnv(target="127.0.0.1:50051", token=None, *, slos=(), settings=(), period=1.0,
                mode="control", name="casca-env", zone="", reward=None, normalize=True,
                clip=5.0, carbon_scale=None, bounds=None, max_steps=None, settle=1,
                step_timeout=None, reconnect=True, client=None, **client_args)

    reconnect: the session is opened again when cascad restarts or the connection breaks
    (casca.Session's reconnect): the first reset() waits for cascad as long as it takes, and a
    step() cut by an outage goes on from the first state after it, with an empty result.
    bounds: {setting_id: (min, max)} for numeric settings whose range is open (or to narrow it).
    The session opens at the first reset() (or the first look at a space).
    """

    metadata = {"render_modes": []}
    render_mode = None

    def __init__(self, target="127.0.0.1:50051", token=None, *, slos=(), settings=(),
                 period=1.0, mode="control", name="casca-env", zone="", reward=None,
                 normalize=True, clip=5.0, carbon_scale=None, bounds=None, max_steps=None,
                 settle=1, step_timeout=None, reconnect=True, client=None, **client_args):
        self._own = client is None
        self.client = client or Client(target, token, **client_args)
        self._session_args = dict(slos=list(slos), settings=list(settings), period=period,
                                  mode=mode, zone=zone, reconnect=reconnect)
        self.reconnect = reconnect
        self.name = name
        self.reward_fn = reward or CarbonAwareReward(carbon_scale=carbon_scale)
        self.normalize, self.clip = normalize, float(clip)
        self.carbon_scale = carbon_scale
        self.bounds = dict(bounds or {})
        self.max_steps, self.settle = max_steps, max(1, int(settle))
        self.step_timeout = step_timeout if step_timeout is not None else max(5.0, 10 * period)
        self.session = None
        self.welcome = None
        self.state = None
        self.steps = 0
        self._obs_space = self._act_space = None

    # -- spaces ----------------------------------------------------------------------------------

    def _open(self):
        if self.session is not None:
            return
        s = Session(self.client, self.name, **self._session_args)
        self.welcome = s.hello(timeout=None if self.reconnect else self.step_timeout)
        self.session = s
        try:
            self._describe()
        except CascaError:
            self.close()
            raise

    def _describe(self):
        """Builds the spaces and the normalisation from the Welcome."""
        w = self.welcome
        self._settings = []  # (id, type, lo, hi, step, allowed values)
        for s in w.settings:
            lo, hi = range_of(s.range)
            allowed = [value_of(v) for v in s.allowed]
            if s.id in self.bounds:
                lo, hi = self.bounds[s.id]
            if s.type == common_pb2.VALUE_TYPE_BOOL:
                lo, hi = 0.0, 1.0
            elif s.type == common_pb2.VALUE_TYPE_ENUM or (allowed and s.type ==
                                                          common_pb2.VALUE_TYPE_STRING):
                if not allowed:
                    raise self._unsupported(s.id, "an enum setting without allowed values")
                lo, hi = 0.0, float(len(allowed) - 1)
            elif s.type == common_pb2.VALUE_TYPE_STRING:
                raise self._unsupported(s.id, "a free string setting")
            if lo is None or hi is None or not hi > lo:
                raise self._unsupported(
                    s.id, f"range [{lo}, {hi}]: give it a closed range in the config or "
                          f"CascaEnv(bounds={{'{s.id}': (min, max)}})")
            self._settings.append((s.id, s.type, float(lo), float(hi), float(s.step), allowed))
        self._slos = []  # (id, center, scale)
        for s in w.slos:
            lo, hi = range_of(s.objective)
            if lo is not None and hi is not None:
                center, scale = (lo + hi) / 2, (hi - lo) / 2 or max(abs(lo), 1.0)
            elif hi is not None:
                center, scale = (hi / 2, hi / 2) if hi > 0 else (hi, max(abs(hi), 1.0))
            elif lo is not None:
                center, scale = lo, abs(lo) or 1.0
            else:
                center, scale = 0.0, 1.0
            self._slos.append((s.id, center, scale))
        self.carbon_ref = carbon_reference(w, self.carbon_scale) or DEFAULT_CARBON_SCALE
        self._norm = {"settings": [[s[0], s[2], s[3]] for s in self._settings],
                      "slos": [list(s) for s in self._slos], "carbon_ref": self.carbon_ref,
                      "clip": self.clip}
        if isinstance(self.normalize, dict):
            saved = self.normalize
            try:
                same = ([x[0] for x in saved["settings"]] == [s[0] for s in self._settings] and
                        [x[0] for x in saved["slos"]] == [s[0] for s in self._slos])
                self._norm = {"settings": [[str(a), float(b), float(c)]
                                           for a, b, c in saved["settings"]],
                              "slos": [[str(a), float(b), float(c)] for a, b, c in saved["slos"]],
                              "carbon_ref": float(saved["carbon_ref"]),
                              "clip": float(saved["clip"])}
            except (KeyError, TypeError, ValueError):
                raise CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                                 "normalize: expected a dict saved from CascaEnv.normalization",
                                 "CascaEnv") from None
            if not same:
                raise CascaError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the saved normalisation is for settings "
                    f"{[x[0] for x in self._norm['settings']]} and SLOs "
                    f"{[x[0] for x in self._norm['slos']]}, but the session has settings "
                    f"{[s[0] for s in self._settings]} and SLOs {[s[0] for s in self._slos]}",
                    "CascaEnv")
            self.clip = self._norm["clip"]

        names = ([f"setting:{s[0]}" for s in self._settings] + [f"slo:{s[0]}" for s in self._slos]
                 + ["carbon:footprint_mg_per_min"])
        inf = float("inf")
        if self.normalize:
            low = [-1.0] * len(self._settings) + [-self.clip] * len(self._slos) + [0.0]
            high = [1.0] * len(self._settings) + [self.clip] * len(self._slos) + [self.clip]
        else:
            low = [s[2] for s in self._settings] + [-inf] * len(self._slos) + [0.0]
            high = [s[3] for s in self._settings] + [inf] * len(self._slos) + [inf]
        self._obs_space = Box(low, high, names)
        self._act_space = Box(
            [s[2] for s in self._settings], [s[3] for s in self._settings],
            [s[0] for s in self._settings],
            integer=[s[1] != common_pb2.VALUE_TYPE_DOUBLE or bool(s[5]) for s in self._settings],
            step=[s[4] if s[1] in (common_pb2.VALUE_TYPE_INT, common_pb2.VALUE_TYPE_DOUBLE)
                  and not s[5] else 0.0 for s in self._settings])

    def _unsupported(self, sid, what):
        return CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"CascaEnv cannot use setting {sid!r}: {what}", "CascaEnv")

    @property
    def observation_space(self):
        self._open()
        return self._obs_space

    @property
    def action_space(self):
        self._open()
        return self._act_space

    @property
    def observation_names(self):
        return self.observation_space.names

    @property
    def normalization(self):
        """What the observation's normalisation is built from (saved with a trained policy)."""
        self._open()
        return {"settings": [list(x) for x in self._norm["settings"]],
                "slos": [list(x) for x in self._norm["slos"]],
                "carbon_ref": self._norm["carbon_ref"], "clip": self._norm["clip"]}

    # -- conversions -----------------------------------------------------------------------------

    def setting_number(self, sid, value):
        """A setting's Python value as the number the observation and action use."""
        for s in self._settings:
            if s[0] == sid:
                if s[1] == common_pb2.VALUE_TYPE_BOOL:
                    return 1.0 if value else 0.0
                if s[5]:
                    return float(s[5].index(value)) if value in s[5] else 0.0
                return float(value) if value is not None else s[2]
        raise KeyError(sid)

    def observe(self, state):
        """The observation vector of a casca.v1.State."""
        values = {v.id: value_of(v.value) for v in state.settings}
        obs = []
        n = self._norm
        for sid, lo, hi in n["settings"]:
            x = self.setting_number(sid, values.get(sid))
            obs.append((x - lo) / (hi - lo) * 2 - 1 if self.normalize else x)
        statuses = {s.slo.id: s for s in state.slos}
        for sid, center, scale in n["slos"]:
            st = statuses.get(sid)
            v = st.value if st is not None and st.has_value else center
            obs.append(_clip((v - center) / scale, n["clip"]) if self.normalize else v)
        fp = state.carbon.footprint_mg_per_min
        obs.append(min(n["clip"], max(0.0, fp / n["carbon_ref"])) if self.normalize else fp)
        return _array(obs)

    def changes_for(self, action):
        """{setting_id: value} for an action: clamped, rounded to the step, unchanged ones left
        out."""
        action = [float(a) for a in (action.tolist() if hasattr(action, "tolist") else action)]
        if len(action) != len(self._settings):
            raise CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"an action has one value per setting "
                             f"({', '.join(s[0] for s in self._settings)}), not {len(action)}",
                             "CascaEnv.step")
        current = {v.id: value_of(v.value) for v in self.state.settings} if self.state else {}
        out = {}
        for a, (sid, typ, lo, hi, step, allowed) in zip(action, self._settings):
            if not math.isfinite(a):
                raise CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                                 f"the action for {sid!r} is {a}", "CascaEnv.step")
            x = min(hi, max(lo, a))
            if step > 0 and not allowed and typ != common_pb2.VALUE_TYPE_BOOL:
                x = min(hi, lo + round((x - lo) / step) * step)
            if typ == common_pb2.VALUE_TYPE_BOOL:
                value = x >= 0.5
            elif allowed:
                value = allowed[int(round(x))]
            elif typ == common_pb2.VALUE_TYPE_INT:
                value = int(round(x))
            else:
                value = x
            if sid not in current or current[sid] != value:
                out[sid] = value
        return out

    def _info(self, state, result=None):
        info = {"seq": state.seq, "state": state, "missed": state.missed,
                "dropped": self.session.dropped,
                "settings": {v.id: value_of(v.value) for v in state.settings},
                "slos": {s.slo.id: {"value": s.value if s.has_value else None,
                                    "has_value": s.has_value, "fulfilled": s.fulfilled}
                         for s in state.slos},
                "footprint_mg_per_min": state.carbon.footprint_mg_per_min,
                "intensity_gco2eq_per_kwh": state.carbon.intensity_gco2eq_per_kwh}
        if result is not None:
            info["result"] = result
            info["applied"] = {v.id: value_of(v.value) for v in result.applied}
            info["rejected"] = {r.setting_id: r.reason for r in result.rejected}
        return info

    # -- the Gym methods -------------------------------------------------------------------------

    def reset(self, *, seed=None, options=None):
        """Opens the session (first call) and returns (observation, info) of the newest state."""
        first = self.session is None
        self._open()
        if seed is not None:
            self._act_space.seed(seed)
        if first:
            self.state = self.session.next_state(timeout=self.step_timeout)
        else:
            self.state = self.session.latest_state(timeout=self.step_timeout)
        self.steps = 0
        return self.observe(self.state), self._info(self.state)

    def _next_state(self, fresh):
        """The next state within step_timeout; with reconnect, an outage is waited out however
        long it lasts (the agent has nothing to act on meanwhile)."""
        while True:
            try:
                return self.session.next_state(timeout=self.step_timeout, fresh=fresh)
            except CascaError as e:
                if not self.reconnect or self.session.ended or self.session.connected or \
                        e.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise

    def step(self, action):
        """Applies the action and returns (observation, reward, terminated, truncated, info) of the
        state that follows it. info: seq, state, result, applied, rejected, settings, slos,
        footprint_mg_per_min, intensity_gco2eq_per_kwh, missed, dropped."""
        if self.session is None or self.state is None:
            raise CascaError(grpc.StatusCode.FAILED_PRECONDITION, "call reset() first",
                             "CascaEnv.step")
        changes = self.changes_for(action)
        try:
            result = self.session.act(changes, state_seq=self.state.seq,
                                      timeout=self.step_timeout)
        except CascaError:
            if not self.reconnect or self.session.ended:
                raise
            # cut by an outage: the action is lost; go on from the first state after it
            result = agent_pb2.ActionResult()
            self.state = self.session.next_state(timeout=None, fresh=True)
            self.welcome = self.session.welcome
        for i in range(self.settle):
            self.state = self._next_state(fresh=(i == 0))
        self.welcome = self.session.welcome  # a new session's, after an outage
        reward = float(self.reward_fn(self.state, self.welcome))
        self.steps += 1
        truncated = bool(self.max_steps) and self.steps >= self.max_steps
        return self.observe(self.state), reward, False, truncated, self._info(self.state, result)

    def render(self):
        return None

    def close(self):
        """Says Goodbye (releasing leases) and closes the connection."""
        if self.session is not None:
            self.session.goodbye("CascaEnv closed")
            self.session = None
        if self._own and self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _clip(x, c):
    return min(c, max(-c, x))
