#!/usr/bin/env bash
# Generates the Go code of proto/deployer/v1/deployer.proto into gen/ (`buf generate` with
# buf.gen.yaml: the protoc-gen-go and protoc-gen-go-grpc that scripts/setup.sh pins), builds the
# client into bin/, then runs it with the arguments given: run.sh --addr HOST:PORT
# --namespace NS --image IMAGE [--name N] [--tls | --ca-file CA.pem] [--timeout SECONDS],
# with the token in $DEPLOYER_TOKEN.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
tools=$("$ROOT/scripts/setup.sh" proto-tools)
eval "$tools"

# Under a lock, so that runs started together do not regenerate under each other's feet.
exec 9>"$HERE/.gen.lock"
flock 9
cd "$HERE"
PATH="$K8S_DEPLOYER_PROTOC_PLUGINS:$PATH" "$K8S_DEPLOYER_BUF" generate "$ROOT" --template buf.gen.yaml
go build -buildvcs=false -o bin/deploy-and-watch .
exec 9>&-

exec bin/deploy-and-watch "$@"
