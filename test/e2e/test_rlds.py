"""The RLDS agent (agents/rlds/casca_rlds.py, PPO in PyTorch) against the real daemon and the demo's
simulated transcoding service (deploy/demo/transcoder.py --simulate: fps = 4.2 x threads, reported
through `casca report` on the bus) with its power meter (deploy/demo/powermeter.py --simulate:
10 W + 12 W per thread): a short seeded training run must end with a clearly higher mean reward
than a random policy on the same set-up; the saved policy is then evaluated (--no-train) and the
agent stops cleanly on SIGTERM; bad usage fails with a clear message."""
import os
import random
import signal
import subprocess
import time
import urllib.request

import pytest

import casca
from casca.env import CascaEnv

try:
    import torch  # noqa: F401
except ImportError:
    torch = None

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RLDS = os.path.join(ROOT, "agents", "rlds", "casca_rlds.py")
TRANSCODER = os.path.join(ROOT, "deploy", "demo", "transcoder.py")
POWERMETER = os.path.join(ROOT, "deploy", "demo", "powermeter.py")
CASCA_CLI = os.environ.get("CASCA_CLI", "build/clients/casca")
PYTHON = "/usr/bin/python3"
TOKENS = {"T_OP": "op-0123456789abcdef0123", "T_AGENT": "agent-0123456789abcdef01"}
PERIOD = 0.2          # seconds between states
RANDOM_STEPS = 40     # decisions of the random baseline
TRAIN_STEPS = 192     # decisions of the training run (12 updates)
LAST = 48             # the training run's last decisions, compared with the baseline
INTENSITY = 200.0     # gCO2eq/kWh, every hour of the test's grid data

from conftest import carbon_bundle, free_port# noqa: E402


def config(bus_port, http_port, bundle):
    # fps and power: the latest report (aggregation last, time of receipt), evaluated every 20 ms,
    # so the state after an action shows its effect. Footprint = (10 + 12 t) W x 200 / 60.
    return f"""\
server:
  log_level: info
store:
  sync: none
auth:
  tokens:
    - {{name: ops, role: operator, token_env: T_OP}}
    - {{name: rlds-token, role: agent, token_env: T_AGENT}}
bus:
  listen: ["tcp://127.0.0.1:{bus_port}"]
hooks:
  - name: player
    topic: "autowatcher/"
    format: json
    values: {{transcoding_fps: "/Transcoding FPS"}}
    tags: {{client: "/Autowatcher ID"}}
  - name: plug
    topic: "tele/"
    format: json
    values: {{power_w: /ENERGY/Power}}
carbon: {{default_zone: AT, bundled_data: {bundle}, estimate_from_nearest_year: true}}
slo_engine: {{interval: 20ms, compliance_step: 10s, compliance_period: 10m}}
slos:
  - id: ServiceSLO
    series: transcoding_fps
    aggregation: last
    window: 1s
    objective: {{min: 24, max: 30}}
  - id: ServiceCarbon
    kind: carbon_footprint
    power_series: power_w
    aggregation: last
    window: 1s
    objective: {{max: 1000}}
settings:
  - id: ServiceParam
    type: int
    range: {{min: 1, max: 16}}
    controller:
      http_json:
        url: "http://127.0.0.1:{http_port}/System/Configuration/encoding"
        pointer: /EncodingThreadCount
        write: {{method: POST, body: read_modify_write}}
        timeout: 2s
"""


def expected_reward(threads, w=0.5, ref=1000.0):
    """CarbonAwareReward of the simulated service at a thread count (for the figures printed)."""
    fps, fp = 4.2 * threads, (10 + 12 * threads) * INTENSITY / 60
    c = min(1.0, fp / ref)
    terms = [(1 + w * (1 - c)) / (1 + w) if ok else -(1 + w * c) / (1 + w)
             for ok in (24 <= fps <= 30, fp <= ref)]
    return sum(terms) / 2


@pytest.fixture
def setup(make_daemon, tmp_path):
    if torch is None:
        pytest.fail("PyTorch is missing: the RLDS agent needs Debian's python3-torch "
                    "(deploy/install-deps.sh installs it)")
    if not os.access(CASCA_CLI, os.X_OK):
        pytest.fail(f"the casca tool is not at {CASCA_CLI} (set CASCA_CLI)")
    bus_port, http_port = free_port(), free_port()
    d = make_daemon(config(bus_port, http_port, carbon_bundle(tmp_path, value=lambda i: INTENSITY)), env=TOKENS)
    logs = open(tmp_path / "service.log", "w")
    url = f"http://127.0.0.1:{http_port}/System/Configuration/encoding"
    procs = [subprocess.Popen([PYTHON, TRANSCODER, "--http", f"127.0.0.1:{http_port}",
                               "--bus", f"tcp://127.0.0.1:{bus_port}", "--casca", CASCA_CLI,
                               "--simulate", "--threads", "2", "--report-interval", "0.05"],
                              stdout=logs, stderr=subprocess.STDOUT)]
    deadline = time.time() + 30
    while True:  # the meter reads the thread count from the service: start it once that answers
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline and procs[0].poll() is None, \
                (tmp_path / "service.log").read_text()
            time.sleep(0.05)
    procs.append(subprocess.Popen([PYTHON, POWERMETER, "--simulate", "--http", url,
                                   "--bus", f"tcp://127.0.0.1:{bus_port}", "--casca", CASCA_CLI,
                                   "--interval", "0.05"], stdout=logs, stderr=subprocess.STDOUT))
    op = casca.Client(d.target, TOKENS["T_OP"])
    deadline = time.time() + 30
    while not all(op.slo(s).has_value for s in ("ServiceSLO", "ServiceCarbon")):
        assert time.time() < deadline, (tmp_path / "service.log").read_text()
        assert all(p.poll() is None for p in procs), (tmp_path / "service.log").read_text()
        time.sleep(0.1)
    yield d, op
    op.close()
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        assert p.wait(timeout=10) == 0, (tmp_path / "service.log").read_text()
    logs.close()


def rlds(d, *args, **kw):
    env = dict(os.environ, CASCA_TOKEN=TOKENS["T_AGENT"])
    return subprocess.Popen([PYTHON, RLDS, "--target", d.target, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def decisions(out):
    """The rewards of the agent's decision lines."""
    rows = []
    for line in out.splitlines():
        if line.startswith("rlds step="):
            f = dict(x.split("=", 1) for x in line.split() if "=" in x and "->" not in x)
            rows.append(float(f["reward"]))
    return rows


def test_rlds_learns_to_beat_random(setup, tmp_path):
    d, op = setup

    # the baseline: uniformly random values (as RDS picks them) through the same environment
    rng = random.Random(1)
    env = CascaEnv(d.target, TOKENS["T_AGENT"], slos=["ServiceSLO", "ServiceCarbon"],
                   settings=["ServiceParam"], period=PERIOD, name="random")
    env.reset()
    random_rewards = []
    for _ in range(RANDOM_STEPS):
        _, r, _, _, info = env.step([rng.randint(1, 16)])
        assert not info["rejected"], info["rejected"]
        random_rewards.append(r)
    env.close()
    random_mean = sum(random_rewards) / len(random_rewards)

    # training from 2 threads (below the objective; the carbon term pulls towards 1)
    op.set_setting("ServiceParam", 2)
    policy = str(tmp_path / "policy.pt")
    p = rlds(d, "--slo", "ServiceSLO", "ServiceCarbon", "--setting", "ServiceParam",
             "--period", str(PERIOD), "--seed", "3", "--steps", str(TRAIN_STEPS),
             "--policy", policy)
    out, err = p.communicate(timeout=TRAIN_STEPS * PERIOD * 3 + 60)
    assert p.returncode == 0, err + out[-3000:]
    lines = out.splitlines()
    assert lines[0].startswith("rlds start session=as-") and "leased=ServiceParam" in lines[0]
    rewards = decisions(out)
    assert len(rewards) == TRAIN_STEPS
    assert sum("rlds update=" in l for l in lines) == TRAIN_STEPS // 16
    assert "decision" in lines[1] and " ms" in lines[1]
    assert lines[-1].startswith(f"rlds done steps={TRAIN_STEPS} stop=steps")
    last_mean = sum(rewards[-LAST:]) / LAST
    print(f"random policy: mean reward {random_mean:+.3f} over {RANDOM_STEPS} decisions; "
          f"RLDS: {sum(rewards) / len(rewards):+.3f} over {TRAIN_STEPS}, {last_mean:+.3f} over "
          f"the last {LAST} (best possible {expected_reward(6):+.3f} at 6 threads)")
    assert last_mean > random_mean + 0.3, (random_mean, last_mean, out[-4000:])
    assert last_mean > 0.5, out[-4000:]
    assert os.path.getsize(policy) > 0 and not os.path.exists(policy + ".tmp")
    # every change went through casca's audit log under the agent's name
    assert any(e.caller == "rlds" for e in op.audit(setting_id="ServiceParam", limit=1000))

    # the saved policy, evaluated greedily from 14 threads (above the objective), stops on SIGTERM
    op.set_setting("ServiceParam", 14)
    p = rlds(d, "--slo", "ServiceSLO", "ServiceCarbon", "--setting", "ServiceParam",
             "--period", str(PERIOD), "--policy", policy, "--no-train", "--duration", "60")
    seen = []
    while len(seen) < 20:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        if line.startswith("rlds step="):
            seen.append(line)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    last = out.splitlines()[-1]  # no updates in evaluation: the loaded policy's count
    assert "stop=SIGTERM" in last and f"updates={TRAIN_STEPS // 16}" in last, last
    evals = decisions("".join(seen))
    assert sum(evals[-10:]) / 10 > random_mean + 0.3, "".join(seen)
    # the lease was released: another controller may take the setting
    assert op.agent_sessions() == []


def test_rlds_bad_usage(setup, tmp_path):
    d, op = setup
    p = rlds(d, "--slo", "ServiceSLO", "--setting", "ServiceParam", "--period", "0.01")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "--period must be at least 0.1" in err
    p = rlds(d, "--slo", "Nope", "--setting", "ServiceParam", "--period", "0.2", "--steps", "3")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "NOT_FOUND" in err and "Nope" in err, err
    # a policy trained for other settings or SLOs is refused before connecting
    policy = tmp_path / "p.pt"
    p = rlds(d, "--slo", "ServiceSLO", "--setting", "ServiceParam", "--period", "0.2",
             "--steps", "2", "--policy", str(policy), "--rollout", "2")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and policy.stat().st_size > 0, err
    p = rlds(d, "--slo", "ServiceSLO", "ServiceCarbon", "--setting", "ServiceParam",
             "--policy", str(policy), "--no-train")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "was trained for --setting ServiceParam --slo ServiceSLO" in err
    policy.write_text("not a policy")
    p = rlds(d, "--slo", "ServiceSLO", "--setting", "ServiceParam", "--policy", str(policy))
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "is not a policy file" in err
    p = rlds(d, "--slo", "ServiceSLO", "--setting", "ServiceParam", "--no-train",
             "--policy", str(tmp_path / "missing.pt"))
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "does not exist" in err
