"""Lint of the deployment files (Docker cannot run on the build machines): deploy/compose.yaml, the
Dockerfiles of deploy/docker/, the systemd units of deploy/systemd/ and every example config.

- compose.yaml parses; each service's Dockerfile, bind-mounted file and --config path exists and
  matches; every address a service uses (bus, gRPC target, the media service's URL) belongs to the
  container it means, on a network both share; only cascad publishes a port, and only its gRPC
  port; the agents' network reaches nothing but that port; every ${VAR} is documented in
  compose.env.example;
- each Dockerfile starts from debian:12, installs with deploy/install-deps.sh, and copies only
  files that exist (in the repository, or built by this build tree);
- the systemd units pass `systemd-analyze verify` (with the binaries pointed at this build);
- every example config passes `cascad --check`.
"""
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CASCAD

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BUILD = Path(CASCAD).resolve().parents[1]
COMPOSE = DEPLOY / "compose.yaml"
HOSTS = {"platform", "clients", "agents"}
ENV_EXAMPLE = DEPLOY / "compose.env.example"
# Environment for `cascad --check` of configs that read secrets from the environment.
CHECK_ENV = {"CASCA_OPERATOR_TOKEN": "0123456789abcdef-operator",
             "CASCA_AGENT_TOKEN": "0123456789abcdef-agent",
             "CASCA_REPORTER_TOKEN": "0123456789abcdef-reporter",
             "JELLYFIN_TOKEN": "jellyfin-api-key", "DEMO_API_KEY": "demo-api-key"}


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE) as f:
        return yaml.safe_load(f)


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def service_ips(svc):
    """{network: ip or None} of a service."""
    nets = svc.get("networks", {})
    if isinstance(nets, list):
        return {n: None for n in nets}
    return {n: (v or {}).get("ipv4_address") for n, v in nets.items()}


def arg(cmd, flag):
    """The value after flag in a command list, or None."""
    for i, a in enumerate(cmd):
        if a == flag and i + 1 < len(cmd):
            return cmd[i + 1]
    return None


def all_args(cmd, flag):
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag and i + 1 < len(cmd)]


def host_port(addr):
    m = re.fullmatch(r"(?:tcp://|https?://)?([^:/]+):(\d+)(/.*)?", addr)
    assert m, "not a host:port address: %r" % addr
    return m.group(1), int(m.group(2))


def mounted_config(compose_dir, svc, container_path):
    """The repository file bind-mounted at container_path in svc."""
    for v in svc.get("volumes", []):
        parts = v.split(":")
        if len(parts) >= 2 and parts[1] == container_path and parts[0].startswith("."):
            return (compose_dir / parts[0]).resolve()
    return None


def test_compose_services_files_and_hosts(compose):
    services = compose["services"]
    images = {}
    for name, svc in services.items():
        host = (svc.get("labels") or {}).get("casca.host")
        assert host in HOSTS, "%s: label casca.host must be one of %s" % (name, sorted(HOSTS))
        if "build" in svc:
            b = svc["build"]
            ctx = (COMPOSE.parent / b["context"]).resolve()
            assert ctx == ROOT, "%s: the build context must be the repository root" % name
            assert (ctx / b["dockerfile"]).is_file(), "%s: no %s" % (name, b["dockerfile"])
            images[svc["image"]] = name
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).exists(), "%s: mounted file %s is missing" % (name, src)
            else:
                assert src in (compose.get("volumes") or {}), "%s: volume %s not declared" % (name, src)
        for n in service_ips(svc):
            assert n in compose["networks"], "%s: network %s not declared" % (name, n)
        if host == "agents":
            assert list(service_ips(svc)) == ["agents"], "%s: agents join the agents network only" % name
    for name, svc in services.items():
        if "build" not in svc:
            assert svc["image"] in images, "%s: image %s is built by no service" % (name, svc["image"])
        for dep in svc.get("depends_on", []):
            assert dep in services, "%s: depends on unknown service %s" % (name, dep)
        pid = svc.get("pid")
        if pid:
            assert pid.startswith("service:") and pid[8:] in services, "%s: pid %s" % (name, pid)


def test_compose_networks_and_ports(compose):
    services = compose["services"]
    subnets = {n: ipaddress.ip_network(v["ipam"]["config"][0]["subnet"])
               for n, v in compose["networks"].items()}
    for name, svc in services.items():
        for net, ip in service_ips(svc).items():
            if ip:
                assert ipaddress.ip_address(ip) in subnets[net], "%s: %s not in %s" % (name, ip, net)
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert list(published) == ["cascad"], "only cascad may publish ports, not %s" % list(published)
    cfg = load_yaml(mounted_config(COMPOSE.parent, services["cascad"], "/etc/casca/casca.yaml"))
    grpc_port = host_port(cfg["server"]["listen"])[1]
    assert [str(p).split(":")[-1] for p in published["cascad"]] == [str(grpc_port)], \
        "cascad must publish its gRPC port %d and nothing else" % grpc_port
    assert not compose["networks"]["platform"].get("internal") is False
    assert compose["networks"]["platform"].get("internal") and \
        compose["networks"]["clients"].get("internal"), "platform and clients must be internal"


def test_compose_addresses_match_configs(compose):
    services = compose["services"]
    cascad = services["cascad"]
    ips = service_ips(cascad)
    cfg_path = mounted_config(COMPOSE.parent, cascad, arg(cascad["command"], "--config"))
    assert cfg_path and cfg_path.is_file(), "cascad's --config is not a mounted repository file"
    cfg = load_yaml(cfg_path)
    grpc_host, grpc_port = host_port(cfg["server"]["listen"])
    assert arg(cascad["command"], "--data-dir") in [v.split(":")[1] for v in cascad["volumes"]]

    # The bus listens on the platform and clients networks, never on the agents network.
    bus = [host_port(a) for a in cfg["bus"]["listen"]]
    pub = [host_port(a) for a in cfg["bus"].get("publish", [])]
    for h, _ in bus + pub:
        assert h != ips["agents"] and h in ips.values(), "bus address %s: not cascad's, or on agents" % h

    def net_of(ip):
        return next((n for n, a in ips.items() if a == ip), None)

    # The media service: cascad's http_json URL is media's --http port on a shared network.
    media = services["media"]
    media_port = host_port(arg(media["command"], "--http"))[1]
    for s in cfg["settings"]:
        url = s["controller"]["http_json"]["url"]
        h, p = host_port(url)
        assert p == media_port and h in service_ips(media).values(), "setting url %s" % url
        assert net_of(service_ips(cascad)["platform"]) == "platform"
        assert "/System/Configuration/encoding" in url
    assert "--no-report" in media["command"], "media: the players report, not the service"

    # Reporters push to an address cascad's bus listens on, over a network they join.
    for name in ("powermeter", "player"):
        svc = services[name]
        h, p = host_port(arg(svc["command"], "--bus"))
        assert (h, p) in bus, "%s: --bus %s:%d is not one of cascad's bus.listen" % (name, h, p)
        assert net_of(h) in service_ips(svc), "%s: not on the network of %s" % (name, h)
    h, p = host_port(arg(services["player"]["command"], "--server"))
    assert p == media_port and h == service_ips(media)["clients"], "player --server"

    # casca-hook subscribes to cascad's publish address; its --config is mounted.
    hook = services["casca-hook"]
    hook_cfg = load_yaml(mounted_config(COMPOSE.parent, hook, arg(hook["command"], "--config")))
    for hk in hook_cfg["hooks"]:
        h, p = host_port(hk["bus"])
        assert (h, p) in pub, "casca-hook %s: bus %s:%d is not cascad's publish" % (hk["name"], h, p)
        assert net_of(h) in service_ips(hook)

    # Agents reach cascad's gRPC address on the agents network, with a token (tokens are set).
    assert cfg.get("auth", {}).get("tokens"), "cascad listens beyond loopback: tokens needed"
    for name, svc in services.items():
        if svc["labels"]["casca.host"] != "agents":
            continue
        h, p = host_port(arg(svc["command"], "--target"))
        assert (h, p) == (ips["agents"], grpc_port), "%s: --target %s:%d" % (name, h, p)
        assert arg(svc["command"], "--token"), "%s: no --token" % name
        slos = {s["id"] for s in cfg["slos"]}
        settings = {s["id"] for s in cfg["settings"]}
        for sid in all_args(svc["command"], "--slo") + all_args(svc["command"], "--carbon-slo"):
            assert sid in slos, "%s: SLO %s not in cascad's config" % (name, sid)
        for sid in all_args(svc["command"], "--setting"):
            assert sid in settings, "%s: setting %s not in cascad's config" % (name, sid)
    assert grpc_host == "0.0.0.0"


def test_compose_variables_documented():
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used and used <= documented, "undocumented: %s" % sorted(used - documented)
    for cfg in (DEPLOY / "compose").glob("*.yaml"):
        for var in re.findall(r"token_env: ([A-Z_][A-Z0-9_]*)|\$\{([A-Z_][A-Z0-9_]*)\}",
                              cfg.read_text()):
            v = var[0] or var[1]
            assert v in documented, "%s uses %s: not in compose.env.example" % (cfg.name, v)
            assert re.search(r"\b%s:" % v, text), "%s: compose does not pass %s" % (cfg.name, v)


def dockerfiles():
    return sorted((DEPLOY / "docker").glob("Dockerfile.*"))


def test_every_component_has_a_dockerfile(compose):
    used = {s["build"]["dockerfile"] for s in compose["services"].values() if "build" in s}
    present = {str(p.relative_to(ROOT)) for p in dockerfiles()}
    assert used == present, "Dockerfiles not used by compose: %s" % sorted(present - used)
    assert {"Dockerfile.cascad", "Dockerfile.casca-hook", "Dockerfile.demo", "Dockerfile.gds",
            "Dockerfile.rds", "Dockerfile.rlds"} <= {p.name for p in dockerfiles()}


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.name)
def test_dockerfile(path):
    lines = []
    for raw in path.read_text().splitlines():  # join continuation lines
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    instrs = [l for l in lines if l and not l.startswith("#")]
    froms = [l.split() for l in instrs if l.upper().startswith("FROM ")]
    assert froms and all(f[1] == "debian:12" for f in froms), "every stage FROM debian:12"
    assert any("deploy/install-deps.sh" in l for l in instrs if l.startswith("RUN")), \
        "the build stage installs with deploy/install-deps.sh"
    stages = {f[3] for f in froms if len(f) > 3 and f[2].upper() == "AS"}
    built_targets = set()
    for l in instrs:
        m = re.search(r"--target ([\w\- ]+?)(?: \\| &&|$)", l)
        if m:
            built_targets |= set(m.group(1).split())
    for l in instrs:
        if not l.upper().startswith("COPY "):
            continue
        parts = l.split()[1:]
        src_stage = None
        if parts[0].startswith("--from="):
            src_stage = parts[0][7:]
            parts = parts[1:]
        *srcs, dest = parts
        assert srcs, "COPY without a source: %s" % l
        for src in srcs:
            if src_stage is None:
                assert src == "." or (ROOT / src).exists(), "%s: COPY %s: no such file" % (
                    path.name, src)
            else:
                assert src_stage in stages, "%s: COPY --from=%s: no such stage" % (path.name,
                                                                                  src_stage)
                if src.startswith("/src/"):
                    assert (ROOT / src[5:]).exists(), "%s: %s is not in the repository" % (
                        path.name, src)
                elif src.startswith("/build/"):
                    # Built by this build tree too (same CMake targets).
                    assert (BUILD / src[7:]).exists(), "%s: %s is not built here" % (path.name,
                                                                                    src)
    for t in built_targets:
        assert re.search(r"(?:add_executable|add_custom_target|casca_server_program)\(%s\b"
                         % re.escape(t),
                         "\n".join(p.read_text() for p in ROOT.rglob("CMakeLists.txt")
                                   if "build" not in p.relative_to(ROOT).parts[0])), \
            "%s: no CMake target %s" % (path.name, t)
    entry = [l for l in instrs if l.startswith("ENTRYPOINT")]
    assert entry, "%s: no ENTRYPOINT" % path.name


def test_dockerignore_keeps_build_trees_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for d in ("build/", "build-*/", ".git/"):
        assert d in ignored


@pytest.mark.parametrize("unit", ["cascad.service", "casca-hook.service"])
def test_systemd_unit(unit, tmp_path):
    text = (DEPLOY / "systemd" / unit).read_text()
    for key in ("ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=",
                "DynamicUser=yes", "ExecStart=/usr/bin/"):
        assert key in text, "%s: %s missing" % (unit, key)
    if unit == "cascad.service":
        assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    # The config files the units name are the example configs.
    for cfg in re.findall(r"--config /etc/casca/(\S+)", text):
        assert (DEPLOY / "systemd" / cfg).is_file(), "%s: no example deploy/systemd/%s" % (unit,
                                                                                         cfg)
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        # Without systemd: every line is a section, a comment or Key=value of a known section.
        section = None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            if re.fullmatch(r"\[(Unit|Service|Install)\]", line):
                section = line
                continue
            assert section and re.fullmatch(r"[A-Za-z]+=.*", line), "%s:%d: %r" % (unit, n, line)
        return
    local = text.replace("/usr/bin/cascad", str(BUILD / "server/cascad")).replace(
        "/usr/bin/casca-hook", str(BUILD / "server/casca-hook"))
    (tmp_path / unit).write_text(local)
    r = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "systemd-analyze verify %s:\n%s%s" % (unit, r.stdout, r.stderr)


EXAMPLE_CONFIGS = ["deploy/casca.yaml", "deploy/demo/casca.yaml", "deploy/systemd/casca.yaml",
                   "deploy/systemd/casca-hook.yaml", "deploy/compose/casca.yaml",
                   "deploy/compose/casca-hook.yaml", "deploy/hooks/player.yaml",
                   "deploy/hooks/tasmota.yaml"]


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS)
def test_example_config_loads(config):
    r = subprocess.run([CASCAD, "--check", "--config", str(ROOT / config)], capture_output=True,
                       text=True, env=dict(os.environ, **CHECK_ENV), timeout=60)
    assert r.returncode == 0, "%s: %s%s" % (config, r.stdout, r.stderr)


def test_check_catches_a_broken_config(tmp_path):
    """The lint above can fail: a config with a typo is refused with file:line:col."""
    bad = tmp_path / "casca.yaml"
    bad.write_text((DEPLOY / "demo/casca.yaml").read_text().replace("window: 5s", "windw: 5s"))
    r = subprocess.run([CASCAD, "--check", "--config", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and re.search(r"casca\.yaml:\d+:\d+", r.stdout + r.stderr)


def test_example_configs_are_commented():
    """Configs are commented line by line: most key lines carry a comment or follow one."""
    for config in ("deploy/demo/casca.yaml", "deploy/systemd/casca.yaml",
                   "deploy/compose/casca.yaml"):
        lines = (ROOT / config).read_text().splitlines()
        keys = [l for l in lines if re.match(r"\s*[\w-]+:", l)]
        commented = [l for l in keys if "#" in l]
        assert len(commented) >= len(keys) // 2, "%s: %d of %d key lines commented" % (
            config, len(commented), len(keys))
