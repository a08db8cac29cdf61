#!/usr/bin/env bash
# `make bench`: release build, then for each namespace count a fresh local control plane of its
# own (state in .tenantry-bench, removed afterwards), so every N starts from the same empty
# cluster and no run leaves load behind; then, if BENCH_FLEET is set, the fleet shape on one more
# fresh control plane; finally one table of all runs, which exits non-zero when a target is
# missed (tenantry-bench --help lists them). Usage:
#   hack/bench.sh 1000,3000 [tenantry-bench options]
#   BENCH_FLEET=10000 hack/bench.sh 1000 [tenantry-bench options]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
counts=${1:-1000,3000}
shift || true
export TENANTRY_STATE=$repo/.tenantry-bench
trap 'bash hack/cluster.sh down' EXIT
# The controller and the benchmark's two binaries (package tenantry-bench, bench/), all in
# target/release/.
cargo build --locked --release -p tenantry -p tenantry-bench
mkdir -p target/bench
results=()
# The control plane's Go processes collect garbage less often than by default (GOGC=400, capped
# by GOMEMLIMIT): with the default, identical floors at N=1,000 took 4.2-7.3 s (garbage
# collection in kube-apiserver is the main source of that spread); with this, 3.9-4.9 s. Both
# the floor and the controller run on it.
bench_gc=(GOGC=400 GOMEMLIMIT=6GiB)
fresh_cluster() {
  bash hack/cluster.sh down >/dev/null 2>&1 || true
  KUBECONFIG=$(env "${bench_gc[@]}" bash hack/cluster.sh up)
  export KUBECONFIG
  "$TENANTRY_STATE/bin/kubectl" apply --server-side -f crds/tenantry.io_tenantpolicies.yaml >/dev/null
  "$TENANTRY_STATE/bin/kubectl" wait --for=condition=Established crd/tenantpolicies.tenantry.io --timeout=60s >/dev/null
}
for n in ${counts//,/ }; do
  fresh_cluster
  echo "[bench] ./target/release/tenantry-bench --namespaces $n --out target/bench $*" >&2
  ./target/release/tenantry-bench --namespaces "$n" --out target/bench "$@"
  results+=("target/bench/bench-$n.json")
done
if [ -n "${BENCH_FLEET:-}" ]; then
  fresh_cluster
  echo "[bench] ./target/release/tenantry-bench --fleet --namespaces $BENCH_FLEET --out target/bench $*" >&2
  ./target/release/tenantry-bench --fleet --namespaces "$BENCH_FLEET" --out target/bench "$@"
  results+=("target/bench/fleet-$BENCH_FLEET.json")
fi
./target/release/tenantry-bench "$@" --summarize "${results[@]}"
