#!/usr/bin/env bash
# The shared-quota case of `make bench` (bench/src/shared.rs): one budget over N
# namespaces on a fresh local control plane of its own (.tenantry-bench-shared, removed
# afterwards). Usage: hack/bench-shared.sh N [tenantry-bench-shared options]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
n=${1:-1000}
shift || true
export TENANTRY_STATE=$repo/.tenantry-bench-shared
trap 'bash hack/cluster.sh down' EXIT
# The controller and the benchmark's two binaries (package tenantry-bench, bench/), all in
# target/release/.
cargo build --locked --release -p tenantry -p tenantry-bench
bash hack/cluster.sh down >/dev/null 2>&1 || true
export KUBECONFIG=$(bash hack/cluster.sh up)
kubectl=$TENANTRY_STATE/bin/kubectl
"$kubectl" apply --server-side -f crds/tenantry.io_tenantpolicies.yaml >/dev/null
"$kubectl" wait --for=condition=Established crd/tenantpolicies.tenantry.io --timeout=60s >/dev/null
# The window admission policy, as an install has it.
"$kubectl" apply --server-side -k config/admission >/dev/null
mkdir -p target/bench
./target/release/tenantry-bench-shared --namespaces "$n" --out target/bench "$@"
