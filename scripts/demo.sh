#!/usr/bin/env bash
# The main job, end to end on this machine: start a local Kubernetes control plane, start
# k8s-deployer against it, deploy an image and show its status live until Ready, then the
# same for an image that cannot be pulled, showing the failure and its reason (by grpcurl); then
# a Deployment: rolled out, updated live, updated to an image that cannot be pulled (the rollout
# fails fast with its reason while the old pods keep serving), and rolled back.
# The caller is a Kubernetes ServiceAccount: its token (TokenRequest) is verified against
# the API server's own JWKS, and a policy file allows it the namespace "demo" only. The
# transport is plain text (--plaintext), as befits a demo on loopback; deployments use TLS.
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

step "A caller: ServiceAccount demo/demo-client, and a policy that allows it namespace demo"
kubectl create namespace demo >/dev/null
kubectl create serviceaccount demo-client -n demo >/dev/null
# The service fetches the API server's JWKS with a token of its own (ServiceAccounts may read
# it, by the default RBAC binding system:service-account-issuer-discovery).
kubectl create namespace k8s-deployer >/dev/null
kubectl create serviceaccount k8s-deployer -n k8s-deployer >/dev/null
kubectl create token k8s-deployer -n k8s-deployer --duration 24h >"$CLUSTER_DIR/jwks-token"
TOKEN=$(kubectl create token demo-client -n demo --audience k8s-deployer --duration 1h)
cat >"$CLUSTER_DIR/policy.yaml" <<'POLICY'
rules:
  - name: demo-client-in-demo
    subjects: ["system:serviceaccount:demo:demo-client"]
    namespaces: [demo]
    actions: ["*"]
images:
  allow: ["docker.io/library/*", "*.invalid/**"]
  deniedTags: [latest]
POLICY
sed 's/^/    /' "$CLUSTER_DIR/policy.yaml"

step "Starting k8s-deployer on $LISTEN"
SERVICE_LOG=${TMPDIR:-/tmp}/k8s-deployer-demo-$(id -u).log
AUDIT_LOG=${TMPDIR:-/tmp}/k8s-deployer-demo-$(id -u).audit.jsonl
: >"$AUDIT_LOG"
"$CARGO_TARGET_DIR/debug/k8s-deployer" --listen "$LISTEN" --plaintext \
  --policy "$CLUSTER_DIR/policy.yaml" \
  --jwks-url "$K8S_DEPLOYER_APISERVER/openid/v1/jwks" --jwks-ca-file "$CLUSTER_DIR/pki/ca.crt" \
  --jwks-token-file "$CLUSTER_DIR/jwks-token" \
  --jwt-issuer https://kubernetes.default.svc.cluster.local --jwt-audience k8s-deployer \
  --audit-log "$AUDIT_LOG" >"$SERVICE_LOG" 2>&1 &
service_pid=$!
echo "(the service logs one line per call to $SERVICE_LOG, and audit records to $AUDIT_LOG)"
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

step "Deploying nginx:1.27 into namespace demo, as system:serviceaccount:demo:demo-client"
rpc() { "$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$2" "$LISTEN" "deployer.v1.DeployerService/$1"; }
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

drpc() { "$GRPCURL" -plaintext -H "authorization: Bearer $TOKEN" -d "$2" "$LISTEN" "deployer.v1.DeploymentService/$1"; }
# The generation an ApplyDeployment answered with, printed through, so that WatchRollout judges
# this rollout and never the previous one.
generation() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["deployment"]["rollout"]["generation"])'; }
shop() { # image, change cause
  printf '{"namespace": "demo", "name": "shop", "image": "%s", "replicas": 3, "expose": true,
    "ports": [{"name": "http", "containerPort": 80}], "changeCause": "%s"}' "$1" "$2"
}

step "A Deployment: shop, 3 replicas of nginx:1.27 behind a ClusterIP Service (ApplyDeployment, wait_for ROLLED_OUT)"
drpc ApplyDeployment "$(shop nginx:1.27 'first release' | sed 's/}$/, "waitFor": "ROLLOUT_WAIT_FOR_ROLLED_OUT"}/')" | view
kubectl get deployment,replicaset,service -n demo -l app.kubernetes.io/instance=shop

step "Update the image to nginx:1.28: the rolling update, live (WatchRollout until ROLLED_OUT)"
gen=$(drpc ApplyDeployment "$(shop nginx:1.28 'upgrade to 1.28')" | generation)
drpc WatchRollout "{\"namespace\": \"demo\", \"name\": \"shop\", \"until\": \"ROLLOUT_UNTIL_ROLLED_OUT\", \"generation\": \"$gen\"}" | view

step "Update to an image that cannot be pulled: the rollout fails fast, the old pods keep serving"
gen=$(drpc ApplyDeployment "$(shop fail.invalid/shop:2 'a broken build')" | generation)
drpc WatchRollout "{\"namespace\": \"demo\", \"name\": \"shop\", \"until\": \"ROLLOUT_UNTIL_TERMINAL\", \"generation\": \"$gen\"}" | view

step "Roll back to the previous revision (RollbackDeployment), and watch it roll out"
drpc RollbackDeployment '{"namespace": "demo", "name": "shop"}' | view
drpc WatchRollout '{"namespace": "demo", "name": "shop", "until": "ROLLOUT_UNTIL_ROLLED_OUT"}' | view
step "ListRevisions"
drpc ListRevisions '{"namespace": "demo", "name": "shop"}' | view

step "Refusals: no token; a namespace the policy does not allow; a denied tag"
"$GRPCURL" -plaintext -d '{"namespace": "demo"}' "$LISTEN" deployer.v1.DeployerService/ListPods 2>&1 | sed 's/^/    /' || true
kubectl create namespace elsewhere >/dev/null
rpc Deploy '{"image": "nginx:1.27", "namespace": "elsewhere"}' 2>&1 | sed 's/^/    /' || true
rpc Deploy '{"image": "nginx:latest", "namespace": "demo"}' 2>&1 | sed 's/^/    /' || true

step "The audit trail ($AUDIT_LOG), one JSON record per call"
python3 -c 'import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    who = (r["subject"] or "-").replace("system:serviceaccount:", "sa:")
    call = "%s %s/%s" % (r["method"].split("/")[-1], r["namespace"] or "-", r.get("pod") or r.get("deployment") or "-")
    print("    %-19s %-20s %-24s %-18s %s" % (r["code"], who, call, r["image"] or "-", r["reason"][:48]))' "$AUDIT_LOG"

cat <<MSG

The service is up against a real kube-apiserver (kwok plays the nodes). Try it yourself, in
another shell (the README's API section has more):
  export TOKEN=\$(KUBECONFIG=$KUBECONFIG $K8S_DEPLOYER_CLUSTER_BIN/kubectl create token demo-client -n demo --audience k8s-deployer)
  $GRPCURL -plaintext -H "authorization: Bearer \$TOKEN" -d '{"image": "crash.invalid/app:1", "namespace": "demo"}' $LISTEN deployer.v1.DeployerService/Deploy
  $GRPCURL -plaintext -H "authorization: Bearer \$TOKEN" -d '{"namespace": "demo", "label_selector": "app.kubernetes.io/managed-by=k8s-deployer"}' $LISTEN deployer.v1.DeployerService/WatchStatus
  KUBECONFIG=$KUBECONFIG $K8S_DEPLOYER_CLUSTER_BIN/kubectl get pods -n demo -w
MSG

if [ -t 0 ]; then
  step "Running; press Ctrl-C to stop the service and the cluster"
  wait "$service_pid"
fi
