#!/usr/bin/env bash
# Installs what the project needs and is missing, and builds what is slow to build, into caches
# outside the repository. Safe to run again: it only does what is not done yet.
#   - Debian packages for the cluster script (curl, openssl, python3), when missing;
#   - checks Go (1.26+, for the control plane) and Rust (cargo, rustfmt, clippy);
#   - builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok
#     from their Go modules (tests/cluster/cluster.sh build), cached by version;
#   - installs grpcurl from its Go module, cached by version.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${K8S_DEPLOYER_CACHE:-$HOME/.cache/k8s-deployer}
GRPCURL_VERSION=v1.9.3

say() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for pair in curl:curl openssl:openssl python3:python3 flock:util-linux setsid:util-linux; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { say "Go is not installed: install Go 1.26 or newer"; exit 1; }
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

grpcurl_bin="$CACHE/tools/grpcurl-$GRPCURL_VERSION"
if [ ! -x "$grpcurl_bin/grpcurl" ]; then
  say "installing grpcurl $GRPCURL_VERSION from its Go module"
  GOBIN="$grpcurl_bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
fi
say "ready (cluster binaries: $("$ROOT/tests/cluster/cluster.sh" build), grpcurl: $grpcurl_bin)"
