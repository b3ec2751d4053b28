"""Deploy an image with k8s-deployer, then follow the pod's status until it is READY.

Prints one line per message of the WatchStatus stream. Exits 0 once the pod is READY, 1 with
the reason when it fails or the stream ends otherwise, 2 on a bad invocation. The bearer
token comes from $DEPLOYER_TOKEN, so that it stays out of the process list.
"""

import argparse
import os
import sys

import grpc

# The code generated from proto/deployer/v1/deployer.proto by run.sh.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from deployer.v1 import deployer_pb2 as pb  # noqa: E402
from deployer.v1 import deployer_pb2_grpc as pb_grpc  # noqa: E402


def short(enum, value, prefix):
    """HEALTH_READY -> READY; "-" for the UNSPECIFIED value."""
    return "-" if value == 0 else enum.Name(value).removeprefix(prefix)


def show(seq, kind, pod):
    health = short(pb.Health, pod.health, "HEALTH_")
    reason = short(pb.Reason, pod.reason, "REASON_")
    line = f"#{seq:<3} {kind:<8} {pod.phase or '-':<9} {health:<11} {reason:<18} {pod.message}"
    print(line.rstrip(), flush=True)


def watch(stub, metadata, args, pod_name):
    request = pb.WatchStatusRequest(namespace=args.namespace, name=pod_name, until=pb.UNTIL_READY)
    for msg in stub.WatchStatus(request, metadata=metadata, timeout=args.timeout):
        kind = msg.WhichOneof("kind")
        pods = {"snapshot": msg.snapshot.pods, "resync": msg.resync.pods,
                "pod": [msg.pod], "deleted": [msg.deleted]}.get(kind, [])
        for pod in pods:
            show(msg.sequence, kind, pod)
            if pod.health == pb.HEALTH_FAILED:
                return f"{short(pb.Reason, pod.reason, 'REASON_')}: {pod.message}"
        if kind == "snapshot" and msg.snapshot.not_found:
            print(f"#{msg.sequence:<3} snapshot (not found yet)", flush=True)
        elif kind == "event":
            e = msg.event
            print(f"#{msg.sequence:<3} event    {e.type} {e.reason}: {e.message}", flush=True)
        elif kind == "heartbeat":
            print(f"#{msg.sequence:<3} heartbeat", flush=True)
        elif kind == "end":
            why = f"{short(pb.EndReason, msg.end.reason, 'END_REASON_')}: {msg.end.message}"
            print(f"#{msg.sequence:<3} end      {why}", flush=True)
            if msg.end.reason == pb.END_REASON_UNTIL_MET:
                return None  # UNTIL_READY is met: the pod is READY
            return f"the stream ended: {why}"
    return "the stream ended without an end message"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:50051", help="server address (host:port)")
    p.add_argument("--namespace", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--name", default="", help="pod name (derived from the image when empty)")
    p.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    p.add_argument("--ca-file", help="use TLS, trusting this CA (PEM) instead")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for READY")
    args = p.parse_args()
    token = os.environ.get("DEPLOYER_TOKEN")
    if not token:
        p.error("set DEPLOYER_TOKEN to a bearer token the server accepts")

    if args.tls or args.ca_file:
        roots = open(args.ca_file, "rb").read() if args.ca_file else None
        channel = grpc.secure_channel(args.addr, grpc.ssl_channel_credentials(roots))
    else:
        channel = grpc.insecure_channel(args.addr)
    stub = pb_grpc.DeployerServiceStub(channel)
    metadata = [("authorization", f"Bearer {token}")]  # sent with every call
    try:
        request = pb.DeployRequest(image=args.image, namespace=args.namespace, name=args.name)
        pod = stub.Deploy(request, metadata=metadata, timeout=60).pod
        print(f"deployed {pod.namespace}/{pod.name} ({pod.image})", flush=True)
        failure = watch(stub, metadata, args, pod.name)
    except grpc.RpcError as err:
        failure = f"{err.code().name}: {err.details()}"
    if failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"READY: {args.namespace}/{pod.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
