#!/usr/bin/env bash
# The main job, end to end on this machine: start a local Kubernetes control plane, start
# k8s-deployer against it, and show that it serves (gRPC health and reflection, by grpcurl).
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
"$CARGO_TARGET_DIR/debug/k8s-deployer" --listen "$LISTEN" &
service_pid=$!
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

cat <<MSG

The service is up against a real kube-apiserver (kwok plays the nodes). To use the cluster
yourself, in another shell:
  export KUBECONFIG=$KUBECONFIG
  $K8S_DEPLOYER_CLUSTER_BIN/kubectl run web --image=nginx:1.27 && $K8S_DEPLOYER_CLUSTER_BIN/kubectl get pods -w
Deploy and live status over gRPC arrive with the DeployerService RPCs (see README, "Not done yet").
MSG

if [ -t 0 ]; then
  step "Running; press Ctrl-C to stop the service and the cluster"
  wait "$service_pid"
fi
