"""CarbonService (EMMA) through the real daemon: energy mixes against hand computation, the bundled
data (spot checks, daily/monthly means against a brute-force sum of the shipped CSV), countries to
grid zones, coverage errors and nearest-year estimates, footprints and SCI, best windows against a
brute-force search, the importer (both header variants, malformed rows, idempotent, while cascad
runs), and the live providers against real local HTTP servers serving Electricity Maps and UK
National Grid JSON, including 401, 429, 500, timeouts and garbage JSON."""
import csv
import datetime as dt
import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from casca.v1 import carbon_pb2 as cb
from casca.v1 import carbon_pb2_grpc as cbg

from conftest import CASCAD, carbon_bundle

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "data", "carbon")
IMPORTER = os.path.join(os.path.dirname(CASCAD), "casca-carbon-import")
UTC = dt.timezone.utc


def ts(y, m=1, d=1, h=0, minute=0):
    t = Timestamp()
    t.FromDatetime(dt.datetime(y, m, d, h, minute))
    return t


def ts_of(when):
    t = Timestamp()
    t.FromDatetime(when.replace(tzinfo=None))
    return t


def hours(n):
    return Duration(seconds=int(n * 3600))


def stub(d, token=None):
    return cbg.CarbonServiceStub(d.channel(token))


def err(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*a, **kw)
    return e.value.code(), e.value.details()


_AT = None


def at_hours():
    """AT's 2022 hours from the shipped CSV: {datetime: value}."""
    global _AT
    if _AT is None:
        _AT = {}
        with open(os.path.join(DATA, "electricitymaps_2022_hourly_lifecycle.csv")) as f:
            for row in csv.DictReader(f):
                if row["zone"] == "AT":
                    when = dt.datetime.strptime(row["datetime_utc"], "%Y-%m-%dT%H:%M:%SZ")
                    _AT[when] = float(row["carbon_intensity_gco2eq_per_kwh"])
    return _AT


# ---------------------------------------------------------------- mixes

FACTORS_CONFIG = """\
carbon:
  bundled_data: ""
  factor_sets:
    - name: direct test
      basis: direct
      sources: {coal: 1000, gas: {factor: 400, description: "CCGT, combustion only"}, wind: 0}
"""


def test_mix_intensity_and_sources(make_daemon):
    d = make_daemon(FACTORS_CONFIG)
    s = stub(d)
    # hand computation: 0.5*820 + 0.3*490 + 0.2*11 = 559.2, as fractions or percentages
    for shares in ([50, 30, 20], [0.5, 0.3, 0.2], [5, 3, 2]):
        r = s.GetMixIntensity(cb.GetMixIntensityRequest(shares=[
            cb.MixShare(source="coal", share=shares[0]), cb.MixShare(source="Gas", share=shares[1]),
            cb.MixShare(source="wind_onshore", share=shares[2])]))
        assert r.gco2eq_per_kwh == pytest.approx(559.2)
        assert r.factor_set == "IPCC AR5 2014 lifecycle medians"
        assert r.basis == "lifecycle" and r.provider == "" and not r.estimated
    r = s.GetMixIntensity(cb.GetMixIntensityRequest(shares=[
        cb.MixShare(source="nuclear", share=1), cb.MixShare(source="unknown", share=1)]))
    assert r.gco2eq_per_kwh == pytest.approx((12 + 700) / 2)
    assert "700" in r.note
    code, msg = err(s.GetMixIntensity, cb.GetMixIntensityRequest(
        shares=[cb.MixShare(source="fusion", share=1)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "fusion" in msg and "coal" in msg and "wind_offshore" in msg
    for bad in ([cb.MixShare(source="coal", share=-1)], [], [cb.MixShare(source="coal", share=0)],
                [cb.MixShare(source="coal", share=float("nan"))]):
        assert err(s.GetMixIntensity, cb.GetMixIntensityRequest(shares=bad))[0] == \
            grpc.StatusCode.INVALID_ARGUMENT

    src = s.ListSources(cb.ListSourcesRequest())
    assert src.factor_set == "IPCC AR5 2014 lifecycle medians"
    f = {x.source: x.gco2eq_per_kwh for x in src.sources}
    assert f == {"coal": 820, "gas": 490, "oil": 650, "biomass": 230, "biomass_cofiring": 740,
                 "solar": 48, "solar_rooftop": 41, "solar_concentrated": 27, "geothermal": 38,
                 "hydro": 24, "nuclear": 12, "wind_offshore": 12, "wind_onshore": 11,
                 "unknown": 700}
    assert all(x.description for x in src.sources)
    # an operator's set, chosen by name
    src = s.ListSources(cb.ListSourcesRequest(factor_set="direct test"))
    assert {x.source: x.gco2eq_per_kwh for x in src.sources} == {"coal": 1000, "gas": 400,
                                                                "wind": 0}
    r = s.GetMixIntensity(cb.GetMixIntensityRequest(factor_set="direct test", shares=[
        cb.MixShare(source="gas", share=1), cb.MixShare(source="wind", share=3)]))
    assert r.gco2eq_per_kwh == pytest.approx(100) and r.basis == "direct"
    assert r.factor_set == "direct test"
    code, msg = err(s.ListSources, cb.ListSourcesRequest(factor_set="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "direct test" in msg
    # footprint of a mix: 2 kWh at 559.2 g/kWh
    fp = s.ComputeFootprint(cb.ComputeFootprintRequest(energy_wh=2000, mix=cb.MixShares(shares=[
        cb.MixShare(source="coal", share=5), cb.MixShare(source="gas", share=3),
        cb.MixShare(source="wind_onshore", share=2)])))
    assert fp.gco2eq == pytest.approx(1118.4) and fp.intensity.factor_set
    assert not fp.has_sci


def test_config_errors(make_daemon):
    d = make_daemon(start=False, config="""\
carbon:
  default_zone: "A T"
  colour: green
  providers: [bundled, nosuch, {name: uk, timeout: 5y}]
  factor_sets:
    - {name: x, sources: {coal: -3}}
""")
    out = subprocess.run(d.args, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    for what in ("default_zone", "unknown key 'colour'", "unknown carbon provider 'nosuch'",
                 "timeout", "negative"):
        assert what in text, text
    assert re.search(r"casca\.yaml:\d+:\d+", text)


# ---------------------------------------------------------------- replay

def test_replay(make_daemon, tmp_path):
    """carbon.replay plays 2022-01-01 from 00:00 at an hour a second: "now" of CarbonService and
    of agents' CarbonState is the replayed hour, said in the note; explicit times are untouched;
    bad replay keys are refused with their position."""
    bundle = carbon_bundle(tmp_path, value=lambda i: 100 + i)
    d = make_daemon(f"""\
carbon: {{default_zone: AT, bundled_data: {bundle},
          replay: {{from: 2022-01-01T00:00:00Z, speed: 3600}}}}
""")
    s = stub(d)
    first = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT"), timeout=5)
    t0 = first.time.ToDatetime()
    assert t0.year == 2022 and t0.month == 1 and t0.day == 1, first
    assert first.gco2eq_per_kwh == 100 + t0.hour, first
    assert "replayed: from 2022-01-01T00:00:00Z at 3600x" in first.note, first
    deadline = time.time() + 10
    while True:  # the replayed clock moves an hour a second
        later = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT"), timeout=5)
        if later.time.ToDatetime().hour >= t0.hour + 2:
            break
        assert time.time() < deadline, later
        time.sleep(0.2)
    assert later.gco2eq_per_kwh == 100 + later.time.ToDatetime().hour
    # an explicit time is the data's time, not shifted, and says nothing about a replay
    at = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT", time=ts(2022, 3, 1, 5)),
                                timeout=5)
    assert at.gco2eq_per_kwh == 100 + (31 + 28) * 24 + 5 and "replayed" not in at.note

    for bad, words in (("{from: yesterday}", "'from' is required"),
                       ("{from: 2022-01-01T00:00:00Z, speed: 0}", "speed: out of range"),
                       ("{from: 2022-01-01T00:00:00Z, pace: 2}", "unknown key 'pace'"),
                       ("[2022]", "carbon.replay: expected a map")):
        d2 = make_daemon(start=False, config=f"carbon: {{replay: {bad}}}\n")
        out = subprocess.run(d2.args, capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and words in out.stderr + out.stdout, (bad, out)
        assert re.search(r"casca\.yaml:1:\d+", out.stderr + out.stdout), out


# ---------------------------------------------------------------- bundled data

def test_bundled_data(make_daemon):
    d = make_daemon("carbon: {default_zone: AT}\n")
    s = stub(d)
    # the spot checks
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT", time=ts(2022)))
    assert r.gco2eq_per_kwh == pytest.approx(84.73)
    assert (r.provider, r.basis, r.estimated, r.granularity) == \
        ("bundled", "lifecycle", False, cb.GRANULARITY_HOURLY)
    assert r.duration.seconds == 3600 and r.time.seconds == ts(2022).seconds
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(
        time=ts(2022, 7, 9, 13), granularity=cb.GRANULARITY_YEARLY))  # default zone
    assert r.zone == "AT" and round(r.gco2eq_per_kwh, 2) == 244.52
    assert r.time.seconds == ts(2022).seconds and r.duration.seconds == 365 * 86400

    # daily and monthly means against a brute-force sum of the CSV
    hrs = at_hours()
    for (y, m, day) in ((2022, 1, 1), (2022, 3, 27), (2022, 12, 31)):
        want = [v for k, v in hrs.items() if (k.year, k.month, k.day) == (y, m, day)]
        r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(
            zone="at", time=ts(y, m, day, 17, 30), granularity=cb.GRANULARITY_DAILY))
        assert len(want) == 24 and r.gco2eq_per_kwh == pytest.approx(sum(want) / 24)
        assert r.time.seconds == ts(y, m, day).seconds
    for m in (2, 7):
        want = [v for k, v in hrs.items() if k.month == m]
        r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(
            zone="AT", time=ts(2022, m, 15), granularity=cb.GRANULARITY_MONTHLY))
        assert r.gco2eq_per_kwh == pytest.approx(sum(want) / len(want))
    h = s.GetLocationHistory(cb.GetLocationHistoryRequest(
        zone="AT", start=ts(2022), end=ts(2023), granularity=cb.GRANULARITY_MONTHLY))
    assert len(h.points) == 12
    for p in h.points:
        month = p.time.ToDatetime().month
        want = [v for k, v in hrs.items() if k.month == month]
        assert p.gco2eq_per_kwh == pytest.approx(sum(want) / len(want))
    h = s.GetLocationHistory(cb.GetLocationHistoryRequest(
        zone="AT", start=ts(2022, 1, 1, 5), end=ts(2022, 1, 1, 9)))
    assert [p.gco2eq_per_kwh for p in h.points] == \
        pytest.approx([hrs[dt.datetime(2022, 1, 1, k)] for k in range(5, 9)])
    # yearly 2000..2022: OWID / Ember, Electricity Maps' yearly means, then the hourly data
    h = s.GetLocationHistory(cb.GetLocationHistoryRequest(
        zone="AT", start=ts(2000), end=ts(2023), granularity=cb.GRANULARITY_YEARLY))
    years = {p.time.ToDatetime().year: p for p in h.points}
    assert sorted(years) == list(range(2000, 2023))
    assert years[2000].gco2eq_per_kwh == 158 and "Our World in Data" in years[2000].note
    assert years[2021].gco2eq_per_kwh == pytest.approx(219.972, abs=1e-3)
    assert round(years[2022].gco2eq_per_kwh, 2) == 244.52

    # a country code resolves to its grid zones (DK -> mean of DK-DK1, DK-DK2)
    t = ts(2022, 5, 1, 12)
    dk1 = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DK-DK1", time=t))
    dk2 = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DK-DK2", time=t))
    dk = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DK", time=t))
    assert dk.gco2eq_per_kwh == pytest.approx((dk1.gco2eq_per_kwh + dk2.gco2eq_per_kwh) / 2)
    assert "DK-DK1, DK-DK2" in dk.note

    # zones and their coverage
    zones = s.ListZones(cb.ListZonesRequest(prefix="a")).zones
    at = [z for z in zones if z.zone == "AT"]
    hourly = [z for z in at if cb.GRANULARITY_HOURLY in z.granularities][0]
    assert hourly.first.seconds == ts(2022).seconds and hourly.last.seconds == ts(2023).seconds
    assert hourly.provider == "bundled" and hourly.name == "Austria"
    yearly = [z for z in at if list(z.granularities) == [cb.GRANULARITY_YEARLY]][0]
    assert yearly.first.seconds == ts(2000).seconds and yearly.last.seconds == ts(2023).seconds
    allz = {z.zone for z in s.ListZones(cb.ListZonesRequest()).zones}
    assert {"AT", "DE", "DK-DK1", "IT-SAR", "SE-SE4", "NO-NO1", "GB", "CH", "ES",
            "US-CAL-CISO"} <= allz

    # outside the coverage: a clear error
    code, msg = err(s.GetLocationIntensity, cb.GetLocationIntensityRequest(zone="AT",
                                                                          time=ts(2019, 5, 1)))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "2022-01-01T00Z..2022-12-31T23Z" in msg and "estimate_from_nearest_year" in msg
    code, msg = err(s.GetLocationIntensity, cb.GetLocationIntensityRequest(zone="XX", time=t))
    assert code == grpc.StatusCode.NOT_FOUND and "ListZones" in msg
    for bad in (cb.GetLocationIntensityRequest(zone="A T"),
                cb.GetLocationIntensityRequest(zone="x" * 40),
                cb.GetLocationIntensityRequest(zone="AT", time=Timestamp(seconds=-5))):
        assert err(s.GetLocationIntensity, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT
    for bad in (cb.GetLocationHistoryRequest(zone="AT"),
                cb.GetLocationHistoryRequest(zone="AT", start=ts(2022, 2), end=ts(2022, 1)),
                cb.GetLocationHistoryRequest(zone="AT", start=ts(2000), end=ts(2022))):
        assert err(s.GetLocationHistory, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT

    # footprint: 1.5 kWh, or 500 W for 3 h, at AT 2022-01-01T00Z; SCI with M and R
    for energy in ({"energy_wh": 1500},
                   {"power": cb.PowerDuration(power_w=500, duration=hours(3))}):
        fp = s.ComputeFootprint(cb.ComputeFootprintRequest(
            at=cb.ZoneTime(zone="AT", time=ts(2022)), embodied_gco2eq=30, functional_units=10,
            functional_unit="request", **energy))
        assert fp.energy_wh == pytest.approx(1500)
        assert fp.gco2eq == pytest.approx(1.5 * 84.73)
        assert fp.intensity.gco2eq_per_kwh == pytest.approx(84.73)
        assert fp.intensity.provider == "bundled"
        assert fp.has_sci and fp.sci_gco2eq_per_unit == pytest.approx((1.5 * 84.73 + 30) / 10)
        assert fp.functional_unit == "request"
    for bad in (cb.ComputeFootprintRequest(energy_wh=1),
                cb.ComputeFootprintRequest(at=cb.ZoneTime(zone="AT", time=ts(2022))),
                cb.ComputeFootprintRequest(energy_wh=-1, at=cb.ZoneTime(zone="AT")),
                cb.ComputeFootprintRequest(energy_wh=1, at=cb.ZoneTime(zone="AT", time=ts(2022)),
                                           functional_units=0),
                cb.ComputeFootprintRequest(power=cb.PowerDuration(power_w=5), at=cb.ZoneTime())):
        assert err(s.ComputeFootprint, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT

    # best window against a brute-force search over the CSV's hours
    start, end, dur = dt.datetime(2022, 4, 2, 6, 30), dt.datetime(2022, 4, 4), 3
    best = None
    t0 = start
    while t0 + dt.timedelta(hours=dur) <= end:
        # time-weighted mean over [t0, t0 + dur)
        total, t = 0.0, t0
        stop = t0 + dt.timedelta(hours=dur)
        while t < stop:
            hour = t.replace(minute=0)
            nxt = min(hour + dt.timedelta(hours=1), stop)
            total += hrs[hour] * (nxt - t).total_seconds()
            t = nxt
        mean = total / (dur * 3600)
        if best is None or mean < best[1] - 1e-9:
            best = (t0, mean)
        t0 = t0.replace(minute=0) + dt.timedelta(hours=1)
    r = s.GetBestWindow(cb.GetBestWindowRequest(zone="AT", start=ts_of(start), end=ts_of(end),
                                                duration=hours(dur)))
    assert r.start.ToDatetime() == best[0]
    assert r.mean_gco2eq_per_kwh == pytest.approx(best[1])
    assert r.provider == "bundled" and not r.forecast and r.basis == "lifecycle"
    for bad in (cb.GetBestWindowRequest(zone="AT", start=ts(2022), duration=hours(1)),
                cb.GetBestWindowRequest(zone="AT", start=ts(2022), end=ts(2022, 1, 1, 1),
                                        duration=hours(2)),
                cb.GetBestWindowRequest(zone="AT", start=ts(2022), end=ts(2022, 2))):
        assert err(s.GetBestWindow, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT

    # a later start does not load the data again
    assert d.stop() == 0
    first = d.output()
    assert "bundled carbon data loaded" in first
    d.start()
    again = d.output()[len(first):]  # the log of this start only (a restart appends)
    assert "bundled carbon data loaded" not in again
    r = stub(d).GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT", time=ts(2022)))
    assert r.gco2eq_per_kwh == pytest.approx(84.73)


def test_estimate_from_nearest_year(make_daemon, tmp_path):
    bundle = carbon_bundle(tmp_path)
    d = make_daemon(f"carbon: {{bundled_data: {bundle}, estimate_from_nearest_year: true}}\n")
    s = stub(d)
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT", time=ts(2025, 3, 1, 10)))
    assert r.gco2eq_per_kwh == pytest.approx(110) and r.estimated
    assert "2022" in r.note and "estimated" in r.note
    assert r.time.seconds == ts(2025, 3, 1, 10).seconds
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT", time=ts(2024, 2, 29, 7)))
    assert r.gco2eq_per_kwh == pytest.approx(107) and r.estimated  # 29 Feb -> 28 Feb 2022
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT", time=ts(2022, 3, 1, 10)))
    assert not r.estimated and r.note == ""
    # no time: now, estimated from 2022
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="AT"))
    assert r.estimated and 100 <= r.gco2eq_per_kwh <= 123
    r = s.GetBestWindow(cb.GetBestWindowRequest(zone="AT", start=ts(2030, 6, 1),
                                                end=ts(2030, 6, 2), duration=hours(2)))
    assert r.estimated and r.start.seconds == ts(2030, 6, 1).seconds


# ---------------------------------------------------------------- importer

def run_import(*args):
    return subprocess.run([IMPORTER, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_importer(make_daemon, tmp_path):
    d = make_daemon('carbon: {bundled_data: ""}\n')
    s = stub(d)
    es = os.path.join(DATA, "electricitymaps_ES_2023_hourly.csv")
    data_dir = tmp_path / "data"
    assert err(s.GetLocationIntensity, cb.GetLocationIntensityRequest(
        zone="ES", time=ts(2023)))[0] == grpc.StatusCode.NOT_FOUND
    # while cascad runs, into its data dir
    out = run_import("--data-dir", data_dir, es)
    assert out.returncode == 0, out.stderr
    assert "8760 hours added, 0 changed, 0 unchanged" in out.stdout
    assert "zone ES, 8760 hours 2023-01-01T00Z..2023-12-31T23Z" in out.stdout
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="ES", time=ts(2023)))
    assert r.gco2eq_per_kwh == pytest.approx(114.42) and r.provider == "import"
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="ES", time=ts(2023, 7, 1, 5)))
    assert r.gco2eq_per_kwh == pytest.approx(153.09) and r.estimated  # "Data Estimated" true
    with open(es, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    want = sum(float(x[5]) for x in rows[1:]) / (len(rows) - 1)
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(
        zone="ES", time=ts(2023, 5), granularity=cb.GRANULARITY_YEARLY))
    assert r.gco2eq_per_kwh == pytest.approx(want)
    assert "ES" in {z.zone for z in s.ListZones(cb.ListZonesRequest(prefix="E")).zones}
    # again: idempotent
    out = run_import("--data-dir", data_dir, es)
    assert out.returncode == 0 and "0 hours added, 0 changed, 8760 unchanged" in out.stdout

    # the newer header variant, lower case, a malformed row (line 4) and an empty value (line 6)
    header = ("datetime (utc),country,zone name,zone id,carbon intensity gCO\u2082eq/kWh (direct),"
              "carbon intensity gCO\u2082eq/kWh (life cycle),carbon-free energy percentage (cfe%),"
              "renewable energy percentage (re%),data source,data estimated,"
              "data estimation method")
    lines = [header,
             "2024-01-01 00:00:00,Spain,Spain,ES-TEST,10,20,0,0,x,false,",
             "2024-01-01 01:00:00,Spain,Spain,ES-TEST,11,21,0,0,x,false,",
             "2024-01-01 02:00:00,Spain,Spain,ES-TEST,12,twenty-two,0,0,x,false,",
             "2024-01-01 03:00:00,Spain,Spain,ES-TEST,13,23,0,0,x,false,",
             "2024-01-01 04:00:00,Spain,Spain,ES-TEST,14,,0,0,x,false,"]
    newer = tmp_path / "newer.csv"
    newer.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_import("--data-dir", data_dir, "--strict", newer)
    assert out.returncode == 1 and "nothing imported" in out.stderr
    out = run_import("--data-dir", data_dir, newer)
    assert out.returncode == 0, out.stderr
    assert f"{newer}:4: intensity 'twenty-two': not a number" in out.stderr
    assert f"{newer}:6: intensity '': empty value" in out.stderr
    assert "3 hours added" in out.stdout and "2 malformed rows skipped" in out.stdout
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="ES-TEST",
                                                             time=ts(2024, 1, 1, 3)))
    assert r.gco2eq_per_kwh == 23
    out = run_import("--data-dir", data_dir, "--direct", newer)
    assert out.returncode == 0 and "3 changed" in out.stdout
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="ES-TEST",
                                                             time=ts(2024, 1, 1, 3)))
    assert r.gco2eq_per_kwh == 13 and r.basis == "direct"

    # refused files and bad usage
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b,c\n1,2,3\n")
    out = run_import("--data-dir", data_dir, junk)
    assert out.returncode == 1 and "unknown CSV header" in out.stderr
    out = run_import("--data-dir", data_dir, tmp_path / "missing.csv")
    assert out.returncode == 1 and "cannot open" in out.stderr
    assert run_import(es).returncode == 2
    # through the daemon's config file
    out = run_import("--config", d.config_path, es)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- live providers

class Mock:
    """A real HTTP server on loopback serving the providers' JSON shapes. mode: "ok", "401",
    "429", "500", "slow" (longer than the configured timeout), "garbage"."""

    def __init__(self, value):
        self.mode = "ok"
        self.value = value  # hour (datetime) -> intensity
        self.requests = []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                mock.requests.append((self.path, dict(self.headers)))
                if mock.mode in ("401", "429", "500"):
                    return self.reply(int(mock.mode), {"error": "nope"})
                if mock.mode == "slow":
                    time.sleep(1.5)
                if mock.mode == "garbage":
                    return self.reply(200, None, b"{\"data\": [oops")
                self.reply(200, mock.answer(self.path))

            def reply(self, code, obj, raw=None):
                body = raw if raw is not None else json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (the timeout case)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path):
        raise NotImplementedError


def now_hour():
    return dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class ElectricityMaps(Mock):
    def point(self, t, **extra):
        return {"zone": "DE", "carbonIntensity": self.value(t), "datetime": iso(t),
                "updatedAt": iso(now_hour()), "emissionFactorType": "lifecycle",
                "isEstimated": False, "estimationMethod": None, **extra}

    def answer(self, path):
        from urllib.parse import parse_qs, urlparse
        u = urlparse(path)
        q = parse_qs(u.query)
        now = now_hour()
        if u.path.endswith("/latest"):
            return self.point(now)
        if u.path.endswith("/history"):
            return {"zone": q["zone"][0],
                    "history": [self.point(now - dt.timedelta(hours=k)) for k in range(23, -1, -1)]}
        if u.path.endswith("/past-range"):
            a = dt.datetime.strptime(q["start"][0], "%Y-%m-%dT%H:%M:%SZ")
            b = dt.datetime.strptime(q["end"][0], "%Y-%m-%dT%H:%M:%SZ")
            pts, t = [], a
            while t < b:
                pts.append(self.point(t))
                t += dt.timedelta(hours=1)
            return {"zone": q["zone"][0], "data": pts}
        if u.path.endswith("/forecast"):
            return {"zone": q["zone"][0], "updatedAt": iso(now),
                    "forecast": [{"carbonIntensity": self.value(now + dt.timedelta(hours=k)),
                                  "datetime": iso(now + dt.timedelta(hours=k))}
                                 for k in range(1, 25)]}
        return {}


class NationalGrid(Mock):
    def block(self, t):
        end = t + dt.timedelta(minutes=30)
        actual = None if t >= now_hour() else self.value(t)
        return {"from": t.strftime("%Y-%m-%dT%H:%MZ"), "to": end.strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": {"forecast": self.value(t) + 1, "actual": actual, "index": "low"}}

    def answer(self, path):
        if path == "/intensity":
            now = dt.datetime.now(UTC).replace(tzinfo=None)
            t = now.replace(minute=0 if now.minute < 30 else 30, second=0, microsecond=0)
            return {"data": [self.block(t)]}
        m = re.fullmatch(r"/intensity/([^/]+)/([^/]+)", path)
        a = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%MZ")
        b = dt.datetime.strptime(m.group(2), "%Y-%m-%dT%H:%MZ")
        out, t = [], a
        while t < b:
            out.append(self.block(t))
            t += dt.timedelta(minutes=30)
        return {"data": out}


@pytest.fixture
def mocks():
    em = ElectricityMaps(lambda t: 200 + (t.hour * 7 + t.day) % 50)
    uk = NationalGrid(lambda t: 100 + t.hour + (5 if t.minute else 0))
    yield em, uk
    em.close()
    uk.close()


def live_config(em, uk, bundle):
    return f"""\
carbon:
  bundled_data: {bundle}
  estimate_from_nearest_year: true
  providers:
    - {{name: electricitymaps, url: "{em.url}/", token_env: EM_KEY, ttl: 1h, timeout: 500ms,
       zones: [DE, FR]}}
    - {{name: uk, url: "{uk.url}", timeout: 500ms}}
    - bundled
"""


def test_live_providers(make_daemon, mocks, tmp_path):
    em, uk = mocks
    bundle = carbon_bundle(tmp_path, "DE", value=lambda i: 400.0)
    d = make_daemon(live_config(em, uk, bundle), env={"EM_KEY": "secret-em-key"})
    s = stub(d)
    now = now_hour()

    # Electricity Maps: latest, with the key in auth-token; the second ask is a cache hit
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DE"))
    assert r.provider == "electricitymaps" and r.gco2eq_per_kwh == em.value(now)
    assert r.basis == "lifecycle" and not r.estimated
    path, headers = em.requests[-1]
    assert path == "/v3/carbon-intensity/latest?zone=DE"
    assert headers.get("auth-token") == "secret-em-key"
    n = len(em.requests)
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DE"))
    assert r.gco2eq_per_kwh == em.value(now) and len(em.requests) == n

    # history of the last hours: one /history call, then each hour from the cache
    start = now - dt.timedelta(hours=6)
    h = s.GetLocationHistory(cb.GetLocationHistoryRequest(zone="DE", start=ts_of(start),
                                                          end=ts_of(now)))
    assert [p.gco2eq_per_kwh for p in h.points] == \
        [em.value(start + dt.timedelta(hours=k)) for k in range(6)]
    assert em.requests[-1][0].startswith("/v3/carbon-intensity/history?zone=DE")
    n = len(em.requests)
    for k in range(6):
        t = start + dt.timedelta(hours=k)
        r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DE", time=ts_of(t)))
        assert r.gco2eq_per_kwh == em.value(t) and r.provider == "electricitymaps"
    assert len(em.requests) == n, "cached hours must not be fetched again"

    # older hours: past-range; the future: forecast, and the best window over it
    t = now - dt.timedelta(days=3)
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DE", time=ts_of(t)))
    assert r.gco2eq_per_kwh == em.value(t)
    assert "/past-range?zone=DE&start=" in em.requests[-1][0]
    a, b = now + dt.timedelta(hours=1), now + dt.timedelta(hours=13)
    w = s.GetBestWindow(cb.GetBestWindowRequest(zone="DE", start=ts_of(a), end=ts_of(b),
                                                duration=hours(2)))
    means = {a + dt.timedelta(hours=k): (em.value(a + dt.timedelta(hours=k)) +
                                         em.value(a + dt.timedelta(hours=k + 1))) / 2
             for k in range(11)}
    best = min(means, key=lambda k: (means[k], k))
    assert w.start.ToDatetime() == best and w.mean_gco2eq_per_kwh == pytest.approx(means[best])
    assert w.forecast and w.estimated and w.provider == "electricitymaps"
    assert em.requests[-1][0] == "/v3/carbon-intensity/forecast?zone=DE"

    # the provider fails: 401, 429, 500, timeout, garbage. Each asks for an uncached hour; the
    # answer falls back to the bundled 2022 data (estimated) and says why.
    reasons = {"401": "refused the key", "429": "rate limit", "500": "HTTP 500",
               "slow": "no answer within", "garbage": "cannot read"}
    for i, (mode, why) in enumerate(reasons.items()):
        em.mode = mode
        t = now - dt.timedelta(days=5, hours=i)
        r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DE", time=ts_of(t)),
                                   timeout=10)
        assert r.gco2eq_per_kwh == 400 and r.provider == "bundled" and r.estimated, mode
        assert "electricitymaps unavailable" in r.note and why in r.note, (mode, r.note)
        assert em.url not in r.note and "secret" not in r.note
    # cached hours still answer while it is down
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="DE", time=ts_of(start)))
    assert r.gco2eq_per_kwh == em.value(start) and r.provider == "electricitymaps"
    # a zone with nothing to fall back on: UNAVAILABLE, saying why
    em.mode = "500"
    code, msg = err(s.GetLocationIntensity, cb.GetLocationIntensityRequest(zone="FR"))
    assert code == grpc.StatusCode.UNAVAILABLE and "HTTP 500" in msg and em.url not in msg
    em.mode = "ok"

    # UK National Grid: GB only, half hours averaged into hours, direct emissions
    r = s.GetLocationIntensity(cb.GetLocationIntensityRequest(zone="GB"))
    assert r.provider == "uk" and r.basis == "direct"
    assert uk.requests[-1][0] == "/intensity"
    start = now - dt.timedelta(hours=4)
    h = s.GetLocationHistory(cb.GetLocationHistoryRequest(zone="GB", start=ts_of(start),
                                                          end=ts_of(now)))
    assert [p.gco2eq_per_kwh for p in h.points] == \
        [uk.value(start + dt.timedelta(hours=k)) + 2.5 for k in range(4)]
    assert all(p.provider == "uk" and not p.estimated for p in h.points)
    assert re.fullmatch(r"/intensity/\d{4}-\d\d-\d\dT\d\d:\d\dZ/\d{4}-\d\d-\d\dT\d\d:\d\dZ",
                        uk.requests[-1][0])
    uk.mode = "slow"
    code, msg = err(s.GetLocationIntensity, cb.GetLocationIntensityRequest(
        zone="GB", time=ts_of(now - dt.timedelta(days=2))), timeout=10)
    assert code == grpc.StatusCode.UNAVAILABLE and "no answer within 500 ms" in msg
    uk.mode = "ok"
    zones = {(z.zone, z.provider) for z in s.ListZones(cb.ListZonesRequest()).zones}
    assert {("DE", "electricitymaps"), ("FR", "electricitymaps"), ("GB", "uk"),
            ("DE", "bundled")} <= zones


def test_live_provider_needs_its_key(make_daemon, mocks, tmp_path):
    em, uk = mocks
    d = make_daemon(start=False, config=live_config(em, uk, '""'))
    out = subprocess.run(d.args, capture_output=True, text=True, timeout=30, env={})
    assert out.returncode != 0 and "EM_KEY" in out.stdout + out.stderr
