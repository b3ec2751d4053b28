#!/usr/bin/env bash
# Installs what the project needs and is missing, and builds what is slow to build, into caches
# outside the repository. Safe to run again: it only does what is not done yet.
#   - Debian packages for the cluster script (curl, openssl, python3) and for the Python
#     example (python3-venv), when missing;
#   - checks Go (1.26+, for the control plane) and Rust (cargo, rustfmt, clippy);
#   - builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok
#     from their Go modules (tests/cluster/cluster.sh build), cached by version;
#   - installs, cached by version: grpcurl, buf, protoc-gen-go and protoc-gen-go-grpc from their
#     Go modules, and a Python venv with grpcio, grpcio-tools and protobuf from PyPI.
# `setup.sh proto-tools` installs only the last group and prints where it is, as export lines
# for `eval` (K8S_DEPLOYER_BUF, K8S_DEPLOYER_PROTOC_PLUGINS, K8S_DEPLOYER_PYTHON,
# K8S_DEPLOYER_GRPCURL): `make lint` and examples/*/run.sh use it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${K8S_DEPLOYER_CACHE:-$HOME/.cache/k8s-deployer}
TOOLS="$CACHE/tools"
GRPCURL_VERSION=v1.9.3
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GRPCIO_VERSION=1.85.1 # grpcio and grpcio-tools, which are released together
PROTOBUF_VERSION=7.36.2

say() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for pair in curl:curl openssl:openssl python3:python3 flock:util-linux setsid:util-linux; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# Debian's python3 has neither venv nor ensurepip without python3-venv.
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { say "Go is not installed: install Go 1.26 or newer"; exit 1; }

# One install at a time per cache (parallel `make test`s, run.sh's), taken only when something
# is missing. Go tools are installed aside and moved into place, so a folder that exists is
# complete; a venv cannot be moved, so a marker file says it is complete.
lock_tools() {
  [ -n "${tools_locked:-}" ] && return
  mkdir -p "$TOOLS"
  exec 8>"$TOOLS/.install.lock"
  flock 8
  tools_locked=1
}

go_tool() { # NAME VERSION PACKAGE: the binary NAME in $TOOLS/NAME-VERSION
  local dir="$TOOLS/$1-$2" tmp start=$SECONDS
  [ -x "$dir/$1" ] && return
  lock_tools
  [ -x "$dir/$1" ] && return
  say "installing $1 $2 from its Go module"
  tmp=$(mktemp -d "$TOOLS/.$1.XXXXXX")
  chmod 755 "$tmp"
  GOBIN="$tmp" go install "$3@$2" || { rm -rf "$tmp"; say "$1 did not install"; exit 1; }
  rm -rf "$dir"
  mv "$tmp" "$dir"
  say "installed $1 in $((SECONDS - start))s into $dir"
}

python_venv() { # sets PYTHON_GRPC, the venv's python
  local py dir start=$SECONDS
  py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  dir="$TOOLS/python-grpcio-$GRPCIO_VERSION-protobuf-$PROTOBUF_VERSION-py$py"
  PYTHON_GRPC="$dir/bin/python"
  [ -f "$dir/.complete" ] && return
  lock_tools
  [ -f "$dir/.complete" ] && return
  say "installing grpcio and grpcio-tools $GRPCIO_VERSION, protobuf $PROTOBUF_VERSION from PyPI"
  rm -rf "$dir"
  if ! { python3 -m venv "$dir" &&
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
      "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" "protobuf==$PROTOBUF_VERSION"; }; then
    rm -rf "$dir"
    say "the Python venv did not install"
    exit 1
  fi
  touch "$dir/.complete"
  say "installed the Python venv in $((SECONDS - start))s into $dir"
}

proto_tools() {
  go_tool grpcurl "$GRPCURL_VERSION" github.com/fullstorydev/grpcurl/cmd/grpcurl
  go_tool buf "$BUF_VERSION" github.com/bufbuild/buf/cmd/buf
  go_tool protoc-gen-go "$PROTOC_GEN_GO_VERSION" google.golang.org/protobuf/cmd/protoc-gen-go
  go_tool protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc
  python_venv
}

if [ "${1:-}" = proto-tools ]; then
  proto_tools
  printf "export K8S_DEPLOYER_BUF='%s'\n" "$TOOLS/buf-$BUF_VERSION/buf"
  printf "export K8S_DEPLOYER_PROTOC_PLUGINS='%s'\n" \
    "$TOOLS/protoc-gen-go-$PROTOC_GEN_GO_VERSION:$TOOLS/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC_VERSION"
  printf "export K8S_DEPLOYER_PYTHON='%s'\n" "$PYTHON_GRPC"
  printf "export K8S_DEPLOYER_GRPCURL='%s'\n" "$TOOLS/grpcurl-$GRPCURL_VERSION/grpcurl"
  exit 0
fi

command -v cargo >/dev/null || { say "Rust is not installed: install it with rustup"; exit 1; }
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null; then
      say "adding the Rust component $component"
      rustup component add "$component"
    else
      say "cargo $component is missing and rustup is not here to add it"; exit 1
    fi
  fi
done

"$ROOT/tests/cluster/cluster.sh" build >/dev/null

proto_tools
say "ready (cluster binaries: $("$ROOT/tests/cluster/cluster.sh" build), tools: $TOOLS)"
