#!/usr/bin/env bash
# `make demo`: the local control plane with the TenantPolicy CRD installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export TENANTRY_STATE=${TENANTRY_STATE:-$repo/.tenantry}
kubeconfig=$(bash hack/cluster.sh up)
export KUBECONFIG=$kubeconfig PATH=$TENANTRY_STATE/bin:$PATH
kubectl apply --server-side -f crds/tenantry.io_tenantpolicies.yaml
kubectl wait --for=condition=Established crd/tenantpolicies.tenantry.io --timeout=60s
echo
echo "\$ kubectl get tenantpolicies"
kubectl get tenantpolicies
cat <<TXT

The control plane is running. Use it with:
  export KUBECONFIG=$kubeconfig PATH=$TENANTRY_STATE/bin:\$PATH
Stop it with: make cluster-down
TXT
