"""A gRPC client that is not ours: Python's grpcio, with stubs generated from
control/proto/podswitch/v1/control.proto by grpc_tools.protoc. Usage: python_client.py SOCKET STUBS_DIR
Prints one line per check; exits non-zero on the first failure."""
import sys

sys.path.insert(0, sys.argv[2])
import grpc  # noqa: E402
from podswitch.v1 import control_pb2 as pb  # noqa: E402
from podswitch.v1 import control_pb2_grpc as rpc  # noqa: E402

# grpc-core would send the socket path as :authority, which HTTP/2 servers refuse; name
# any host instead (grpcurl: -authority localhost).
channel = grpc.insecure_channel("unix://" + sys.argv[1], options=[("grpc.default_authority", "localhost")])
stub = rpc.ControlStub(channel)
v = stub.Version(pb.VersionRequest())
print("version", v.version, v.node, v.generation)
svc = """apiVersion: v1
kind: Service
metadata: {name: py, namespace: y}
spec: {clusterIP: 10.96.9.9, selector: {pod: a}, ports: [{port: 80}]}
"""
r = stub.Apply(pb.ApplyRequest(manifests=[pb.Manifest(format="yaml", source="py", content=svc)]))
print("applied", r.generation, [c.action for c in r.changes])
l = stub.List(pb.ListRequest(kind="services", namespace="y"))
print("listed", [o.ref.name for o in l.objects])
t = stub.Trace(pb.TraceRequest(protocol="tcp", src="10.244.1.7:1234", dst="10.96.9.9:80"))
print("trace", t.verdict, t.detail)
try:
    stub.Apply(pb.ApplyRequest(manifests=[pb.Manifest(format="yaml", source="bad", content="kind: Service\n")]))
    print("refusal missing")
    sys.exit(1)
except grpc.RpcError as e:
    print("refused", e.code().name)
