#!/usr/bin/env bash
# `make bench`: release build, then for each namespace count a fresh local control plane of its
# own (state in .tenantry-bench, removed afterwards), so every N starts from the same empty
# cluster and no run leaves load behind; finally one table of all runs. Usage:
#   hack/bench.sh 1000,10000 [tenantry-bench options]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
counts=${1:-1000,10000}
shift || true
export TENANTRY_STATE=$repo/.tenantry-bench
trap 'bash hack/cluster.sh down' EXIT
cargo build --locked --release --bins
mkdir -p target/bench
results=()
for n in ${counts//,/ }; do
  bash hack/cluster.sh down >/dev/null 2>&1 || true
  export KUBECONFIG=$(bash hack/cluster.sh up)
  "$TENANTRY_STATE/bin/kubectl" apply --server-side -f crds/tenantry.io_tenantpolicies.yaml >/dev/null
  "$TENANTRY_STATE/bin/kubectl" wait --for=condition=Established crd/tenantpolicies.tenantry.io --timeout=60s >/dev/null
  ./target/release/tenantry-bench --namespaces "$n" --no-cleanup --out target/bench "$@"
  results+=("target/bench/bench-$n.json")
done
./target/release/tenantry-bench --summarize "${results[@]}"
