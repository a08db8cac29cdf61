#!/usr/bin/env bash
# `make demo`: the field story, governed. A local control plane; namespaces as the operations
# notes found them (mia full of BestEffort Deployments, online with a StatefulSet, a trino
# coordinator/worker pair, testing); Tenantry running; the policies of config/samples applied;
# then what they did, and team-mia's shared budget lending mia's unused headroom to a second
# namespace of the team. Stays in the foreground until Ctrl-C, or exits after printing with
# DEMO_EXIT=1.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export TENANTRY_STATE=${TENANTRY_STATE:-$repo/.tenantry}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# poll <what> <seconds> <command...>: runs the command until it succeeds, failing the demo with
# <what> named after the deadline (a condition, never a fixed sleep).
poll() {
  local what=$1 deadline=$(( $(date +%s) + $2 )); shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 0.2
  done
}

step "control plane"
kubeconfig=$(bash hack/cluster.sh up)
export KUBECONFIG=$kubeconfig PATH=$TENANTRY_STATE/bin:$PATH

step "TenantPolicy CRD"
kubectl apply --server-side --force-conflicts -f crds/tenantry.io_tenantpolicies.yaml
kubectl wait --for=condition=Established crd/tenantpolicies.tenantry.io --timeout=60s

step "the field story's namespaces, ungoverned: no quota, no LimitRange, BestEffort pods"
kubectl apply --server-side -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: mia, labels: {tenantry.io/governed: "true", team: a, tenantry.io/tenant: mia}}
---
apiVersion: v1
kind: Namespace
metadata: {name: online, labels: {tenantry.io/governed: "true", team: b}}
---
apiVersion: v1
kind: Namespace
metadata: {name: trino, labels: {tenantry.io/governed: "true", tenantry.io/workload: trino}}
---
apiVersion: v1
kind: Namespace
metadata: {name: testing, labels: {team: a}}
---
# A class from before, which governed namespaces should no longer use.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: legacy-nfs}
provisioner: example.com/nfs
YAML
for ns in mia online trino testing; do
  kubectl wait --for=create serviceaccount/default -n "$ns" --timeout=60s >/dev/null
done
workloads() {
  for app in api web worker; do
    cat <<YAML
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $app, namespace: mia}
spec:
  replicas: 7
  selector: {matchLabels: {app: $app}}
  template:
    metadata: {labels: {app: $app}}
    spec: {containers: [{name: $app, image: registry.example/mia/$app:1.0}]}
YAML
  done
  cat <<'YAML'
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: orders-db, namespace: online}
spec:
  serviceName: orders-db
  replicas: 1
  selector: {matchLabels: {app: orders-db}}
  template:
    metadata: {labels: {app: orders-db}}
    spec: {containers: [{name: db, image: registry.example/online/orders-db:1.0}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: trino-coordinator, namespace: trino}
spec:
  replicas: 1
  selector: {matchLabels: {app: trino-coordinator}}
  template:
    metadata: {labels: {app: trino-coordinator}}
    spec:
      containers:
        - name: trino
          image: registry.example/trino:470
          resources: {requests: {cpu: 500m, memory: 2Gi}, limits: {memory: 4Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: trino-worker, namespace: trino}
spec:
  replicas: 3
  selector: {matchLabels: {app: trino-worker}}
  template:
    metadata: {labels: {app: trino-worker}}
    spec:
      containers:
        - name: trino
          image: registry.example/trino:470
          resources: {requests: {cpu: 500m, memory: 2Gi}, limits: {memory: 4Gi}}
YAML
}
workloads | kubectl apply --server-side -f -
# The ReplicaSet controller (kube-controller-manager) creates the pods a moment after the
# Deployments, and a Deployment's status.replicas counts the pods its ReplicaSets have made:
# wait (a watch, no sleep) for all 21 of mia's before showing them.
kubectl wait --for=jsonpath='{.status.replicas}'=7 deployment/api deployment/web deployment/worker \
  -n mia --timeout=120s >/dev/null
qos_of_mia() { kubectl get pods -n mia -o jsonpath='{range .items[*]}{.status.qosClass}{"\n"}{end}'; }
echo "(no kubelet runs here: pods are admitted and stay Pending, which is all governance needs)"
echo "pods in mia by QoS class:"
qos_of_mia | sort | uniq -c | sed 's/^/ /'
kubectl get pods -n mia -o custom-columns='POD:.metadata.name,QOS:.status.qosClass,CPU REQUEST:.spec.containers[0].resources.requests.cpu,MEMORY REQUEST:.spec.containers[0].resources.requests.memory' | awk 'NR <= 4'
echo "ResourceQuotas and LimitRanges in mia: $(kubectl get resourcequota,limitrange -n mia -o name | wc -l)"

step "Tenantry"
# cargo prints its own progress (a bar on a terminal, one line per crate otherwise); a cold
# machine compiles the dependencies first, which takes several minutes on 2 cores.
echo "building tenantry (cargo build; the first build on a cold machine takes several minutes)"
build_started=$(date +%s)
cargo build --locked
echo "built ./target/debug/tenantry in $(( $(date +%s) - build_started ))s"
log=$TENANTRY_STATE/logs/tenantry.log
mkdir -p "$(dirname "$log")"
./target/debug/tenantry run --metrics-addr 127.0.0.1:0 >"$log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT
started() {
  kill -0 $operator 2>/dev/null || { echo "tenantry exited:"; tail -20 "$log"; exit 1; }
  grep -q "caches synced" "$log"
}
poll "tenantry to sync its caches" 60 started
echo "running (pid $operator), log: $log"

step "policies from config/samples"
kubectl apply --server-side -f config/samples/
kubectl wait --for=condition=Ready tenantpolicies --all --timeout=60s

step "new pods in mia now get the LimitRange defaults (a rollout of api)"
kubectl rollout restart deployment/api -n mia
mia_has_burstable() { qos_of_mia | grep Burstable >/dev/null; }
poll "a Burstable pod in mia" 60 mia_has_burstable
echo "pods in mia by QoS class (before: all BestEffort):"
qos_of_mia | sort | uniq -c | sed 's/^/ /'
kubectl get pods -n mia -o custom-columns='NEW POD:.metadata.name,QOS:.status.qosClass,CPU REQUEST:.spec.containers[0].resources.requests.cpu,CPU LIMIT:.spec.containers[0].resources.limits.cpu,MEMORY REQUEST:.spec.containers[0].resources.requests.memory,MEMORY LIMIT:.spec.containers[0].resources.limits.memory' | awk 'NR == 1 || (/Burstable/ && ++n <= 2)'

step "a tenant cannot bypass it: trino's namespace admin tries to delete the trino-worker PDB"
kubectl apply --server-side --force-conflicts -k config/admission >/dev/null
kubectl create rolebinding trino-admin --clusterrole=admin --user=trino-admin -n trino --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The API server loads a new admission policy and its binding a moment after they are stored:
# wait until it refuses the deletion (a server-side dry run changes nothing).
admission_loaded() {
  local out
  out=$(kubectl delete pdb trino-worker -n trino --as=trino-admin --dry-run=server 2>&1 || true)
  [[ $out == *"is governed by TenantPolicy"* ]]
}
loading=$(date +%s)
poll "the admission policies to be loaded" 90 admission_loaded
echo "(admission policies in force after $(( $(date +%s) - loading ))s)"
echo "\$ kubectl delete pdb trino-worker -n trino --as=trino-admin"
kubectl delete pdb trino-worker -n trino --as=trino-admin 2>&1 | sed 's/^/  /' || true

step "storage: the owned classes, and claims in mia judged by the allow-list"
kubectl get storageclass -L tenantry.io/policy
claim() { # <name> <class>
  printf '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"%s","namespace":"mia"},"spec":{"storageClassName":"%s","accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"10Gi"}}}}' "$1" "$2"
}
storage_quota_enforced() { kubectl get resourcequota tenantry-storage -n mia -o jsonpath='{.status.hard}' | grep legacy-nfs >/dev/null; }
poll "the tenantry-storage quota in mia" 60 storage_quota_enforced
echo "\$ kubectl create pvc of class legacy-nfs in mia --as=mia-admin"
kubectl create rolebinding mia-admin --clusterrole=admin --user=mia-admin -n mia --dry-run=client -o yaml | kubectl apply -f - >/dev/null
claim old-data legacy-nfs | kubectl create --as=mia-admin -f - 2>&1 | sed 's/^/  /' || true
echo "\$ kubectl create pvc of class fast-ssd in mia --as=mia-admin"
claim data fast-ssd | kubectl apply --as=mia-admin -f - 2>&1 | sed 's/^/  /'
kubectl describe resourcequota tenantry-storage -n mia | sed 's/^/  /'

step "a shared budget: team-mia's 10 CPU across mia and the team's second namespace, mia-batch"
kubectl apply --server-side -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: mia-batch, labels: {tenantry.io/governed: "true", team: a, tenantry.io/tenant: mia}}
YAML
kubectl wait --for=create serviceaccount/default -n mia-batch --timeout=60s >/dev/null
# Each namespace's part of the budget: the ResourceQuota team-budget, which quota admission
# enforces (status.hard), sized by Tenantry (spec.hard) to what the namespace uses plus headroom.
parts() {
  kubectl get resourcequota -A -l tenantry.io/shared-quota=team-budget \
    -o custom-columns='NAMESPACE:.metadata.namespace,CPU PART (SPEC.HARD):.spec.hard.requests\.cpu,ENFORCED (STATUS.HARD):.status.hard.requests\.cpu,CPU USED:.status.used.requests\.cpu'
}
# Settled: both parts sized (not the zero a new part starts at) and enforced as written.
parts_settled() { # <cpu used in mia-batch>
  local rows
  rows=$(kubectl get resourcequota -A -l tenantry.io/shared-quota=team-budget \
    -o jsonpath='{range .items[*]}{.metadata.namespace} {.spec.hard.requests\.cpu} {.status.hard.requests\.cpu} {.status.used.requests\.cpu}{"\n"}{end}')
  [ "$(echo "$rows" | awk '$2 != "0" && $2 == $3' | wc -l)" -eq 2 ] &&
    echo "$rows" | awk -v used="$1" '$1 == "mia-batch" && $4 == used' | grep -q .
}
poll "mia-batch's part to be sized" 60 parts_settled 0
kubectl apply --server-side -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: mia-batch}
spec:
  replicas: 4
  selector: {matchLabels: {app: batch}}
  template:
    metadata: {labels: {app: batch}}
    spec:
      containers:
        - name: batch
          image: registry.example/mia/batch:1.0
          resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 250m, memory: 64Mi}}
YAML
kubectl wait --for=jsonpath='{.status.replicas}'=4 deployment/batch -n mia-batch --timeout=60s >/dev/null
poll "mia-batch's part to count its pods" 60 parts_settled 1
part_of() { kubectl get resourcequota team-budget -n "$1" -o jsonpath='{.spec.hard.requests\.cpu}'; }
mia_before=$(part_of mia) batch_before=$(part_of mia-batch)
echo "mia-batch runs 4 pods of 250m CPU; the parts:"
parts | sed 's/^/  /'
echo "\$ kubectl scale deployment/batch -n mia-batch --replicas=24   # 6 CPU: beyond its part"
kubectl scale deployment/batch -n mia-batch --replicas=24 >/dev/null
kubectl wait --for=jsonpath='{.status.replicas}'=24 deployment/batch -n mia-batch --timeout=60s >/dev/null
poll "the parts to settle" 60 parts_settled 6
echo "all 24 admitted, beyond what was free: mia-batch borrowed the headroom mia left unused"
echo "(mia's part went from $mia_before to $(part_of mia) CPU, mia-batch's from $batch_before to $(part_of mia-batch)):"
parts | sed 's/^/  /'
echo "\$ kubectl get tenantpolicy team-mia -o jsonpath='{.status.sharedQuotas}'"
kubectl get tenantpolicy team-mia -o jsonpath='{.status.sharedQuotas}' | sed 's/^/  /'
echo
echo "\$ tenantry audit -n mia-batch   # its SHARED QUOTAS section"
./target/debug/tenantry audit -n mia-batch 2>/dev/null | sed -n '/^SHARED QUOTAS/,/^$/{/^$/d;s/^/  /;p}'

step "managed objects per namespace"
kubectl get limitrange,resourcequota,poddisruptionbudget,storageclass -A -l app.kubernetes.io/managed-by=tenantry \
  -o custom-columns='NAMESPACE:.metadata.namespace,KIND:.kind,NAME:.metadata.name,POLICY:.metadata.labels.tenantry\.io/policy'

step "kubectl get tenantpolicies -o wide"
kubectl get tenantpolicies -o wide

if [ "${DEMO_EXIT:-}" = 1 ]; then
  exit 0
fi
cat <<TXT

Tenantry keeps running. In another shell:
  export KUBECONFIG=$kubeconfig PATH=$TENANTRY_STATE/bin:\$PATH
  kubectl delete limitrange defaults -n mia      # drift: restored at once, with a Warning Event
  kubectl get events -n default                  # what Tenantry did
  kubectl label namespace testing tenantry.io/governed=true   # governed within a second
Ctrl-C stops Tenantry (the control plane stays up; make cluster-down removes it).
TXT
wait $operator
