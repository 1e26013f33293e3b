"""casca: the Python client of the casca control plane.

    import casca
    with casca.Client("127.0.0.1:50051", token="...") as c:
        print(c.slo("ServiceSLO").value)

- casca.Client: typed calls to every service (SLOs, settings, carbon, telemetry, admin).
- casca.Reporter: publishes telemetry points in batches from a background thread.
- casca.Session: one AgentService.Session (hello, states, act, goodbye).
- casca.env.CascaEnv: a Gym-style environment over one Session (import casca.env; observations
  are numpy arrays when numpy is installed, lists otherwise).
- casca.CascaError: every failed call, with the gRPC status code and the server's message.
- casca.v1: the generated protobuf and gRPC modules (casca.v1.slo_pb2, ...).

The generated modules are never committed: the build writes them into BUILD/py/casca/v1 (CMake,
grpc_tools.protoc). Run with PYTHONPATH=clients/python:BUILD/py; without BUILD/py on the path this
package also looks in $CASCA_PY_STUBS and in this checkout's build/py.
"""
import os
import pkgutil

__version__ = "0.1.0"


def _generated_dirs():
    """Directories that may hold the generated casca/v1 package, most specific first."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = []
    env = os.environ.get("CASCA_PY_STUBS")
    if env:
        dirs.append(os.path.join(env, "casca"))
    dirs.extend(pkgutil.extend_path([], __name__))  # every casca/ on sys.path
    dirs.append(os.path.join(here, os.pardir, os.pardir, os.pardir, "build", "py", "casca"))
    return dirs


def _add_generated():
    for d in _generated_dirs():
        d = os.path.normpath(d)
        if os.path.isfile(os.path.join(d, "v1", "agent_pb2.py")):
            if d not in __path__:
                __path__.append(d)
            return
    raise ImportError(
        "casca: the generated modules casca/v1/*_pb2.py were not found. Build casca "
        "(cmake -S . -B build && cmake --build build writes them into build/py) and run with "
        "PYTHONPATH=clients/python:build/py, or set CASCA_PY_STUBS=BUILD/py.")


_add_generated()

from .errors import CascaError  # noqa: E402
from .client import Client, range_of, to_value, value_of  # noqa: E402
from .reporter import Reporter  # noqa: E402
from .session import Session  # noqa: E402

__all__ = ["Client", "Reporter", "Session", "CascaError", "value_of", "to_value", "range_of"]
