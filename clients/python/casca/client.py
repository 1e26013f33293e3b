"""casca.Client: typed calls to every casca service over one gRPC channel.

Each method sends one request with the client's token and a deadline (the client's default timeout
unless the call gives one) and returns the generated message (or a list of them for repeated
replies). A failed call raises casca.CascaError with the status code and the server's message;
bad arguments caught before sending raise it too, with INVALID_ARGUMENT.

Times are datetime (naive = UTC), unix seconds (int or float) or google.protobuf.Timestamp;
durations are timedelta, seconds or google.protobuf.Duration.

Thread safety: a Client may be shared by threads (gRPC channels are thread-safe).
"""
import datetime
import numbers
import os

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from .errors import CascaError
from .v1 import admin_pb2, admin_pb2_grpc
from .v1 import carbon_pb2, carbon_pb2_grpc
from .v1 import common_pb2
from .v1 import control_pb2, control_pb2_grpc
from .v1 import slo_pb2, slo_pb2_grpc
from .v1 import telemetry_pb2, telemetry_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

_GRANULARITY = {"hourly": carbon_pb2.GRANULARITY_HOURLY, "daily": carbon_pb2.GRANULARITY_DAILY,
                "monthly": carbon_pb2.GRANULARITY_MONTHLY, "yearly": carbon_pb2.GRANULARITY_YEARLY}
_AGGREGATION = {"mean": telemetry_pb2.AGGREGATION_MEAN, "min": telemetry_pb2.AGGREGATION_MIN,
                "max": telemetry_pb2.AGGREGATION_MAX, "sum": telemetry_pb2.AGGREGATION_SUM,
                "count": telemetry_pb2.AGGREGATION_COUNT, "last": telemetry_pb2.AGGREGATION_LAST,
                "rate": telemetry_pb2.AGGREGATION_RATE,
                "quantile": telemetry_pb2.AGGREGATION_QUANTILE}


def _bad(method, message):
    return CascaError(grpc.StatusCode.INVALID_ARGUMENT, message, method)


def timestamp(t, method=""):
    """A google.protobuf.Timestamp from a datetime (naive = UTC), unix seconds or a Timestamp."""
    if t is None or isinstance(t, timestamp_pb2.Timestamp):
        return t
    ts = timestamp_pb2.Timestamp()
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        d = t - _EPOCH
        ts.FromNanoseconds((d.days * 86400 + d.seconds) * 10**9 + d.microseconds * 1000)
    elif isinstance(t, numbers.Real) and not isinstance(t, bool):
        ts.FromNanoseconds(int(round(float(t) * 1e9)))
    else:
        raise _bad(method, f"a time must be a datetime, unix seconds or a Timestamp, not {t!r}")
    return ts


def duration(d, method=""):
    """A google.protobuf.Duration from a timedelta, seconds or a Duration."""
    if d is None or isinstance(d, duration_pb2.Duration):
        return d
    out = duration_pb2.Duration()
    if isinstance(d, datetime.timedelta):
        out.FromTimedelta(d)
    elif isinstance(d, numbers.Real) and not isinstance(d, bool):
        out.FromNanoseconds(int(round(float(d) * 1e9)))
    else:
        raise _bad(method, f"a duration must be a timedelta, seconds or a Duration, not {d!r}")
    return out


def to_value(x, value_type=None, method=""):
    """A casca.v1.Value from a Python (or numpy) value. With value_type (a casca.v1.ValueType),
    the value is converted to that type (an integral float for an INT setting is accepted); without
    it the kind follows the Python type (bool, int, float, str)."""
    if isinstance(x, common_pb2.Value):
        return x
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        x = x.item()
    t = value_type
    if t in (None, common_pb2.VALUE_TYPE_UNSPECIFIED):
        if isinstance(x, bool):
            t = common_pb2.VALUE_TYPE_BOOL
        elif isinstance(x, numbers.Integral):
            t = common_pb2.VALUE_TYPE_INT
        elif isinstance(x, numbers.Real):
            t = common_pb2.VALUE_TYPE_DOUBLE
        elif isinstance(x, str):
            t = common_pb2.VALUE_TYPE_STRING
        else:
            raise _bad(method, f"a value must be a bool, int, float or str, not {x!r}")
    if t == common_pb2.VALUE_TYPE_BOOL:
        if not isinstance(x, (bool, numbers.Integral)) or x not in (0, 1):
            raise _bad(method, f"expected a boolean, not {x!r}")
        return common_pb2.Value(bool_value=bool(x))
    if t == common_pb2.VALUE_TYPE_INT:
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not (
                isinstance(x, numbers.Integral) or float(x).is_integer()):
            raise _bad(method, f"expected an integer, not {x!r}")
        if not -2**63 <= int(x) < 2**63:
            raise _bad(method, f"{x!r} does not fit a 64-bit integer")
        return common_pb2.Value(int_value=int(x))
    if t == common_pb2.VALUE_TYPE_DOUBLE:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise _bad(method, f"expected a number, not {x!r}")
        return common_pb2.Value(double_value=float(x))
    if not isinstance(x, str):
        raise _bad(method, f"expected a string, not {x!r}")
    return common_pb2.Value(string_value=x)


def value_of(v):
    """The Python value of a casca.v1.Value (int, float, bool or str), None when unset."""
    if v is None:
        return None
    kind = v.WhichOneof("kind")
    return getattr(v, kind) if kind else None


def range_of(r):
    """(min, max) of a casca.v1.Range; an absent bound is None."""
    lo = r.min if r.WhichOneof("optional_min") else None
    hi = r.max if r.WhichOneof("optional_max") else None
    return lo, hi


def _read_pem(x):
    if x is None or isinstance(x, bytes):
        return x
    with open(os.fspath(x), "rb") as f:
        return f.read()


def make_channel(target, tls=False, ca=None, cert=None, key=None, server_name=None, options=()):
    """A grpc channel to target (HOST:PORT). TLS when tls is true or any of ca/cert/key is given:
    ca = trusted roots (PEM bytes or a file; None = the system's), cert + key = a client
    certificate (PEM bytes or files), server_name = the name to check in the server's
    certificate when it differs from the host in target."""
    # grpc's own reconnect backoff (1 s growing to 120 s) would outlast a restarted cascad by
    # minutes, and a call on a channel waiting it out fails at once: the channel tries again at
    # least once a second, casca.Session's jittered backoff paces the Hellos (options given win;
    # not grpc.min_reconnect_backoff_ms, which is also the connect timeout, 20 s)
    given = {k for k, _ in options}
    opts = [(k, v) for k, v in (("grpc.initial_reconnect_backoff_ms", 200),
                                ("grpc.max_reconnect_backoff_ms", 1000)) if k not in given]
    opts += list(options)
    if tls or ca or cert or key:
        creds = grpc.ssl_channel_credentials(root_certificates=_read_pem(ca),
                                             private_key=_read_pem(key),
                                             certificate_chain=_read_pem(cert))
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        return grpc.secure_channel(target, creds, options=opts)
    return grpc.insecure_channel(target, options=opts)


class Stream:
    """A server stream (watch, export): iterate it for messages; cancel() (or leaving a with
    block) ends it. Errors raise CascaError; the end of a cancelled stream is a plain stop."""

    def __init__(self, call, method):
        self._call = call
        self._method = method
        self._cancelled = False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._call)
        except grpc.RpcError as e:
            if self._cancelled and e.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise CascaError.from_rpc(e, self._method) from None

    def cancel(self):
        self._cancelled = True
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()


class Client:
    """Typed calls to a casca server.

    Client(target="127.0.0.1:50051", token=None, tls=False, ca=None, cert=None, key=None,
           server_name=None, timeout=10.0, channel=None)

    token: sent as "authorization: Bearer <token>" on every call (None: $CASCA_TOKEN if set).
    tls/ca/cert/key/server_name: see make_channel. timeout: default deadline of unary calls in
    seconds (streams have none unless given). channel: use this grpc channel instead (not closed
    by close()).
    """

    def __init__(self, target=DEFAULT_TARGET, token=None, *, tls=False, ca=None, cert=None,
                 key=None, server_name=None, timeout=10.0, channel=None, options=()):
        self.target = target
        if token is None:
            token = os.environ.get("CASCA_TOKEN") or None
        self._md = (("authorization", f"Bearer {token}"),) if token else None
        self.timeout = timeout
        self._own = channel is None
        self.channel = channel or make_channel(target, tls, ca, cert, key, server_name, options)
        self._slo = slo_pb2_grpc.SloServiceStub(self.channel)
        self._ctl = control_pb2_grpc.ServiceControlStub(self.channel)
        self._carbon = carbon_pb2_grpc.CarbonServiceStub(self.channel)
        self._tm = telemetry_pb2_grpc.TelemetryServiceStub(self.channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self.channel)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def metadata(self):
        """The call metadata (the bearer token), for calls made with the generated stubs."""
        return self._md

    def _unary(self, fn, method, request, timeout):
        t = self.timeout if timeout is None else timeout
        try:
            return fn(request, timeout=t, metadata=self._md)
        except grpc.RpcError as e:
            raise CascaError.from_rpc(e, "casca.v1." + method) from None

    def _stream(self, fn, method, request, timeout):
        return Stream(fn(request, timeout=timeout, metadata=self._md), "casca.v1." + method)

    def ready(self, timeout=10.0):
        """Waits until the channel is connected; CascaError UNAVAILABLE after timeout seconds."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise CascaError(grpc.StatusCode.UNAVAILABLE,
                             f"no connection to {self.target} within {timeout} s (is cascad "
                             "running there?)", "connect") from None
        return self

    def close(self):
        if self._own:
            self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- SLOs ------------------------------------------------------------------------------------

    def slos(self, ids=(), timeout=None):
        """The SLOs (casca.v1.Slo), all visible ones or those ids."""
        r = self._unary(self._slo.ListSlos, "SloService/ListSlos",
                        slo_pb2.ListSlosRequest(ids=list(ids)), timeout)
        return list(r.slos)

    def slo(self, id, timeout=None):
        """An SLO's current status (casca.v1.SloStatus: value, has_value, fulfilled, compliance)."""
        return self._unary(self._slo.GetSlo, "SloService/GetSlo", slo_pb2.GetSloRequest(id=id),
                           timeout)

    def slo_history(self, id, start, end=None, step=None, timeout=None):
        """An SLO's values at steps from start to end (now if None): list of casca.v1.SloSample."""
        m = "SloService/GetSloHistory"
        req = slo_pb2.GetSloHistoryRequest(id=id, start=timestamp(start, m),
                                           end=timestamp(end, m), step=duration(step, m))
        return list(self._unary(self._slo.GetSloHistory, m, req, timeout).samples)

    def watch_slos(self, ids=(), min_interval=None, timeout=None):
        """A Stream of casca.v1.SloStatus, one whenever a watched SLO changes."""
        m = "SloService/WatchSlos"
        req = slo_pb2.WatchSlosRequest(ids=list(ids), min_interval=duration(min_interval, m))
        return self._stream(self._slo.WatchSlos, m, req, timeout)

    # -- service control -------------------------------------------------------------------------

    def settings(self, ids=(), timeout=None):
        """The settings (casca.v1.Setting: type, range, step, allowed, read_only, unit)."""
        r = self._unary(self._ctl.ListSettings, "ServiceControl/ListSettings",
                        control_pb2.ListSettingsRequest(ids=list(ids)), timeout)
        return list(r.settings)

    def get_setting(self, id, timeout=None):
        """A setting's value (casca.v1.SettingValue; value_of(v.value) gives the Python value)."""
        return self._unary(self._ctl.GetSetting, "ServiceControl/GetSetting",
                           control_pb2.GetSettingRequest(id=id), timeout)

    def set_setting(self, id, value, dry_run=False, timeout=None):
        """Sets a setting (value: bool, int, float, str or casca.v1.Value) and returns the value
        read back (casca.v1.SettingValue); dry_run validates only."""
        m = "ServiceControl/SetSetting"
        req = control_pb2.SetSettingRequest(id=id, value=to_value(value, method="casca.v1." + m),
                                            dry_run=dry_run)
        return self._unary(self._ctl.SetSetting, m, req, timeout)

    def watch_settings(self, ids=(), timeout=None):
        """A Stream of casca.v1.SettingValue: the current values, then every change."""
        return self._stream(self._ctl.WatchSettings, "ServiceControl/WatchSettings",
                            control_pb2.WatchSettingsRequest(ids=list(ids)), timeout)

    # -- carbon ----------------------------------------------------------------------------------

    @staticmethod
    def _granularity(g, method):
        if g is None or isinstance(g, int):
            return g or carbon_pb2.GRANULARITY_UNSPECIFIED
        try:
            return _GRANULARITY[str(g).lower()]
        except KeyError:
            raise _bad(method, f"granularity must be one of {', '.join(_GRANULARITY)}, "
                               f"not {g!r}") from None

    @staticmethod
    def _shares(shares, method):
        items = shares.items() if isinstance(shares, dict) else shares
        try:
            return [carbon_pb2.MixShare(source=s, share=float(v)) for s, v in items]
        except (TypeError, ValueError):
            raise _bad(method, "a mix is a dict {source: share} or a list of (source, share) "
                               "pairs, e.g. {'solar': 0.3, 'gas': 0.7}") from None

    def intensity(self, zone="", time=None, granularity=None, timeout=None):
        """A grid zone's carbon intensity (casca.v1.Intensity) at time (None = now)."""
        m = "CarbonService/GetLocationIntensity"
        req = carbon_pb2.GetLocationIntensityRequest(
            zone=zone, time=timestamp(time, m), granularity=self._granularity(granularity, m))
        return self._unary(self._carbon.GetLocationIntensity, m, req, timeout)

    def intensity_history(self, zone, start, end=None, granularity=None, timeout=None):
        """A zone's intensities from start to end: list of casca.v1.Intensity."""
        m = "CarbonService/GetLocationHistory"
        req = carbon_pb2.GetLocationHistoryRequest(
            zone=zone, start=timestamp(start, m), end=timestamp(end, m),
            granularity=self._granularity(granularity, m))
        return list(self._unary(self._carbon.GetLocationHistory, m, req, timeout).points)

    def mix(self, shares, factor_set="", timeout=None):
        """The intensity of an energy mix ({source: share}): casca.v1.Intensity."""
        m = "CarbonService/GetMixIntensity"
        req = carbon_pb2.GetMixIntensityRequest(shares=self._shares(shares, m),
                                                factor_set=factor_set)
        return self._unary(self._carbon.GetMixIntensity, m, req, timeout)

    def sources(self, factor_set="", timeout=None):
        """Energy sources and their factors: casca.v1.ListSourcesResponse."""
        return self._unary(self._carbon.ListSources, "CarbonService/ListSources",
                           carbon_pb2.ListSourcesRequest(factor_set=factor_set), timeout)

    def zones(self, prefix="", timeout=None):
        """Zones with data and their coverage: list of casca.v1.Zone."""
        r = self._unary(self._carbon.ListZones, "CarbonService/ListZones",
                        carbon_pb2.ListZonesRequest(prefix=prefix), timeout)
        return list(r.zones)

    def footprint(self, energy_wh=None, power_w=None, duration_s=None, zone="", time=None,
                  granularity=None, mix=None, factor_set="", embodied_gco2eq=None,
                  functional_units=None, functional_unit="", timeout=None):
        """Emissions of an energy use (casca.v1.Footprint): energy_wh, or power_w over duration_s;
        at a zone and time (default: the server's zone, now) or of a mix ({source: share})."""
        m = "CarbonService/ComputeFootprint"
        req = carbon_pb2.ComputeFootprintRequest(functional_unit=functional_unit)
        if (energy_wh is None) == (power_w is None):
            raise _bad("casca.v1." + m, "give either energy_wh or power_w with duration_s")
        if energy_wh is not None:
            req.energy_wh = float(energy_wh)
        else:
            if duration_s is None:
                raise _bad("casca.v1." + m, "power_w needs duration_s (how long it was drawn)")
            req.power.power_w = float(power_w)
            req.power.duration.CopyFrom(duration(duration_s, m))
        if mix is not None:
            req.mix.shares.extend(self._shares(mix, m))
            req.mix.factor_set = factor_set
        else:
            req.at.zone = zone
            if time is not None:
                req.at.time.CopyFrom(timestamp(time, m))
            req.at.granularity = self._granularity(granularity, m)
        if embodied_gco2eq is not None:
            req.embodied_gco2eq = float(embodied_gco2eq)
        if functional_units is not None:
            req.functional_units = float(functional_units)
        return self._unary(self._carbon.ComputeFootprint, m, req, timeout)

    def best_window(self, duration_s, zone="", start=None, end=None, timeout=None):
        """The start time with the lowest mean intensity for a job of duration_s between start and
        end: casca.v1.GetBestWindowResponse."""
        m = "CarbonService/GetBestWindow"
        req = carbon_pb2.GetBestWindowRequest(zone=zone, start=timestamp(start, m),
                                              end=timestamp(end, m),
                                              duration=duration(duration_s, m))
        return self._unary(self._carbon.GetBestWindow, m, req, timeout)

    # -- telemetry -------------------------------------------------------------------------------

    @staticmethod
    def point(series, value, tags=None, time=None):
        """A casca.v1.Point (time None = time of receipt)."""
        p = telemetry_pb2.Point(series=series, value=float(value), tags=dict(tags or {}))
        if time is not None:
            p.time.CopyFrom(timestamp(time, "TelemetryService/Publish"))
        return p

    def publish(self, points, timeout=None):
        """Stores points (casca.v1.Point, or (series, value[, tags[, time]]) tuples) and returns
        casca.v1.PublishResponse (accepted, rejected, errors). Reporter or operator role."""
        pts = [p if isinstance(p, telemetry_pb2.Point) else self.point(*p) for p in points]
        return self._unary(self._tm.Publish, "TelemetryService/Publish",
                           telemetry_pb2.PublishRequest(points=pts), timeout)

    def query(self, series, start, end=None, tags=None, aggregation="mean", step=None,
              quantile=0.0, timeout=None):
        """Aggregated samples of a series (operator role): list of casca.v1.QuerySeries."""
        m = "TelemetryService/Query"
        agg = aggregation
        if not isinstance(agg, int):
            if str(agg).lower() not in _AGGREGATION:
                raise _bad("casca.v1." + m, f"aggregation must be one of "
                                            f"{', '.join(_AGGREGATION)}, not {agg!r}")
            agg = _AGGREGATION[str(agg).lower()]
        req = telemetry_pb2.QueryRequest(series=series, tags=dict(tags or {}),
                                         start=timestamp(start, m), end=timestamp(end, m),
                                         aggregation=agg, step=duration(step, m),
                                         quantile=quantile)
        return list(self._unary(self._tm.Query, m, req, timeout).series)

    def list_series(self, prefix="", timeout=None):
        """Stored series and their coverage (operator role): list of casca.v1.SeriesInfo."""
        r = self._unary(self._tm.ListSeries, "TelemetryService/ListSeries",
                        telemetry_pb2.ListSeriesRequest(prefix=prefix), timeout)
        return list(r.series)

    # -- admin (operator role) -------------------------------------------------------------------

    def status(self, timeout=None):
        """Server version, uptime, config generation, counts: casca.v1.GetStatusResponse."""
        return self._unary(self._admin.GetStatus, "AdminService/GetStatus",
                           admin_pb2.GetStatusRequest(), timeout)

    def reload(self, timeout=None):
        """Re-reads the config: casca.v1.ReloadResponse (ok, errors as file:line:col, generation).
        A bad config is not an exception: check .ok and .errors."""
        return self._unary(self._admin.Reload, "AdminService/Reload", admin_pb2.ReloadRequest(),
                           timeout)

    def audit(self, start=None, end=None, setting_id="", limit=0, timeout=None):
        """Audited setting changes, oldest first: list of casca.v1.AuditEntry."""
        m = "AdminService/GetAuditLog"
        req = admin_pb2.GetAuditLogRequest(start=timestamp(start, m), end=timestamp(end, m),
                                           setting_id=setting_id, limit=limit)
        return list(self._unary(self._admin.GetAuditLog, m, req, timeout).entries)

    def agent_sessions(self, timeout=None):
        """Open agent sessions: list of casca.v1.AgentSessionInfo."""
        r = self._unary(self._admin.ListAgentSessions, "AdminService/ListAgentSessions",
                        admin_pb2.ListAgentSessionsRequest(), timeout)
        return list(r.sessions)

    def export_trajectory(self, session_id=None, agent_name=None, start=None, end=None,
                          timeout=None):
        """A Stream of casca.v1.TrajectoryStep of one session or of every session of an agent."""
        m = "AdminService/ExportTrajectory"
        if (session_id is None) == (agent_name is None):
            raise _bad("casca.v1." + m, "give exactly one of session_id or agent_name")
        req = admin_pb2.ExportTrajectoryRequest(start=timestamp(start, m), end=timestamp(end, m))
        if session_id is not None:
            req.session_id = session_id
        else:
            req.agent_name = agent_name
        return self._stream(self._admin.ExportTrajectory, m, req, timeout)

    # -- helpers ---------------------------------------------------------------------------------

    def session(self, name, slos=(), settings=(), period=1.0, mode="control", zone="", **kw):
        """An agent session (casca.Session) on this client's channel; call .hello() to open it."""
        from .session import Session
        return Session(self, name, slos=slos, settings=settings, period=period, mode=mode,
                       zone=zone, **kw)

    def reporter(self, **kw):
        """A casca.Reporter publishing through this client."""
        from .reporter import Reporter
        return Reporter(self, **kw)
