"""The client side of `make demo`: shows a running cascad answering, as an operator and an agent
would see it (what grpcurl would show, with casca's generated Python stubs)."""
import argparse
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stubs", required=True, help="generated Python stubs (BUILD/py)")
    ap.add_argument("--target", required=True)
    ap.add_argument("--config", required=True, help="the config file cascad runs with")
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    grpc.__path__.append(os.path.join(args.stubs, "grpc"))
    from casca.v1 import (admin_pb2, admin_pb2_grpc, carbon_pb2, carbon_pb2_grpc, common_pb2,
                          control_pb2, control_pb2_grpc, slo_pb2, slo_pb2_grpc, telemetry_pb2,
                          telemetry_pb2_grpc)
    from grpc.health.v1 import health_pb2, health_pb2_grpc
    from grpc.reflection.v1 import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=15)

    def timed(call, *a, **kw):
        t0 = time.perf_counter()
        r = call(*a, timeout=5, **kw)
        return r, (time.perf_counter() - t0) * 1e3

    print("== reflection: the services served (what `grpcurl -plaintext %s list` prints)"
          % args.target)
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    for s in next(refl.ServerReflectionInfo(iter([req]))).list_services_response.service:
        print("  ", s.name)

    r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    print("== Health/Check:", health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))

    admin = admin_pb2_grpc.AdminServiceStub(channel)
    st, ms = timed(admin.GetStatus, admin_pb2.GetStatusRequest())
    print("== AdminService/GetStatus (%.2f ms from Python): version %s, config generation %d, "
          "store %d KiB" % (ms, st.version, st.config_generation, st.store_size_bytes // 1024))

    # Telemetry: a player reporting 26-28 fps and a power meter at about 15 W over 5 minutes.
    now = int(time.time())
    points = []
    for i in range(300):
        t = now - 300 + i
        points.append(telemetry_pb2.Point(series="transcoding_fps", tags={"client": "w1"},
                                          value=26 + (i % 3)))
        points[-1].time.seconds = t
        points.append(telemetry_pb2.Point(series="power_w", tags={"plug": "p1"},
                                          value=15 + (i % 2)))
        points[-1].time.seconds = t
    tele = telemetry_pb2_grpc.TelemetryServiceStub(channel)
    r, ms = timed(tele.Publish, telemetry_pb2.PublishRequest(points=points))
    print("== TelemetryService/Publish: %d points accepted (%.2f ms)" % (r.accepted, ms))

    slos = slo_pb2_grpc.SloServiceStub(channel)

    def show_slo(slo_id):
        s, ms = timed(slos.GetSlo, slo_pb2.GetSloRequest(id=slo_id))
        o = s.slo.objective
        bounds = "[%s, %s]" % (o.min if o.HasField("min") else "-inf",
                               o.max if o.HasField("max") else "+inf")
        value = ("%.2f over %d samples" % (s.value, s.sample_count) if s.has_value
                 else "no data in the window")
        print("== SloService/GetSlo %s (%.2f ms): %s, objective %s, fulfilled %s"
              % (slo_id, ms, value, bounds, s.fulfilled))

    time.sleep(1.1)  # the engine re-evaluates each SLO at most once per slo_engine.interval (1 s)
    for slo_id in ("ServiceSLO", "ServiceCarbon"):
        show_slo(slo_id)

    ctl = control_pb2_grpc.ServiceControlStub(channel)
    v, ms = timed(ctl.GetSetting, control_pb2.GetSettingRequest(id="ServiceParam"))
    print("== ServiceControl/GetSetting ServiceParam: %d (%.2f ms)" % (v.value.int_value, ms))
    v, ms = timed(ctl.SetSetting, control_pb2.SetSettingRequest(
        id="ServiceParam", value=common_pb2.Value(int_value=6)))
    print("== ServiceControl/SetSetting ServiceParam=6: read back %d, changed by %s (%.2f ms)"
          % (v.value.int_value, v.changed_by, ms))
    for value, why in ((7, "cooldown"), (12, "out of range")):
        try:
            ctl.SetSetting(control_pb2.SetSettingRequest(
                id="ServiceParam", value=common_pb2.Value(int_value=value)), timeout=5)
        except grpc.RpcError as e:
            print("== SetSetting ServiceParam=%d (%s): %s: %s" % (value, why, e.code().name,
                                                                  e.details()))
    audit = admin.GetAuditLog(admin_pb2.GetAuditLogRequest(), timeout=5)
    print("== AdminService/GetAuditLog: every change and refusal, with who and why:")
    for e in audit.entries:
        print("   #%d %s %s by %s: %s%s" % (
            e.seq, e.setting_id, admin_pb2.AuditOutcome.Name(e.outcome)[len("AUDIT_OUTCOME_"):],
            e.caller, ("%d -> " % e.old_value.int_value) if e.HasField("old_value") else "",
            e.new_value.int_value))

    carbon = carbon_pb2_grpc.CarbonServiceStub(channel)
    req = carbon_pb2.GetLocationIntensityRequest(zone="AT")
    req.time.FromJsonString("2022-01-01T00:00:00Z")
    i, ms = timed(carbon.GetLocationIntensity, req)
    print("== CarbonService/GetLocationIntensity AT 2022-01-01T00Z: %.2f gCO2eq/kWh (%s, %.2f ms)"
          % (i.gco2eq_per_kwh, i.provider, ms))
    i, _ = timed(carbon.GetLocationIntensity, carbon_pb2.GetLocationIntensityRequest(zone="AT"))
    print("== ... AT now: %.2f gCO2eq/kWh, estimated=%s: %s" % (i.gco2eq_per_kwh, i.estimated,
                                                                i.note))
    mix = carbon_pb2.GetMixIntensityRequest(shares=[
        carbon_pb2.MixShare(source="wind_onshore", share=60),
        carbon_pb2.MixShare(source="gas", share=40)])
    i, _ = timed(carbon.GetMixIntensity, mix)
    print("== CarbonService/GetMixIntensity 60%% wind onshore + 40%% gas: %.1f gCO2eq/kWh (%s)"
          % (i.gco2eq_per_kwh, i.factor_set))

    with open(args.config, "a") as f:
        f.write("\n# appended by the demo\nserver_typo: 1\n")
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=5)
    print("== Reload of a file with a typo: ok=%s, still generation %d" % (r.ok, r.generation))
    for e in r.errors:
        print("   error:", e)
    with open(args.config) as f:
        text = f.read().replace("server_typo: 1\n", "")
    with open(args.config, "w") as f:
        f.write(text.replace("objective: {min: 24, max: 30}", "objective: {min: 28, max: 30}"))
    r, ms = timed(admin.Reload, admin_pb2.ReloadRequest())
    print("== Reload after fixing it and raising ServiceSLO's minimum to 28: ok=%s, generation %d "
          "(%.2f ms, no restart)" % (r.ok, r.generation, ms))
    show_slo("ServiceSLO")
    channel.close()


if __name__ == "__main__":
    main()
