"""Shows a running cascad answering: the client side of `make demo` for the foundation."""
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
    from casca.v1 import admin_pb2, admin_pb2_grpc, slo_pb2, slo_pb2_grpc
    from grpc.health.v1 import health_pb2, health_pb2_grpc
    from grpc.reflection.v1 import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=15)

    print("== reflection: the services served (what `grpcurl -plaintext %s list` prints)" % args.target)
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    for s in reply.list_services_response.service:
        print("  ", s.name)

    health = health_pb2_grpc.HealthStub(channel)
    r = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    print("== grpc.health.v1.Health/Check:", health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))

    admin = admin_pb2_grpc.AdminServiceStub(channel)
    t0 = time.perf_counter()
    st = admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    took = (time.perf_counter() - t0) * 1e3
    print("== casca.v1.AdminService/GetStatus (%.2f ms round trip from Python)" % took)
    print("   version %s, up %.1f s, config generation %d, store %d KiB, %d calls so far"
          % (st.version, st.uptime.seconds + st.uptime.nanos / 1e9, st.config_generation,
             st.store_size_bytes // 1024, st.calls_total))

    with open(args.config, "a") as f:
        f.write("\n# appended by the demo\nserver_typo: 1\n")
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=5)
    print("== Reload of a file with a typo: ok=%s, still generation %d" % (r.ok, r.generation))
    for e in r.errors:
        print("   error:", e)
    with open(args.config) as f:
        text = f.read().replace("server_typo: 1\n", "")
    with open(args.config, "w") as f:
        f.write(text.replace("log_level: info", "log_level: warn"))
    t0 = time.perf_counter()
    r = admin.Reload(admin_pb2.ReloadRequest(), timeout=5)
    print("== Reload after fixing it: ok=%s, generation %d (%.2f ms)"
          % (r.ok, r.generation, (time.perf_counter() - t0) * 1e3))

    try:
        slo_pb2_grpc.SloServiceStub(channel).ListSlos(slo_pb2.ListSlosRequest(), timeout=5)
    except grpc.RpcError as e:
        print("== casca.v1.SloService/ListSlos: %s: %s" % (e.code().name, e.details()))
    channel.close()


if __name__ == "__main__":
    main()
