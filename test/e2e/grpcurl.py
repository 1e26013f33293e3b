"""A stand-in for grpcurl (not packaged in Debian 12) for the tests that run the README's commands:
the same command line (-plaintext, -H, -d, -max-time; list, describe, SERVICE/METHOD), the same
way of working (every descriptor comes from server reflection, JSON in and out) and grpcurl's exit
codes: 0 ok, 1 bad usage or no connection, 64 + the gRPC status code on an error status.

    grpcurl.py -plaintext [-H 'name: value']... [-d JSON] HOST:PORT list|describe X|pkg.Svc/Method

Needs Debian's python3-grpcio and the reflection stubs generated in $CASCA_PY_STUBS."""
import os
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

STUBS = os.environ.get("CASCA_PY_STUBS", "build/py")
grpc.__path__.append(os.path.join(STUBS, "grpc"))
from grpc.reflection.v1 import reflection_pb2, reflection_pb2_grpc  # noqa: E402


def fail(msg, code=1):
    print(msg, file=sys.stderr)
    sys.exit(code)


class Reflection:
    def __init__(self, channel, metadata):
        self.stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.metadata = metadata
        self.pool = descriptor_pool.DescriptorPool()
        self.added = set()

    def ask(self, **req):
        replies = list(self.stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**req)]), metadata=self.metadata,
            timeout=10))
        r = replies[0]
        if r.HasField("error_response"):
            fail("Failed to resolve symbol %r: %s" % (next(iter(req.values())),
                                                       r.error_response.error_message))
        return r

    def services(self):
        return sorted(s.name for s in self.ask(list_services="").list_services_response.service)

    def load(self, symbol):
        """Adds the file defining symbol (and its imports, as the server sends them) to the pool."""
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in
                 self.ask(file_containing_symbol=symbol).file_descriptor_response
                 .file_descriptor_proto]
        pending = [f for f in files if f.name not in self.added]
        while pending:  # dependencies first, whatever order they came in
            ready = [f for f in pending if all(d in self.added for d in f.dependency)]
            if not ready:
                fail("reflection sent files whose imports are missing: %s"
                     % [f.name for f in pending])
            for f in ready:
                self.pool.Add(f)
                self.added.add(f.name)
                pending.remove(f)


def describe(refl, symbol):
    refl.load(symbol)
    try:
        svc = refl.pool.FindServiceByName(symbol)
        print("%s is a service:" % symbol)
        for m in svc.methods:
            print("  rpc %s ( %s%s ) returns ( %s%s );" % (
                m.name, "stream " if m.client_streaming else "", m.input_type.full_name,
                "stream " if m.server_streaming else "", m.output_type.full_name))
        return
    except KeyError:
        pass
    msg = refl.pool.FindMessageTypeByName(symbol)
    print("%s is a message:" % symbol)
    for f in msg.fields:
        print("  %s = %d;" % (f.name, f.number))


def invoke(channel, refl, method, data, metadata, timeout):
    svc_name, _, name = method.replace("/", ".").rpartition(".")
    refl.load(svc_name)
    m = refl.pool.FindServiceByName(svc_name).FindMethodByName(name)
    factory = message_factory.MessageFactory(refl.pool)
    req_cls, resp_cls = factory.GetPrototype(m.input_type), factory.GetPrototype(m.output_type)
    req = req_cls()
    try:
        json_format.Parse(data or "{}", req)
    except json_format.ParseError as e:
        fail("Error invoking method %r: error getting request data: %s" % (method, e))
    path = "/%s/%s" % (svc_name, name)
    kw = dict(request_serializer=req_cls.SerializeToString,
              response_deserializer=resp_cls.FromString)
    if m.client_streaming:
        fail("client-streaming methods are not supported by this stand-in")
    call = (channel.unary_stream if m.server_streaming else channel.unary_unary)(path, **kw)
    try:
        replies = call(req, metadata=metadata, timeout=timeout)
        for r in (replies if m.server_streaming else [replies]):
            print(json_format.MessageToJson(r, preserving_proto_field_name=False, indent=2))
    except grpc.RpcError as e:
        code = e.code()
        print("ERROR:\n  Code: %s\n  Message: %s" % (
            "".join(w.capitalize() for w in code.name.split("_")), e.details()), file=sys.stderr)
        sys.exit(64 + code.value[0])


def main(argv):
    headers, data, plaintext, timeout, rest = [], None, False, 10.0, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-plaintext":
            plaintext = True
        elif a in ("-H", "-rpc-header", "-reflect-header"):
            i += 1
            headers.append(argv[i])
        elif a == "-d":
            i += 1
            data = argv[i]
        elif a == "-max-time":
            i += 1
            timeout = float(argv[i])
        elif a.startswith("-"):
            fail("unknown flag %s" % a)
        else:
            rest.append(a)
        i += 1
    if not plaintext or not rest:
        fail("usage: grpcurl.py -plaintext [-H 'k: v'] [-d JSON] HOST:PORT list|describe X|Method")
    metadata = []
    for h in headers:
        k, sep, v = h.partition(":")
        if not sep:
            fail("bad header %r: expected 'name: value'" % h)
        metadata.append((k.strip().lower(), v.strip()))
    with grpc.insecure_channel(rest[0]) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            fail("Failed to dial target host %r: context deadline exceeded" % rest[0])
        refl = Reflection(channel, metadata)
        try:
            verb = rest[1] if len(rest) > 1 else "list"
            if verb == "list":
                if len(rest) > 2:
                    refl.load(rest[2])
                    print("\n".join("%s.%s" % (rest[2], m.name) for m in
                                    refl.pool.FindServiceByName(rest[2]).methods))
                else:
                    print("\n".join(refl.services()))
            elif verb == "describe":
                describe(refl, rest[2])
            else:
                invoke(channel, refl, verb, data, metadata, timeout)
        except grpc.RpcError as e:  # reflection itself refused (e.g. a token it wants)
            fail("Failed to list services: rpc error: code = %s desc = %s"
                 % (e.code().name, e.details()))


if __name__ == "__main__":
    main(sys.argv[1:])
