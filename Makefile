# The two commands of the README: `make demo` runs the main job, `make test` runs every test.
# Both install what is missing first (scripts/setup.sh).
SHELL := /bin/bash
export K8S_DEPLOYER_CACHE ?= $(HOME)/.cache/k8s-deployer
# cargo's target lives beside the cluster binaries, outside the checkout, so that a fresh
# clone (as in CI) reuses what an earlier build on this machine made.
export CARGO_TARGET_DIR ?= $(K8S_DEPLOYER_CACHE)/target
CARGO_JOBS ?= 2

.PHONY: setup demo test lint unit release cluster-up cluster-down

setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

lint:
	cargo fmt --all -- --check
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
