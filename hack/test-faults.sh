#!/usr/bin/env bash
# `make test-faults`: the fault suite (tests/faults) on a fresh control plane of its own
# (.tenantry-faults), removed afterwards: its API server and etcd are restarted mid-test.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export TENANTRY_STATE=$repo/.tenantry-faults
bash hack/cluster.sh down >/dev/null 2>&1 || true
trap 'bash hack/cluster.sh down' EXIT
kubeconfig=$(bash hack/cluster.sh up)
export KUBECONFIG=$kubeconfig TENANTRY_KUBECONFIG=$kubeconfig PATH=$TENANTRY_STATE/bin:$PATH
cargo test --locked --features e2e --test faults -- --nocapture --test-threads 1
