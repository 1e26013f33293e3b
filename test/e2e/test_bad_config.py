"""A bad file never kills cascad: a list holding an item of the wrong kind ("- x", "- [a]", a map
where a list is expected), in the config or in an included settings or SLO file, is answered by
Reload with file:line:col errors and logged on SIGHUP; the daemon keeps serving the old config."""
import signal
import time

from casca.v1 import admin_pb2, admin_pb2_grpc, control_pb2, control_pb2_grpc

GOOD = """\
server:
  log_level: info
store:
  sync: every_commit
settings:
  - {id: a, type: int, controller: {memory: {value: 1}}}
"""

VALID_SETTING = "  - {id: b, type: int, controller: {memory: {value: 2}}}\n"

# (extra files, config text, the file:line:col the error names, relative to the config's dir)
BAD = [
    ({}, GOOD + "  - x\n" + VALID_SETTING, "casca.yaml:7:5"),
    ({}, GOOD + "  - [a]\n" + VALID_SETTING, "casca.yaml:7:5"),
    ({}, GOOD + "probes:\n  - x\n  - {name: p, url: \"http://127.0.0.1:1/\", period: 1s}\n",
     "casca.yaml:8:5"),
    ({}, GOOD + "slos:\n  - [a]\n", "casca.yaml:8:5"),
    ({}, GOOD + "bus: {}\nhooks:\n  - x\n", "casca.yaml:9:5"),
    ({}, GOOD + "auth:\n  tokens:\n    - [a]\n", "casca.yaml:9:7"),
    ({}, GOOD + "slos: {id: a}\n", "casca.yaml:7:7"),
    ({"more.yaml": "settings:\n  - x\n" + VALID_SETTING},
     GOOD + "settings_files: [more.yaml]\n", "more.yaml:2:5"),
    ({"slos.yaml": "- [a]\n"}, GOOD + "slo_files: [slos.yaml]\n", "slos.yaml:1:3"),
]


def setting_ids(d):
    stub = control_pb2_grpc.ServiceControlStub(d.channel())
    return {s.id for s in stub.ListSettings(control_pb2.ListSettingsRequest(), timeout=5).settings}


def generation(d):
    admin = admin_pb2_grpc.AdminServiceStub(d.channel())
    return admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5).config_generation


def write_bad(d, files, text):
    for name, body in files.items():
        (d.tmp / name).write_text(body)
    d.write_config(text)


def test_reload_with_a_bad_list_changes_nothing(make_daemon, tmp_path):
    d = make_daemon(GOOD)
    admin = admin_pb2_grpc.AdminServiceStub(d.channel())
    for files, text, at in BAD:
        write_bad(d, files, text)
        r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
        assert not r.ok and r.generation == 1, (text, list(r.errors))
        assert any(e.startswith(f"{tmp_path}/{at}: ") for e in r.errors), (at, list(r.errors))
        assert d.proc.poll() is None, d.output()
        assert setting_ids(d) == {"a"}  # still the old config
    d.write_config(GOOD + VALID_SETTING)  # and a good file after them all loads
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=10)
    assert r.ok and r.generation == 2, list(r.errors)
    assert setting_ids(d) == {"a", "b"}


def test_sighup_with_a_bad_list_logs_and_keeps_serving(make_daemon, tmp_path):
    d = make_daemon(GOOD)
    for n, (files, text, at) in enumerate(BAD[:3] + BAD[-2:]):
        write_bad(d, files, text)
        d.proc.send_signal(signal.SIGHUP)
        want = f"reload rejected: {tmp_path}/{at}: "
        deadline = time.time() + 20
        while d.output().count(want) < 1 + sum(b[2] == at for b in (BAD[:3] + BAD[-2:])[:n]):
            assert d.proc.poll() is None, d.output()
            assert time.time() < deadline, f"no '{want}' in:\n{d.output()}"
            time.sleep(0.05)
        assert generation(d) == 1
        assert setting_ids(d) == {"a"}
