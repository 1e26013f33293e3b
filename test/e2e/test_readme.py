"""The README's grpcurl commands, run as a user would paste them into bash, so the README cannot
drift from what cascad does. grpcurl itself is not packaged in Debian 12: test/e2e/grpcurl.py
stands in for it (same flags, reflection only, grpcurl's exit codes). The "With grpcurl" block
runs against a daemon with tokens ($TOKEN an operator's), the tour against deploy/casca.yaml.
A comment after a command states what it answers: a status (`# INVALID_ARGUMENT: allowed 1 to
8`) or a figure (`# 84.73 gCO2eq/kWh`) the output must contain."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OP_TOKEN = "op-readme-0123456789abcdef"
CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
         "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
         "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
         "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}


def block_after(marker):
    """The grpcurl commands of the first code block after the line containing marker, each with
    its continuation lines joined, and the expectation its trailing comment states."""
    at = README.index(marker)
    body = re.search(r"```\n(.*?)```", README[at:], re.S).group(1)
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        if not line.startswith("grpcurl "):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
        lexer.whitespace_split, lexer.commenters = True, ""
        words, comment = [], ""
        for w in lexer:  # a word starting with # outside quotes begins the comment
            if w.startswith("#"):
                comment = line[line.rindex(w):].lstrip("# ").strip()
                break
            words.append(w)
        commands.append((line, comment))
    assert commands, "no grpcurl command after %r" % marker
    return commands


@pytest.fixture
def shim(tmp_path):
    """A PATH with `grpcurl` running the stand-in."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    g = bindir / "grpcurl"
    g.write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (sys.executable,
                                                     Path(__file__).with_name("grpcurl.py")))
    g.chmod(0o755)
    return str(bindir) + os.pathsep + os.environ["PATH"]


def run(line, port, path, env=None):
    """Runs one README line in bash, pointed at the test's daemon."""
    cmd = line.replace("127.0.0.1:50051", "127.0.0.1:%d" % port)
    e = dict(os.environ, PATH=path, **(env or {}))
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=e, timeout=60)


def check(line, comment, r):
    out = r.stdout + r.stderr
    m = re.match(r"([A-Z_]+): (.*)", comment)
    if m and m.group(1) in CODES:
        assert r.returncode == 64 + CODES[m.group(1)], (line, out)
        assert m.group(2) in r.stderr, (line, out)
        return
    assert r.returncode == 0, (line, out)
    figure = re.match(r"([0-9][0-9.]*)\b", comment)
    if figure:
        assert figure.group(1) in r.stdout, (line, out)


def test_ops_block_with_tokens(make_daemon, tmp_path, shim):
    """Reflection and health answer without a token; $TOKEN reaches the server (the quoting is
    right); a wrong token is refused."""
    config = "auth:\n  tokens:\n    - {name: ops, role: operator, token_env: TOKEN}\n"
    d = make_daemon(config, env={"TOKEN": OP_TOKEN})
    commands = block_after("With grpcurl (any host with it")
    for line, comment in commands:
        r = run(line, d.port, shim, {"TOKEN": OP_TOKEN})
        check(line, comment, r)
    listed = run(commands[0][0], d.port, shim).stdout.split()
    assert "casca.v1.AdminService" in listed and "grpc.health.v1.Health" in listed
    # the token really is what authorises: a wrong one is refused where one is needed
    token_lines = [l for l, _ in commands if "$TOKEN" in l]
    assert token_lines, "the ops block shows no command with a token"
    for line in token_lines:
        r = run(line, d.port, shim, {"TOKEN": "wrong-token-0123456789"})
        assert r.returncode == 64 + CODES["UNAUTHENTICATED"], r.stderr


def test_tour_with_the_example_config(make_daemon, tmp_path, shim):
    config = (ROOT / "deploy" / "casca.yaml").read_text()
    d = make_daemon(config)
    for line, comment in block_after("A tour with `deploy/casca.yaml`"):
        check(line, comment, run(line, d.port, shim))
