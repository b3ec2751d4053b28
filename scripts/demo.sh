#!/usr/bin/env bash
# The main job, end to end on this machine: start a local Kubernetes control plane, start
# k8s-deployer against it, deploy an image and show its status live until Ready, then the
# same for an image that cannot be pulled, showing the failure and its reason (by grpcurl).
# Interactive: keeps running until Ctrl-C, then stops the service and the cluster. With no
# terminal on stdin it stops by itself once it has shown everything.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${K8S_DEPLOYER_CACHE:-$HOME/.cache/k8s-deployer}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
LISTEN=${DEPLOYER_LISTEN:-127.0.0.1:50051}
GRPCURL=$(ls -d "$CACHE"/tools/grpcurl-*/grpcurl | tail -n 1)
CLUSTER_DIR=${K8S_DEPLOYER_CLUSTER_DIR:-${TMPDIR:-/tmp}/k8s-deployer-demo-$(id -u)}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

service_pid=""
cleanup() {
  if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
    kill -TERM "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  "$ROOT/tests/cluster/cluster.sh" down --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Building k8s-deployer"
cargo build --quiet --bin k8s-deployer

step "Starting the local Kubernetes control plane"
"$ROOT/tests/cluster/cluster.sh" down --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
"$ROOT/tests/cluster/cluster.sh" up --dir "$CLUSTER_DIR" --owner-pid $$ >"$CLUSTER_DIR.env"
# shellcheck disable=SC1090
source "$CLUSTER_DIR.env"
rm -f "$CLUSTER_DIR.env"
kubectl() { "$K8S_DEPLOYER_CLUSTER_BIN/kubectl" "$@"; }
kubectl get nodes -o wide

step "Starting k8s-deployer on $LISTEN"
SERVICE_LOG=${TMPDIR:-/tmp}/k8s-deployer-demo-$(id -u).log
"$CARGO_TARGET_DIR/debug/k8s-deployer" --listen "$LISTEN" >"$SERVICE_LOG" 2>&1 &
service_pid=$!
echo "(the service logs one line per call to $SERVICE_LOG)"
for _ in $(seq 1 100); do
  if "$GRPCURL" -plaintext "$LISTEN" grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; then
    break
  fi
  kill -0 "$service_pid" 2>/dev/null || { echo "k8s-deployer exited" >&2; exit 1; }
  sleep 0.2
done

step "grpcurl -plaintext $LISTEN grpc.health.v1.Health/Check"
"$GRPCURL" -plaintext "$LISTEN" grpc.health.v1.Health/Check
step "grpcurl -plaintext $LISTEN list   (server reflection)"
"$GRPCURL" -plaintext "$LISTEN" list

step "Deploying nginx:1.27 into namespace demo"
kubectl create namespace demo >/dev/null
rpc() { "$GRPCURL" -plaintext -d "$2" "$LISTEN" "deployer.v1.DeployerService/$1"; }
view() { python3 "$ROOT/scripts/watch_view.py"; }
rpc Deploy '{"image": "nginx:1.27", "namespace": "demo", "name": "web"}' | view

step "Its status, live (WatchStatus until READY)"
rpc WatchStatus '{"namespace": "demo", "name": "web", "until": "UNTIL_READY"}' | view

step "Deploying an image that cannot be pulled: fail.invalid/app:1"
rpc Deploy '{"image": "fail.invalid/app:1", "namespace": "demo", "name": "broken"}' | view
step "Its status, live (WatchStatus until TERMINAL): the failure and its reason"
rpc WatchStatus '{"namespace": "demo", "name": "broken", "until": "UNTIL_TERMINAL"}' | view

step "ListPods"
rpc ListPods '{"namespace": "demo"}' | view

cat <<MSG

The service is up against a real kube-apiserver (kwok plays the nodes). Try it yourself, in
another shell (the README's API section has more):
  $GRPCURL -plaintext -d '{"image": "crash.invalid/app:1", "namespace": "demo"}' $LISTEN deployer.v1.DeployerService/Deploy
  $GRPCURL -plaintext -d '{"namespace": "demo", "label_selector": "app.kubernetes.io/managed-by=k8s-deployer"}' $LISTEN deployer.v1.DeployerService/WatchStatus
  KUBECONFIG=$KUBECONFIG $K8S_DEPLOYER_CLUSTER_BIN/kubectl get pods -n demo -w
MSG

if [ -t 0 ]; then
  step "Running; press Ctrl-C to stop the service and the cluster"
  wait "$service_pid"
fi
