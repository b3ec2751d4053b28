#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for the tests and the demo.
#
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler are built from their Go
# modules (go.mod beside this file), kwok from its own (kwok/go.mod); kwok plays the kubelet
# of two fake nodes, driven by the stage files in stages/. No container runtime is needed.
#
#   cluster.sh build                 build the binaries, or reuse the cached ones; prints the bin dir
#   cluster.sh up   [--dir D] [--owner-pid P]
#                                    start a cluster in D and wait until it is ready; prints
#                                    `export KUBECONFIG=...` lines. With --owner-pid, the cluster
#                                    is torn down when that process exits.
#   cluster.sh down [--dir D]        stop every process of the cluster in D and remove D
#   cluster.sh env  [--dir D]        print the export lines of a running cluster
#   cluster.sh status [--dir D]      say which components are running
#   cluster.sh restart COMPONENT [--dir D] [--down-seconds N]
#                                    stop one component (kube-apiserver, etcd, ...) and start it
#                                    again as it was, after N seconds down
#   cluster.sh etcd-delete KEY [--dir D]
#                                    delete one key in etcd behind the apiserver's back (e.g.
#                                    /registry/pods/NS/NAME while the apiserver is down)
#   cluster.sh etcd-compact [--dir D]
#                                    compact etcd's history up to its current revision, so that
#                                    no watch can resume from before it (the apiserver says 410)
#
# D defaults to $K8S_DEPLOYER_CLUSTER_DIR, else ${TMPDIR:-/tmp}/k8s-deployer-cluster-$UID.
# Every cluster has its own folder and its own free loopback ports, so several can run side
# by side. The apiserver writes an audit log, one JSON event per line, to D/logs/audit.log
# (level Metadata for every request: who, which verb on which resource, the response code),
# so that a test can read what a given user actually did. The binaries are cached in
# $K8S_DEPLOYER_CACHE (default ~/.cache/k8s-deployer), in a folder named after the pinned
# versions and a hash of the go.mod/go.sum files.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${K8S_DEPLOYER_CACHE:-$HOME/.cache/k8s-deployer}
NODE_COUNT=2
# Each fake node's capacity; a pod asking for more than this stays Pending (Unschedulable).
NODE_CPU=4
NODE_MEMORY=8Gi
NODE_PODS=110

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# --- versions and the binary cache -------------------------------------------------------

# The version a go.mod requires of a module, without the leading v.
required_version() { # FILE MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { sub(/^v/, "", $2); print $2; exit }' "$1"
}

KUBE_VERSION=$(required_version "$HERE/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(required_version "$HERE/go.mod" go.etcd.io/etcd/server/v3)
KWOK_VERSION=$(required_version "$HERE/kwok/go.mod" sigs.k8s.io/kwok)
[ -n "$KUBE_VERSION" ] && [ -n "$ETCD_VERSION" ] && [ -n "$KWOK_VERSION" ] ||
  die "cannot read the pinned versions from $HERE/go.mod and $HERE/kwok/go.mod"

# The cache key changes whenever a pinned version, a go.sum or the Go toolchain changes.
cache_key() {
  local sum
  sum=$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/kwok/go.mod" "$HERE/kwok/go.sum" |
    sha256sum | cut -c1-12)
  printf 'kube-%s_etcd-%s_kwok-%s_%s_%s' "$KUBE_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" \
    "$(go env GOVERSION)" "$sum"
}

BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

have_binaries() { # DIR
  local b
  for b in "${BINARIES[@]}"; do [ -x "$1/$b" ] || return 1; done
}

cmd_build() {
  command -v go >/dev/null || die "go is not installed (Go ${KUBE_GO:-1.26} or newer is needed)"
  local key bin
  key=$(cache_key)
  bin="$CACHE_ROOT/cluster/$key/bin"
  if have_binaries "$bin"; then
    printf '%s\n' "$bin"
    return
  fi
  mkdir -p "$CACHE_ROOT/cluster"
  # One build at a time per cache: parallel test binaries wait here for the first one.
  exec 9>"$CACHE_ROOT/cluster/.build.lock"
  flock 9
  if have_binaries "$bin"; then
    printf '%s\n' "$bin"
    return
  fi
  local tmp start minor
  tmp=$(mktemp -d "$CACHE_ROOT/cluster/.build.XXXXXX")
  start=$(date +%s)
  minor=$(cut -d. -f2 <<<"$KUBE_VERSION")
  local vpkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local kube_ldflags="-s -w"
  local p
  for p in $vpkg $cpkg; do
    kube_ldflags+=" -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    kube_ldflags+=" -X $p.gitTreeState=clean"
  done
  log "building Kubernetes v$KUBE_VERSION, etcd v$ETCD_VERSION and kwok v$KWOK_VERSION (cold: about 20 minutes on 2 cores)"
  (
    cd "$HERE"
    go build -trimpath -pgo=off -ldflags "$kube_ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
    go build -trimpath -pgo=off -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
    cd "$HERE/kwok"
    go build -trimpath -pgo=off -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok
  ) >&2 || { rm -rf "$tmp"; die "the build failed"; }
  have_binaries "$tmp" || { rm -rf "$tmp"; die "the build did not produce every binary"; }
  mkdir -p "$(dirname "$bin")"
  rm -rf "$bin"
  mv "$tmp" "$bin"
  log "built in $(($(date +%s) - start))s into $bin"
  printf '%s\n' "$bin"
}

# --- options ---------------------------------------------------------------------------

DIR=${K8S_DEPLOYER_CLUSTER_DIR:-${TMPDIR:-/tmp}/k8s-deployer-cluster-$(id -u)}
OWNER_PID=""
parse_opts() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --dir=*) DIR=${1#--dir=}; shift ;;
      --owner-pid) OWNER_PID=$2; shift 2 ;;
      --owner-pid=*) OWNER_PID=${1#--owner-pid=}; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
}

# --- processes -------------------------------------------------------------------------

# Start a component in the background, in a session of its own, logging to logs/NAME.log.
start() { # NAME COMMAND...
  local name=$1
  shift
  # The command line is kept so that `restart` can start the component again as it was.
  printf '%s\0' "$@" >"$DIR/cmd/$name"
  setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name"
}

# Stop one process group: SIGTERM, then SIGKILL after 15 s.
stop_group() { # PID
  local pid=$1 deadline=$((SECONDS + 15))
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# Whether a component answers its health endpoint.
healthy() { # NAME
  case "$1" in
    etcd) curl -fsS --max-time 2 "http://127.0.0.1:$PORT_ETCD/health" ;;
    kube-apiserver) https_ok "https://127.0.0.1:$PORT_API/readyz" ;;
    kube-controller-manager) local_ok "https://127.0.0.1:$PORT_CM/healthz" ;;
    kube-scheduler) local_ok "https://127.0.0.1:$PORT_SCHED/healthz" ;;
    kwok) curl -fsS --max-time 2 "http://127.0.0.1:$PORT_KWOK/healthz" ;;
    *) return 1 ;;
  esac
}

running() { # NAME
  local pid
  pid=$(cat "$DIR/pids/$1" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

# A component failed: show its log, tear everything down, exit non-zero.
failed() { # NAME WHY
  printf '[cluster] %s %s; the last lines of its log (%s):\n' "$1" "$2" "$DIR/logs/$1.log" >&2
  tail -n 40 "$DIR/logs/$1.log" >&2 || true
  stop_all
  rm -rf "$DIR"
  exit 1
}

# Wait until CHECK succeeds, failing with NAME's log when NAME dies or time runs out.
wait_for() { # NAME SECONDS CHECK...
  local name=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    running "$name" || failed "$name" "exited during start-up"
    [ $SECONDS -lt $deadline ] || failed "$name" "was not ready after ${limit}s"
    sleep 0.2
  done
}

stop_all() {
  local f pid pids=()
  for f in "$DIR"/pids/*; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    # The watchdog runs `down` itself (as the same pid, through exec): do not kill ourselves.
    [ "$pid" = "$$" ] && continue
    # Each component leads its own session: signal the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for pid in "${pids[@]}"; do stop_group "$pid"; done
  rm -f "$DIR"/pids/*
}

# --- certificates and kubeconfigs --------------------------------------------------------

# A client or serving certificate signed by the cluster CA (ECDSA P-256, fast to make).
issue_cert() { # NAME SUBJECT [SAN]
  local name=$1 subject=$2 san=${3:-} ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 30 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext" "$PKI/$name.csr"
}

make_pki() {
  PKI="$DIR/pki"
  mkdir -p "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=k8s-deployer-test-ca" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  issue_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert admin "/O=system:masters/CN=kubernetes-admin"
  issue_cert controller-manager "/CN=system:kube-controller-manager"
  issue_cert scheduler "/CN=system:kube-scheduler"
  # kwok plays the kubelet of every fake node and writes their leases, statuses and events.
  issue_cert kwok "/O=system:masters/CN=kwok"
  # The key pair that signs and verifies ServiceAccount tokens.
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 600 "$PKI"/*.key
}

write_kubeconfig() { # FILE USER
  local file=$1 user=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: k8s-deployer-test
  cluster:
    server: https://127.0.0.1:$PORT_API
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: k8s-deployer-test
  context:
    cluster: k8s-deployer-test
    user: $user
current-context: k8s-deployer-test
EOF
  chmod 600 "$file"
}

# --- free ports ----------------------------------------------------------------------------

# N distinct free loopback ports: all are bound at once by the kernel, then released.
free_ports() { # N
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# --- up ----------------------------------------------------------------------------------

https_ok() { # URL
  curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$1"
}

# Loopback TLS health endpoints of the controller-manager, scheduler and kwok serve a
# self-signed certificate: only that they answer ok matters here.
local_ok() { # URL
  curl -fsSk --max-time 2 "$1"
}

write_ports() {
  cat >"$DIR/ports" <<EOF
etcd=$PORT_ETCD
etcd-peer=$PORT_PEER
kube-apiserver=$PORT_API
kube-controller-manager=$PORT_CM
kube-scheduler=$PORT_SCHED
kwok=$PORT_KWOK
EOF
}

load_ports() {
  [ -f "$DIR/ports" ] || die "no cluster in $DIR"
  local name port
  while IFS== read -r name port; do
    case "$name" in
      etcd) PORT_ETCD=$port ;;
      etcd-peer) PORT_PEER=$port ;;
      kube-apiserver) PORT_API=$port ;;
      kube-controller-manager) PORT_CM=$port ;;
      kube-scheduler) PORT_SCHED=$port ;;
      kwok) PORT_KWOK=$port ;;
    esac
  done <"$DIR/ports"
  PKI="$DIR/pki"
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" "$@"; }

write_env() {
  cat >"$DIR/env" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export K8S_DEPLOYER_CLUSTER_DIR=$DIR
export K8S_DEPLOYER_CLUSTER_BIN=$BIN
export K8S_DEPLOYER_APISERVER=https://127.0.0.1:$PORT_API
EOF
}

cmd_up() {
  parse_opts "$@"
  for tool in curl openssl python3 setsid flock; do
    command -v "$tool" >/dev/null || die "$tool is not installed (make setup installs it)"
  done
  BIN=$(cmd_build)
  if [ -f "$DIR/env" ] && [ -n "$(ls -A "$DIR/pids" 2>/dev/null)" ]; then
    die "a cluster is already running in $DIR (cluster.sh down --dir $DIR first)"
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"/{logs,pids,cmd,etcd}
  chmod 700 "$DIR"
  local began=$SECONDS

  read -r PORT_ETCD PORT_PEER PORT_API PORT_CM PORT_SCHED PORT_KWOK < <(free_ports 6)
  write_ports
  make_pki
  write_kubeconfig "$DIR/kubeconfig" admin
  write_kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$DIR/scheduler.kubeconfig" scheduler
  write_kubeconfig "$DIR/kwok.kubeconfig" kwok

  start etcd "$BIN/etcd" --name default --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$PORT_ETCD" \
    --advertise-client-urls "http://127.0.0.1:$PORT_ETCD" \
    --listen-peer-urls "http://127.0.0.1:$PORT_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PORT_PEER" \
    --initial-cluster "default=http://127.0.0.1:$PORT_PEER" \
    --unsafe-no-fsync --log-level warn
  wait_for etcd 30 healthy etcd

  # Metadata for every request, without the RequestReceived stage: one event per request
  # (two for a watch: ResponseStarted and ResponseComplete), no bodies, so no secrets. The
  # log is written before each response ends (blocking mode) and is rotated only at 1 GiB,
  # which a test cluster never reaches: every event of the cluster's life is in one file.
  cat >"$DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: Metadata
EOF

  # The endpoint reconciler would publish 127.0.0.1 as the `kubernetes` Service's endpoint,
  # which endpoint validation forbids (loopback); nothing here needs that endpoint.
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$PORT_ETCD" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$PORT_API" \
    --cert-dir "$DIR/pki/apiserver-serving" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,PodSecurity,Priority,ResourceQuota,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --audit-policy-file "$DIR/audit-policy.yaml" \
    --audit-log-path "$DIR/logs/audit.log" --audit-log-format json \
    --audit-log-mode blocking --audit-log-maxsize 1024 --audit-log-maxbackup 1 \
    --allow-privileged=true --profiling=false
  wait_for kube-apiserver 90 healthy kube-apiserver

  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$PORT_CM" \
    --cert-dir "$DIR/pki/controller-manager-serving" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$PORT_SCHED" \
    --cert-dir "$DIR/pki/scheduler-serving" \
    --leader-elect=false --profiling=false
  # HOME is the cluster folder so that no ~/.kwok/kwok.yaml of the user's is loaded.
  local stage_args=() f
  for f in "$HERE"/stages/*.yaml; do stage_args+=(--config "$f"); done
  start kwok env HOME="$DIR" "$BIN/kwok" \
    --kubeconfig "$DIR/kwok.kubeconfig" \
    "${stage_args[@]}" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 10.0.0.1 \
    --server-address "127.0.0.1:$PORT_KWOK" --node-port "$PORT_KWOK" \
    --node-lease-duration-seconds 40

  wait_for kube-controller-manager 60 healthy kube-controller-manager
  wait_for kube-scheduler 60 healthy kube-scheduler
  wait_for kwok 60 healthy kwok

  local i nodes=()
  for ((i = 0; i < NODE_COUNT; i++)); do nodes+=("kwok-node-$i"); done
  for ((i = 0; i < NODE_COUNT; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: kwok
spec: {}
status:
  addresses:
  - type: InternalIP
    address: 10.0.0.$((i + 10))
  - type: Hostname
    address: kwok-node-$i
  capacity: {cpu: "$NODE_CPU", memory: $NODE_MEMORY, pods: "$NODE_PODS", ephemeral-storage: 100Gi}
  allocatable: {cpu: "$NODE_CPU", memory: $NODE_MEMORY, pods: "$NODE_PODS", ephemeral-storage: 100Gi}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    osImage: kwok
    kernelVersion: kwok-$KWOK_VERSION
    containerRuntimeVersion: kwok://$KWOK_VERSION
    kubeletVersion: v$KUBE_VERSION
    kubeProxyVersion: v$KUBE_VERSION
    machineID: ""
    systemUUID: ""
    bootID: ""
EOF
  done | kubectl_ apply -f - >"$DIR/logs/nodes.log" 2>&1 || failed nodes "could not be created"
  wait_for kwok 60 kubectl_ wait --for=condition=Ready --timeout=5s "${nodes[@]/#/node/}"
  # Pods are admitted only once the controller-manager has made the namespace's default
  # ServiceAccount; wait for it so that the first test pod is not refused.
  wait_for kube-controller-manager 60 kubectl_ get serviceaccount default -n default

  if [ -n "$OWNER_PID" ]; then
    # The watchdog becomes `down` itself when the owner exits (exec keeps its pid, which
    # stop_all skips), so a killed test process leaves no cluster behind.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down --dir "$3"' \
      watchdog "$OWNER_PID" "$HERE/cluster.sh" "$DIR" >"$DIR/logs/watchdog.log" 2>&1 </dev/null &
    echo $! >"$DIR/pids/watchdog"
  fi
  write_env
  log "ready in $((SECONDS - began))s: $DIR (apiserver https://127.0.0.1:$PORT_API, $NODE_COUNT kwok nodes)"
  cat "$DIR/env"
}

# Stop one component and start it again with the same command line, for tests of how clients
# live through an apiserver (or etcd, ...) restart. --down-seconds keeps it down that long.
cmd_restart() {
  local name=${1:-} down_for=0
  [ -n "$name" ] || die "usage: cluster.sh restart COMPONENT [--dir D] [--down-seconds N]"
  shift
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --down-seconds) down_for=$2; shift 2 ;;
      *) args+=("$1"); shift ;;
    esac
  done
  parse_opts "${args[@]+"${args[@]}"}"
  load_ports
  [ -f "$DIR/cmd/$name" ] || die "no component $name in $DIR"
  local cmd=()
  mapfile -d '' cmd <"$DIR/cmd/$name"
  running "$name" && stop_group "$(cat "$DIR/pids/$name")"
  sleep "$down_for"
  start "$name" "${cmd[@]}"
  wait_for "$name" 90 healthy "$name"
  log "restarted $name"
}

# etcd's JSON gateway (plain http on loopback, as the apiserver reaches it): POST a request
# to one of its /v3 paths and print the answer.
etcd_call() { # PATH JSON
  curl -fsS --max-time 10 -X POST "http://127.0.0.1:$PORT_ETCD$1" -d "$2"
}

# The value of one field of the JSON on stdin, e.g. header.revision; empty when absent.
json_field() { # DOTTED.PATH
  python3 -c 'import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value.get(part, "") if isinstance(value, dict) else ""
print(value)' "$1"
}

# For tests of how clients recover from what happened while the apiserver was away.
cmd_etcd_delete() {
  local key=${1:-}
  [ -n "$key" ] || die "usage: cluster.sh etcd-delete KEY [--dir D]"
  shift
  parse_opts "$@"
  load_ports
  local deleted
  deleted=$(etcd_call /v3/kv/deleterange "{\"key\": \"$(printf '%s' "$key" | base64 -w0)\"}" |
    json_field deleted)
  [ "$deleted" = 1 ] || die "etcd has no key $key"
  log "deleted $key in etcd"
}

cmd_etcd_compact() {
  parse_opts "$@"
  load_ports
  local revision
  # Any range answer carries the store's current revision in its header.
  revision=$(etcd_call /v3/kv/range "{\"key\": \"$(printf '/' | base64 -w0)\", \"limit\": 1}" |
    json_field header.revision)
  [ -n "$revision" ] || die "etcd did not tell its revision"
  etcd_call /v3/kv/compaction "{\"revision\": \"$revision\", \"physical\": true}" >/dev/null
  log "compacted etcd up to revision $revision"
}

cmd_down() {
  parse_opts "$@"
  [ -d "$DIR" ] || { log "no cluster in $DIR"; return 0; }
  stop_all
  rm -rf "$DIR"
  log "stopped and removed $DIR"
}

cmd_env() {
  parse_opts "$@"
  [ -f "$DIR/env" ] || die "no cluster is running in $DIR (cluster.sh up first)"
  cat "$DIR/env"
}

cmd_status() {
  parse_opts "$@"
  [ -d "$DIR/pids" ] || die "no cluster in $DIR"
  local f name state=0
  for f in "$DIR"/pids/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    if running "$name"; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: stopped"; state=1; fi
  done
  return $state
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) shift; cmd_env "$@" ;;
  status) shift; cmd_status "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  etcd-delete) shift; cmd_etcd_delete "$@" ;;
  etcd-compact) shift; cmd_etcd_compact "$@" ;;
  *) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
