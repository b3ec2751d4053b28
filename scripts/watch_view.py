#!/usr/bin/env python3
"""Show what grpcurl prints for DeployerService and DeploymentService calls (one JSON object per
message) one line per message: what a person wants to see while a pod or a rollout comes up, or
does not. Works for WatchStatus and WatchRollout streams and for the unary answers (Deploy,
GetStatus, ListPods, ApplyDeployment, GetDeployment, RollbackDeployment, ListRevisions, ...)."""
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


def rollout_line(deployment):
    r = deployment.get("rollout", {})
    phase = r.get("phase", "").removeprefix("ROLLOUT_PHASE_")
    reason = r.get("reason", "").removeprefix("ROLLOUT_REASON_")
    pod_reason = r.get("podReason", "").removeprefix("REASON_")
    counts = (f"rev {r.get('revision', 0)}  {r.get('updated', 0)}/{r.get('desired', 0)} updated, "
              f"{r.get('ready', 0)} ready, {r.get('available', 0)} available")
    old = r.get("oldAvailable", 0)
    extra = f", {old} old still serving" if old else ""
    why = reason + (f"/{pod_reason}" if pod_reason else "")
    return (f"{deployment.get('name', '?'):<12} {phase:<11} {counts}{extra}  [{why}] "
            f"{r.get('message', '')[:110]}")


def show_rollout(seq, message):
    """A WatchRollout message; False when the message is not one."""
    for kind in ("snapshot", "resync"):
        if kind in message and ("deployment" in message[kind] or message[kind].get("notFound")):
            snap = message[kind]
            if snap.get("notFound"):
                print(f"#{seq:<3} {kind:<9} (no deployment yet)")
            else:
                print(f"#{seq:<3} {kind:<9} {rollout_line(snap['deployment'])}")
                for pod in snap.get("pods", []):
                    print(f"#{seq:<3} {'  pod':<9} {pod_line(pod)}")
            return True
    if "progress" in message:
        print(f"#{seq:<3} {'progress':<9} {rollout_line(message['progress'])}")
    elif "podDeleted" in message:
        print(f"#{seq:<3} {'pod gone':<9} {pod_line(message['podDeleted'])}")
    elif "event" in message and "kind" in message["event"]:
        ev = message["event"]
        who = f"{ev.get('kind', '')}/{ev.get('name', '')}"
        print(f"#{seq:<3} {'event':<9} {ev.get('type', ''):<8} {ev.get('reason', ''):<18} {who[:40]:<40} "
              f"{ev.get('message', '')[:90]}")
    else:
        return False
    return True


def show(message):
    if "sequence" not in message:
        if "deployment" in message or "deployments" in message:
            for deployment in message.get("deployments", [message.get("deployment")]):
                if deployment:
                    print(rollout_line(deployment))
            if "message" in message:
                print(f"  {message['message']}")
            sys.stdout.flush()
            return
        if "revisions" in message:
            for rev in message["revisions"]:
                current = "*" if rev.get("current") else " "
                print(f"{current} revision {rev.get('revision', 0):<3} {rev.get('image', ''):<24} "
                      f"{rev.get('replicaSet', ''):<26} {rev.get('changeCause', '')}")
            sys.stdout.flush()
            return
        # A unary answer: Deploy's or GetStatus's {pod}, or ListPods's {pods}.
        pods = message.get("pods", [message["pod"]] if "pod" in message else [])
        for pod in pods:
            print(pod_line(pod))
        sys.stdout.flush()
        return
    seq = message["sequence"]
    if show_rollout(seq, message):
        sys.stdout.flush()
        return
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
