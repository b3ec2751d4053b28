# The two commands of the README: `make demo` runs the main job, `make test` runs every test.
# Both install what is missing first (scripts/setup.sh).
SHELL := /bin/bash
export K8S_DEPLOYER_CACHE ?= $(HOME)/.cache/k8s-deployer
# cargo's target lives beside the cluster binaries, outside the checkout, so that a fresh
# clone (as in CI) reuses what an earlier build on this machine made.
export CARGO_TARGET_DIR ?= $(K8S_DEPLOYER_CACHE)/target
CARGO_JOBS ?= 2
# CI builds a fresh checkout once: incremental compilation would only write a cache it never reads.
ifdef CI
export CARGO_INCREMENTAL ?= 0
endif
# What `buf breaking` compares proto/ with: the main branch (the local one; in a clone that has
# none, origin's). subdir=proto, so that it also works against commits without buf.yaml.
BUF_AGAINST ?= .git\#$(shell git rev-parse -q --verify refs/heads/main >/dev/null && echo branch=main || echo ref=origin/main),subdir=proto

.PHONY: setup demo test lint unit release cluster-up cluster-down

setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

# buf: the STANDARD lint rules and no breaking change (FILE rules) against main, with the buf
# that scripts/setup.sh pins; gofmt on the Go example.
lint:
	cargo fmt --all -- --check
	tools=$$(scripts/setup.sh proto-tools) && eval "$$tools" && "$$K8S_DEPLOYER_BUF" lint && \
	  "$$K8S_DEPLOYER_BUF" breaking --against '$(BUF_AGAINST)'
	test -z "$$(gofmt -l examples/go | tee /dev/stderr)"
	cargo clippy --jobs $(CARGO_JOBS) --all-targets --locked -- -D warnings

# The binary the Dockerfile copies, built as it builds it. There is no container engine on
# these machines, so this is what can be checked of the image.
release:
	cargo build --jobs $(CARGO_JOBS) --release --locked --bin k8s-deployer
	$(CARGO_TARGET_DIR)/release/k8s-deployer --version

# Every test: lints, the release build, unit tests, and the integration tests, each test
# binary against a local control plane of its own that it starts (and that is torn down when
# it exits).
test: setup lint release
	cargo test --jobs $(CARGO_JOBS) --locked --all-targets

unit:
	cargo test --jobs $(CARGO_JOBS) --locked --lib

cluster-up:
	tests/cluster/cluster.sh up

cluster-down:
	tests/cluster/cluster.sh down
