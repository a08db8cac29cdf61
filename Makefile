# Tenantry. The two set-up commands in the README are `make demo` and `make test`.
SHELL := /bin/bash
STATE ?= $(CURDIR)/.tenantry
export TENANTRY_STATE := $(STATE)
# kubectl of the control plane's own version comes first on PATH once the cluster is up.
export PATH := $(STATE)/bin:$(PATH)

BENCH_N ?= 1000,3000
BENCH_FLEET ?=
export BENCH_FLEET
BENCH_ARGS ?=
# The shared-quota case: one budget over this many namespaces (tenantry-bench-shared options in
# BENCH_SHARED_ARGS).
BENCH_SHARED_N ?= 1000
BENCH_SHARED_ARGS ?=

.PHONY: bench build crds cluster-up cluster-down cluster-status test test-unit test-e2e test-faults lint demo controlplane

build:
	cargo build --locked

crds:
	cargo run --locked -q -- crd > crds/tenantry.io_tenantpolicies.yaml
	cp crds/tenantry.io_tenantpolicies.yaml config/crd/tenantry.io_tenantpolicies.yaml
	cp crds/tenantry.io_tenantpolicies.yaml charts/tenantry/crds/tenantry.io_tenantpolicies.yaml

controlplane:
	bash hack/controlplane/build.sh

cluster-up:
	@bash hack/cluster.sh up

cluster-down:
	@bash hack/cluster.sh down

cluster-status:
	@bash hack/cluster.sh status

# Unit and end-to-end tests. Starts the control plane if it is not running, and stops what it started.
test:
	bash hack/test.sh

# The controller's unit and property tests, and the benchmark's and testkit's own (the workspace;
# plain `cargo test` covers only tenantry).
test-unit:
	cargo test --locked --workspace

test-e2e:
	cargo test --locked --features e2e --test e2e -- --test-threads 8

test-faults:
	bash hack/test-faults.sh

# The whole workspace: tenantry (with its e2e feature, the only feature there is), bench/, testkit/.
lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
	python3 hack/fn-lengths.py 120
	python3 hack/module-cycles.py src

demo:
	bash hack/demo.sh

# Benchmark (bench/, package tenantry-bench), each N on a fresh control plane of its own;
# BENCH_N=1000,3000 by default, BENCH_FLEET=10000 adds the fleet shape. Exits non-zero when a
# target is missed.
bench:
	bash hack/bench.sh $(BENCH_N) $(BENCH_ARGS)
	bash hack/bench-shared.sh $(BENCH_SHARED_N) $(BENCH_SHARED_ARGS)
