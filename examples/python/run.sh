#!/usr/bin/env bash
# Generates the Python code of proto/deployer/v1/deployer.proto into gen/ (grpcio-tools'
# protoc, from the venv scripts/setup.sh pins), then runs deploy_and_watch.py with the
# arguments given: run.sh --addr HOST:PORT --namespace NS --image IMAGE [--name N]
# [--tls | --ca-file CA.pem] [--timeout SECONDS], with the token in $DEPLOYER_TOKEN.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
tools=$("$ROOT/scripts/setup.sh" proto-tools)
eval "$tools"

# Generated aside, then swapped in under a lock: runs started together do not trip on each
# other, and an interrupted run leaves no half gen/.
exec 9>"$HERE/.gen.lock"
flock 9
tmp=$(mktemp -d "$HERE/.gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$K8S_DEPLOYER_PYTHON" -m grpc_tools.protoc -I "$ROOT/proto" \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" deployer/v1/deployer.proto
rm -rf "$HERE/gen"
mv "$tmp" "$HERE/gen"
trap - EXIT
exec 9>&-

exec "$K8S_DEPLOYER_PYTHON" "$HERE/deploy_and_watch.py" "$@"
