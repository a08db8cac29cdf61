#!/usr/bin/env bash
# `make test`: unit tests, then end-to-end tests against the real local control plane. Starts the
# control plane when it is not already running and stops it again only in that case.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export TENANTRY_STATE=${TENANTRY_STATE:-$repo/.tenantry}

# Argo CD's health check is tested under a real Lua 5.1 (Debian package).
if ! command -v lua5.1 >/dev/null; then
  echo "== installing lua5.1"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1
fi

started_here=""
if ! bash hack/cluster.sh status >/dev/null 2>&1; then
  started_here=yes
  trap 'bash hack/cluster.sh down' EXIT
fi
# Build the control plane (cached) and the tests while nothing else competes for the two cores.
kubeconfig=$(bash hack/cluster.sh up)
export KUBECONFIG=$kubeconfig TENANTRY_KUBECONFIG=$kubeconfig
export PATH=$TENANTRY_STATE/bin:$PATH

echo "== unit tests"
# The workspace: tenantry's unit and property tests, and the benchmark's and testkit's own.
cargo test --locked --workspace
echo "== end-to-end tests against $(kubectl version -o json | python3 -c 'import json,sys; print("Kubernetes", json.load(sys.stdin)["serverVersion"]["gitVersion"])') at $kubeconfig"
# E2E tests mostly wait on the API server; each runs its own operator process, so run many at once.
cargo test --locked --features e2e --test e2e -- --test-threads 8

# Faults hit the whole control plane (API server and etcd restarts), so they get one of their own.
echo "== fault suite on its own control plane"
bash hack/test-faults.sh
[ -z "$started_here" ] || echo "== stopping the control plane this run started"
