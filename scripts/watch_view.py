#!/usr/bin/env python3
"""Show what grpcurl prints for DeployerService calls (one JSON object per message) one line
per message: what a person wants to see while a pod comes up, or does not. Works for a
WatchStatus stream and for the unary answers (Deploy, GetStatus, ListPods)."""
import json
import sys


def pod_line(pod):
    health = pod.get("health", "HEALTH_UNSPECIFIED").removeprefix("HEALTH_")
    reason = pod.get("reason", "").removeprefix("REASON_")
    containers = pod.get("containers", [])
    state = ""
    if containers:
        st = containers[0].get("state", {})
        kind = next(iter(st), "")
        detail = st.get(kind, {}).get("reason", "") if kind else ""
        state = f"{kind}{'(' + detail + ')' if detail else ''}"
    message = pod.get("message", "")
    return (f"{pod.get('name', '?'):<24} {pod.get('phase', '') or '-':<8} {health:<11} "
            f"{reason or '-':<18} {state:<28} {message[:80]}")


def show(message):
    if "sequence" not in message:
        # A unary answer: Deploy's or GetStatus's {pod}, or ListPods's {pods}.
        pods = message.get("pods", [message["pod"]] if "pod" in message else [])
        for pod in pods:
            print(pod_line(pod))
        sys.stdout.flush()
        return
    seq = message["sequence"]
    if "snapshot" in message or "resync" in message:
        kind = "snapshot" if "snapshot" in message else "resync"
        snap = message[kind]
        pods = snap.get("pods", [])
        if not pods:
            print(f"#{seq:<3} {kind:<9} (no pod yet)" if snap.get("notFound") else f"#{seq:<3} {kind:<9} (empty)")
        for pod in pods:
            print(f"#{seq:<3} {kind:<9} {pod_line(pod)}")
    elif "pod" in message:
        print(f"#{seq:<3} {'pod':<9} {pod_line(message['pod'])}")
    elif "deleted" in message:
        print(f"#{seq:<3} {'deleted':<9} {pod_line(message['deleted'])}")
    elif "event" in message:
        ev = message["event"]
        print(f"#{seq:<3} {'event':<9} {ev.get('type', ''):<8} {ev.get('reason', ''):<12} {ev.get('message', '')}")
    elif "heartbeat" in message:
        print(f"#{seq:<3} heartbeat")
    elif "end" in message:
        end = message["end"]
        print(f"#{seq:<3} {'end':<9} {end.get('reason', '').removeprefix('END_REASON_')}: {end.get('message', '')}")
    sys.stdout.flush()


def main():
    decoder = json.JSONDecoder()
    buffer = ""
    for chunk in iter(lambda: sys.stdin.readline(), ""):
        buffer += chunk
        while True:
            stripped = buffer.lstrip()
            if not stripped:
                buffer = ""
                break
            try:
                message, end = decoder.raw_decode(stripped)
            except json.JSONDecodeError:
                buffer = stripped
                break
            show(message)
            buffer = stripped[end:]


if __name__ == "__main__":
    main()
