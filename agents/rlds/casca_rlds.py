#!/usr/bin/python3
"""casca-rlds: the reinforcement-learning decision system (RLDS), PPO in PyTorch, trained online
from one AgentService.Session through casca.env.CascaEnv.

    /usr/bin/python3 agents/rlds/casca_rlds.py --target HOST:PORT [--token T] --slo ID...
        --setting ID... [--period SECONDS] [--seed N] [--policy FILE] [--no-train]
        [--duration SECONDS] [--steps N] [--name N] [--zone Z] [--mode control|shadow]
        [--action value|step] [--max-move STEPS] [--carbon-weight W] [--carbon-scale MG_PER_MIN]
        [--rollout N] [--epochs N] [--lr LR] [--gamma G] [--ent-coef C] [--hidden N]
        [--tls] [--ca FILE] [--cert FILE --key FILE] [--server-name NAME]

State: the selected settings, the selected SLOs' values and the carbon footprint, normalised by
the ranges in the Welcome (casca.env.CascaEnv, normalize=True): a setting (v - min)/(max - min)
x 2 - 1; an SLO with objective [lo, hi] (v - mid)/half-width, so [-1, 1] is fulfilled (one-sided
objectives: see casca/env.py), clipped to [-5, 5]; the footprint / C (C below).

Action (--action value, the default): for each selected setting, one value of its grid: every
value from min to max in steps of the setting's `step` (1 for an integer setting without one,
1/20 of the range for a double without one; the allowed values of an enum, 0/1 for a bool),
at most 33 values spread over the range. Choosing the value itself, rather than a move, lets a
policy that starts uniform reach every value at once, so it finds where the SLOs are fulfilled
in a few rollouts instead of walking there (with the carbon term, a walk from below is pulled
back to the cheapest value before it finds the objective). --action step: -1, 0 or +1 step from
the current value instead (small changes; use --gamma 0.9 with it). --max-move K limits any change
to K steps (set it to the setting's max_step rail, which would otherwise refuse bigger changes).

Reward (casca.env.CarbonAwareReward), computed from the state that follows the action:
    c   = min(1, footprint / C)    C = --carbon-scale, else the max of the objective of a
                                       carbon-footprint SLO among --slo, else no carbon term (w=0)
    r_i = +(1 + w (1 - c)) / (1 + w)    if SLO i is fulfilled     (in [1/(1+w), 1])
    r_i = -(1 + w c) / (1 + w)          if it is not, or no data  (in [-1, -1/(1+w)])
    R   = (1/n) sum_i r_i               in [-1, 1], n = number of SLOs, w = --carbon-weight (0.5)
A lower footprint raises a fulfilled SLO's reward and softens an unfulfilled one; any fulfilled
SLO is still worth more than any unfulfilled one.

PPO: an actor (one categorical head per setting, masked to its number of choices) and a critic,
each two tanh layers of 64. Online: every --rollout decisions (16) the batch is used for --epochs
(8) epochs of clipped-ratio updates (clip 0.2, generalised advantage estimation with gamma 0.5,
lambda 0.9, normalised advantages, entropy bonus 0.03, Adam --lr 5e-3, gradient norm 0.5 for the
actor and the critic each). A service has no episodes: the task is continuing, and the last
state's value bootstraps each rollout. These defaults were tuned on the --simulate model of
deploy/demo/transcoder.py (fps = 4.2 x threads): from 2 threads in [1, 16] the last quarter of
250 decisions averaged +0.85 to +0.91 over 20 seeds, against +0.15 for uniformly random values
(test/bench/rlds_sim.py).

--policy FILE: loaded at start when it exists (torch.load: the actor-critic state dict, the
optimiser, the normalisation it was trained with, the setting and SLO ids, counters), saved after
each update and at exit (written to FILE.tmp, then renamed). --no-train: no updates and no
saving; the most likely action is taken (greedy evaluation). --seed N makes the agent's choices
deterministic (seeded torch and Python generators, one torch thread, deterministic algorithms):
the same states give the same actions.

Output: one line per decision on stdout:
    rlds step=12 seq=345 ServiceSLO=25.20(ok) ServiceCarbon=273.33(ok) footprint=273.3
      ServiceParam 6->7 reward=+0.696 decision 0.41 ms
(the state the decision was made on, the change and whether it was applied or why not, the reward
of the state that followed, the time the policy took), a line per update, and a summary at the
end. Errors go to stderr. Stops cleanly (Goodbye, policy saved) on SIGINT, SIGTERM, after
--duration seconds or --steps decisions. Exit status: 0 stopped cleanly, 1 the session failed
(e.g. the server went away, the lease was refused), 2 bad usage or PyTorch missing.
"""
import argparse
import math
import os
import random
import signal
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))


def die(msg):
    """Bad usage or set-up: the message on stderr, exit status 2."""
    print(f"casca-rlds: {msg}", file=sys.stderr)
    sys.exit(2)


# The casca package: from PYTHONPATH (clients/python:BUILD/py), else this checkout's clients/python
# (which finds the generated modules in $CASCA_PY_STUBS or build/py).
sys.path.append(os.path.join(HERE, os.pardir, os.pardir, "clients", "python"))
try:
    from casca import CascaError
    from casca.env import CarbonAwareReward, CascaEnv
except ImportError as e:
    die(f"cannot import the casca package: {e}")

torch = nn = None  # imported in main(), after the arguments are checked (it takes seconds)

FORMAT = "casca-rlds/1"
DELTAS = (-1, 0, 1)
MAX_LEVELS = 33  # value actions: at most this many values per setting


class Actions:
    """What each policy output means: per setting a list of choices, either the moves -1, 0, +1
    (mode "step", times the setting's step size) or absolute values (mode "value": every value on
    the setting's step grid, at most MAX_LEVELS spread over the range)."""

    def __init__(self, space, mode, max_move=None):
        self.mode = mode
        self.max_move = max_move
        self.choices = []
        self.sizes = []
        self.lo = [float(x) for x in space.low]
        self.hi = [float(x) for x in space.high]
        for lo, hi, integer, step in zip(self.lo, self.hi, space.integer, space.step):
            size = float(step) if step > 0 else 1.0 if integer else (hi - lo) / 20
            self.sizes.append(size)
            if mode == "step":
                self.choices.append([d * size for d in DELTAS])
                continue
            n = int(math.floor((hi - lo) / size + 1e-9)) + 1
            if n > MAX_LEVELS:
                n = MAX_LEVELS
                size = (hi - lo) / (n - 1)
            vals = [min(hi, lo + i * size) for i in range(n)]
            self.choices.append([float(round(v)) if integer else v for v in vals])
        self.width = max(len(c) for c in self.choices)

    def mask(self):
        """1 where a choice exists, 0 where a setting has fewer than width choices."""
        return [[1.0 if j < len(c) else 0.0 for j in range(self.width)] for c in self.choices]

    def targets(self, current, idx):
        out = []
        for i, (c, j) in enumerate(zip(current, idx)):
            x = c + self.choices[i][j] if self.mode == "step" else self.choices[i][j]
            if self.max_move is not None:
                m = self.max_move * self.sizes[i]
                x = min(c + m, max(c - m, x))
            out.append(min(self.hi[i], max(self.lo[i], x)))
        return out


def build_policy_class():
    class ActorCritic(nn.Module):
        """Actor: obs -> `width` logits per setting (masked); critic: obs -> state value."""

        def __init__(self, n_obs, n_settings, hidden=64, width=len(DELTAS), mask=None):
            super().__init__()
            self.n_settings = n_settings
            self.width = width
            m = torch.tensor(mask if mask is not None else [[1.0] * width] * n_settings)
            self.register_buffer("logit_mask", torch.where(m > 0, 0.0, -1e9))
            self.actor = nn.Sequential(nn.Linear(n_obs, hidden), nn.Tanh(),
                                       nn.Linear(hidden, hidden), nn.Tanh(),
                                       nn.Linear(hidden, width * n_settings))
            self.critic = nn.Sequential(nn.Linear(n_obs, hidden), nn.Tanh(),
                                        nn.Linear(hidden, hidden), nn.Tanh(),
                                        nn.Linear(hidden, 1))
            for m in list(self.actor) + list(self.critic):
                if isinstance(m, nn.Linear):
                    nn.init.orthogonal_(m.weight, math.sqrt(2))
                    nn.init.zeros_(m.bias)
            nn.init.orthogonal_(self.actor[-1].weight, 0.01)  # starts near uniform
            nn.init.orthogonal_(self.critic[-1].weight, 1.0)

        def dist(self, obs):
            logits = self.actor(obs).view(*obs.shape[:-1], self.n_settings, self.width)
            logits = logits + self.logit_mask
            return torch.distributions.Categorical(logits=logits)

        def value(self, obs):
            return self.critic(obs).squeeze(-1)

    return ActorCritic


class PPO:
    """The learner: acts on observations, keeps the rollout, updates every `rollout` steps."""

    def __init__(self, n_obs, actions, args):
        self.net = build_policy_class()(n_obs, len(actions.choices), args.hidden, actions.width,
                                        actions.mask())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=args.lr, eps=1e-5)
        self.args = args
        self.buf = []  # (obs, action indexes, log prob, value, reward)
        self.steps = 0
        self.updates = 0

    def act(self, obs, greedy=False):
        """(action indexes per setting, log prob, value) for one observation."""
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)
            d = self.net.dist(x)
            a = d.probs.argmax(-1) if greedy else d.sample()
            return a, d.log_prob(a).sum(-1), self.net.value(x)

    def record(self, obs, a, logp, value, reward):
        self.buf.append((torch.as_tensor(obs, dtype=torch.float32), a, logp, value,
                         float(reward)))
        self.steps += 1

    def ready(self):
        return len(self.buf) >= self.args.rollout

    def update(self, last_obs):
        """One PPO update on the rollout; returns figures for the log line."""
        a = self.args
        obs = torch.stack([b[0] for b in self.buf])
        acts = torch.stack([b[1] for b in self.buf])
        logp_old = torch.stack([b[2] for b in self.buf])
        vals = torch.stack([b[3] for b in self.buf])
        rews = torch.tensor([b[4] for b in self.buf])
        with torch.no_grad():
            nxt = self.net.value(torch.as_tensor(last_obs, dtype=torch.float32))
        adv = torch.zeros_like(rews)
        gae = 0.0
        for t in reversed(range(len(rews))):  # continuing task: no episode ends
            v_next = nxt if t == len(rews) - 1 else vals[t + 1]
            delta = rews[t] + a.gamma * v_next - vals[t]
            gae = delta + a.gamma * a.lam * gae
            adv[t] = gae
        ret = adv + vals
        advn = (adv - adv.mean()) / (adv.std() + 1e-8)
        n = len(rews)
        mb = max(1, min(a.minibatch, n))
        stats = []
        for _ in range(a.epochs):
            perm = torch.randperm(n)
            for i in range(0, n, mb):
                idx = perm[i:i + mb]
                d = self.net.dist(obs[idx])
                logp = d.log_prob(acts[idx]).sum(-1)
                ratio = torch.exp(logp - logp_old[idx])
                pg = -torch.min(ratio * advn[idx],
                                torch.clamp(ratio, 1 - a.clip, 1 + a.clip) * advn[idx]).mean()
                vloss = ((self.net.value(obs[idx]) - ret[idx]) ** 2).mean()
                ent = d.entropy().sum(-1).mean()
                loss = pg + 0.5 * vloss - a.ent_coef * ent
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.actor.parameters(), 0.5)
                nn.utils.clip_grad_norm_(self.net.critic.parameters(), 0.5)
                self.opt.step()
                stats.append((pg.item(), vloss.item(), ent.item()))
        self.buf = []
        self.updates += 1
        k = len(stats)
        return {"mean_reward": rews.mean().item(),
                "policy_loss": sum(s[0] for s in stats) / k,
                "value_loss": sum(s[1] for s in stats) / k,
                "entropy": sum(s[2] for s in stats) / k}

    def save(self, path, meta):
        blob = dict(meta, format=FORMAT, state_dict=self.net.state_dict(),
                    optimizer=self.opt.state_dict(), steps=self.steps, updates=self.updates,
                    hidden=self.args.hidden)
        tmp = path + ".tmp"
        torch.save(blob, tmp)
        os.replace(tmp, path)

    def load(self, blob):
        self.net.load_state_dict(blob["state_dict"])
        if "optimizer" in blob:
            self.opt.load_state_dict(blob["optimizer"])
        self.steps = int(blob.get("steps", 0))
        self.updates = int(blob.get("updates", 0))


def load_policy_file(path):
    """The saved dict, or None if path does not exist; exit 2 if it is not a policy."""
    if not os.path.exists(path):
        return None
    try:
        blob = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a bad file
        die(f"--policy {path} is not a policy file: {e}")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        die(f"--policy {path} is not a {FORMAT} policy file")
    return blob


def fmt(x):
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def describe_state(info):
    parts = []
    for sid, s in info["slos"].items():
        if s["has_value"]:
            parts.append(f"{sid}={s['value']:.2f}({'ok' if s['fulfilled'] else 'no'})")
        else:
            parts.append(f"{sid}=none")
    parts.append(f"footprint={info['footprint_mg_per_min']:.1f}")
    return " ".join(parts)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="casca-rlds",
        description="RLDS: a PPO agent (PyTorch) that learns online to keep casca SLOs fulfilled "
                    "with a low carbon footprint.")
    ap.add_argument("--target", default="127.0.0.1:50051", help="cascad's HOST:PORT")
    ap.add_argument("--token", default=None,
                    help="bearer token (default: $CASCA_TOKEN; prefer it: argv is visible)")
    ap.add_argument("--slo", action="extend", nargs="+", required=True, metavar="ID",
                    help="SLO id(s) the reward counts (repeat or list)")
    ap.add_argument("--setting", action="extend", nargs="+", required=True, metavar="ID",
                    help="setting id(s) the agent changes (repeat or list)")
    ap.add_argument("--period", type=float, default=1.0, help="seconds between states (>= 0.1)")
    ap.add_argument("--seed", type=int, default=None, help="seed: deterministic choices")
    ap.add_argument("--policy", help="policy file: loaded if it exists, saved while training")
    ap.add_argument("--no-train", action="store_true", help="evaluate: greedy, no updates")
    ap.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    ap.add_argument("--steps", type=int, default=None, help="stop after N decisions")
    ap.add_argument("--name", default="rlds", help="agent name (audit log, leases)")
    ap.add_argument("--zone", default="", help="grid zone of the carbon state (default: server's)")
    ap.add_argument("--mode", choices=("control", "shadow"), default="control")
    ap.add_argument("--no-reconnect", action="store_true",
                    help="fail fast: exit 1 when cascad is lost instead of reconnecting with "
                         "backoff (for a supervisor that restarts the agent)")
    ap.add_argument("--carbon-weight", type=float, default=0.5, help="w in the reward (>= 0)")
    ap.add_argument("--carbon-scale", type=float, default=None,
                    help="C in the reward, mg CO2eq/min (default: the carbon SLO's max)")
    ap.add_argument("--rollout", type=int, default=16, help="decisions per PPO update")
    ap.add_argument("--epochs", type=int, default=8, help="passes over each rollout")
    ap.add_argument("--minibatch", type=int, default=32, help="minibatch size")
    ap.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate")
    ap.add_argument("--gamma", type=float, default=0.5, help="discount")
    ap.add_argument("--lam", type=float, default=0.9, help="GAE lambda")
    ap.add_argument("--clip", type=float, default=0.2, help="PPO ratio clip")
    ap.add_argument("--ent-coef", type=float, default=0.03, help="entropy bonus")
    ap.add_argument("--action", choices=("value", "step"), default="value",
                    help="value: pick a value on the setting's grid; step: move it -1/0/+1 step")
    ap.add_argument("--max-move", type=float, default=None, metavar="STEPS",
                    help="change a setting by at most STEPS of its step per decision (match "
                         "the setting's max_step rail)")
    ap.add_argument("--hidden", type=int, default=64, help="units per hidden layer")
    ap.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    ap.add_argument("--ca", help="TLS: trusted root certificates (PEM)")
    ap.add_argument("--cert", help="TLS: client certificate (PEM)")
    ap.add_argument("--key", help="TLS: client key (PEM)")
    ap.add_argument("--server-name", help="TLS: name to check in the server's certificate")
    args = ap.parse_args(argv)
    if args.period < 0.1:
        ap.error("--period must be at least 0.1 seconds")
    if args.rollout < 2 or args.epochs < 1 or args.minibatch < 1 or args.hidden < 1:
        ap.error("--rollout must be >= 2, --epochs, --minibatch and --hidden >= 1")
    if args.max_move is not None and args.max_move <= 0:
        ap.error("--max-move must be positive")
    if args.carbon_weight < 0:
        ap.error("--carbon-weight must be >= 0")
    if args.duration is not None and args.duration <= 0:
        ap.error("--duration must be positive")
    if args.steps is not None and args.steps < 1:
        ap.error("--steps must be at least 1")
    if args.no_train and args.policy and not os.path.exists(args.policy):
        ap.error(f"--no-train evaluates a trained policy, but --policy {args.policy} does not "
                 "exist")
    return args


def main(argv=None):
    global torch, nn
    args = parse_args(argv)
    try:
        import torch
        from torch import nn
    except ImportError as e:
        die(f"PyTorch is missing ({e}): install Debian's python3-torch "
            "(deploy/install-deps.sh does)")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    blob = load_policy_file(args.policy) if args.policy else None
    if blob is not None and (sorted(blob.get("settings", [])) != sorted(args.setting) or
                             sorted(blob.get("slos", [])) != sorted(args.slo)):
        print(f"casca-rlds: --policy {args.policy} was trained for --setting "
              f"{' '.join(blob.get('settings', []))} --slo {' '.join(blob.get('slos', []))}, "
              f"not --setting {' '.join(args.setting)} --slo {' '.join(args.slo)}",
              file=sys.stderr)
        return 2

    stop = {"why": None}

    def on_signal(signum, frame):
        stop["why"] = signal.Signals(signum).name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if blob is not None:  # the policy's own shape
        args.hidden = int(blob.get("hidden", args.hidden))
        args.action = blob.get("action", args.action)
    reward = CarbonAwareReward(args.carbon_weight, args.carbon_scale)
    try:
        env = CascaEnv(args.target, args.token, slos=args.slo, settings=args.setting,
                       period=args.period, mode=args.mode, name=args.name, zone=args.zone,
                       reward=reward, normalize=blob["normalization"] if blob else True,
                       carbon_scale=args.carbon_scale, reconnect=not args.no_reconnect,
                       tls=args.tls, ca=args.ca,
                       cert=args.cert, key=args.key, server_name=args.server_name)
    except OSError as e:
        die(f"cannot read a TLS file: {e}")
    ppo = None
    rewards = []
    status = 0
    started = time.monotonic()
    try:
        obs, info = env.reset(seed=seed)
        names = list(env.action_space.names)  # the Welcome's order
        slos = [n.split(":", 1)[1] for n in env.observation_names if n.startswith("slo:")]
        if sorted(names) != sorted(args.setting) or sorted(slos) != sorted(args.slo):
            raise CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"the session has settings {names} and SLOs {slos}", "casca-rlds")
        meta = {"settings": names, "slos": slos, "normalization": env.normalization,
                "carbon_weight": args.carbon_weight, "carbon_scale": args.carbon_scale,
                "action": args.action, "seed": seed}
        actions = Actions(env.action_space, args.action, args.max_move)
        ppo = PPO(len(obs), actions, args)
        if blob is not None:
            try:
                ppo.load(blob)
            except (RuntimeError, KeyError, ValueError) as e:
                raise CascaError(grpc.StatusCode.INVALID_ARGUMENT,
                                 f"--policy {args.policy} does not fit the session's settings "
                                 f"(their ranges changed?): {e}", "casca-rlds") from None
        print(f"rlds start session={env.session.session_id} settings={','.join(names)} "
              f"slos={','.join(args.slo)} leased={','.join(env.welcome.leased_setting_ids)} "
              f"mode={args.mode} action={args.action} "
              f"train={'no' if args.no_train else 'yes'} seed={seed} "
              f"policy={args.policy or '-'}"
              f"{' (loaded, %d steps)' % ppo.steps if blob else ''} "
              f"carbon_ref={env.normalization['carbon_ref']:g}", flush=True)
        while stop["why"] is None:
            if args.duration is not None and time.monotonic() - started >= args.duration:
                stop["why"] = "duration"
                break
            if args.steps is not None and len(rewards) >= args.steps:
                stop["why"] = "steps"
                break
            t0 = time.perf_counter()
            a, logp, value = ppo.act(obs, greedy=args.no_train)
            current = [env.setting_number(n, info["settings"].get(n)) for n in names]
            target = actions.targets(current, a.tolist())
            decision_ms = (time.perf_counter() - t0) * 1000
            before = info
            obs2, r, _, _, info = env.step(target)
            rewards.append(r)
            if not args.no_train:
                ppo.record(obs, a, logp, value, r)
            obs = obs2
            changes = []
            for n, c, t in zip(names, current, target):
                if n in info["rejected"]:
                    changes.append(f"{n} {fmt(c)}->{fmt(t)} rejected: {info['rejected'][n]}")
                elif n in info["applied"]:
                    shadow = " (shadow: not applied)" if args.mode == "shadow" else ""
                    changes.append(f"{n} {fmt(c)}->{fmt(info['applied'][n])}{shadow}")
                else:
                    changes.append(f"{n} ={fmt(c)}")
            print(f"rlds step={len(rewards)} seq={before['seq']} {describe_state(before)} "
                  f"{' '.join(changes)} reward={r:+.3f} decision {decision_ms:.2f} ms",
                  flush=True)
            if not args.no_train and ppo.ready():
                s = ppo.update(obs)
                print(f"rlds update={ppo.updates} steps={ppo.steps} "
                      f"mean_reward={s['mean_reward']:+.3f} policy_loss={s['policy_loss']:.4f} "
                      f"value_loss={s['value_loss']:.4f} entropy={s['entropy']:.3f}", flush=True)
                if args.policy:
                    ppo.save(args.policy, meta)
    except CascaError as e:
        print(f"casca-rlds: {e}", file=sys.stderr)
        status = 1
    finally:
        if ppo is not None and args.policy and not args.no_train and ppo.steps:
            try:
                ppo.save(args.policy, meta)
            except OSError as e:
                print(f"casca-rlds: cannot save --policy {args.policy}: {e}", file=sys.stderr)
                status = status or 1
        try:
            env.close()
        except CascaError:
            pass
    last = rewards[-max(1, len(rewards) // 4):]
    print(f"rlds done steps={len(rewards)} stop={stop['why'] or 'error'} "
          f"mean_reward={sum(rewards) / len(rewards) if rewards else 0:+.3f} "
          f"last_quarter_mean={sum(last) / len(last) if last else 0:+.3f} "
          f"updates={ppo.updates if ppo else 0}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
