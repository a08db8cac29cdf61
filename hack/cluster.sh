#!/usr/bin/env bash
# A real Kubernetes control plane on loopback: etcd + kube-apiserver + kube-controller-manager +
# kube-scheduler, and KWOK simulating the nodes (hack/kwok).
#
#   hack/cluster.sh up      idempotent; builds (cached) and starts them, waits for /readyz,
#                           creates the simulated nodes and waits until they are Ready, writes the
#                           admin kubeconfig and prints its path
#   hack/cluster.sh down    stops exactly the processes `up` started (by PID) and removes the state
#   hack/cluster.sh status  exit 0 when all run, the API server is ready and the nodes are Ready
#   hack/cluster.sh restart COMPONENT [kill]   restart one component, same arguments and data
#
# State lives in $TENANTRY_STATE (default .tenantry/ in the repository, git-ignored). No kubelet
# runs and no container starts: with TENANTRY_NODES=N (default 0: neither of the two runs, and
# pods stay Pending) the real scheduler binds pods to N simulated nodes of TENANTRY_NODE_CPU /
# TENANTRY_NODE_MEMORY / TENANTRY_NODE_PODS allocatable (default 4 / 16Gi / 110) named
# kwok-node-1..N, and KWOK marks a bound pod Running and Ready, and removes a deleted one. Nodes and pods have loopback addresses only: node IP 127.0.0.1, pod IPs in
# 127.1.<node>.0/24. TENANTRY_PROFILING=true serves the API server's /debug/pprof (for
# `kubectl get --raw '/debug/pprof/profile?seconds=5'`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
state=${TENANTRY_STATE:-$repo/.tenantry}
pki=$state/pki
logs=$state/logs
# The node count `up` was given is kept, for `status` and a later `up` without TENANTRY_NODES.
# 0 (the default until the test suite runs with pods that run) starts neither kube-scheduler nor
# KWOK: pods are admitted and stored but never scheduled, as on a control plane alone.
nodes=${TENANTRY_NODES:-$(cat "$state/nodes.count" 2>/dev/null || echo 0)}
node_cpu=${TENANTRY_NODE_CPU:-4}
node_memory=${TENANTRY_NODE_MEMORY:-16Gi}
node_pods=${TENANTRY_NODE_PODS:-110}
case "$nodes" in ''|*[!0-9]*) echo "TENANTRY_NODES must be a number of nodes, 0 to 254: $nodes" >&2; exit 2 ;; esac
components=(etcd kube-apiserver kube-controller-manager)
[ "$nodes" -eq 0 ] || components+=(kube-scheduler kwok)
[ "$nodes" -le 254 ] || { echo "TENANTRY_NODES must be at most 254 (one 127.1.<n>.0/24 each): $nodes" >&2; exit 2; }

log() { echo "[cluster] $*" >&2; }

pid_of() { cat "$state/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# A process that died is reported with the end of its log, never silently ignored.
report_death() {
  log "$1 is not running (pid $(pid_of "$1")); last lines of $logs/$1.log:"
  tail -n 30 "$logs/$1.log" >&2 || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

api_ready() {
  local port
  port=$(cat "$state/apiserver.port" 2>/dev/null) || return 1
  curl -sf --max-time 2 --cacert "$pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

all_running() {
  for c in "${components[@]}"; do alive "$c" || return 1; done
  api_ready
}

kubectl_() { KUBECONFIG="$state/kubeconfig" "$state/bin/kubectl" --request-timeout 10s "$@"; }

# The simulated nodes: created with their capacity and allocatable (a kubelet registers its node
# the same way), annotated for KWOK, labelled type=kwok, untainted, each with its own loopback pod
# CIDR. Creates only the missing ones, so `up` on a running cluster restores a deleted node.
create_nodes() {
  local i name missing=""
  local existing; existing=" $(kubectl_ get nodes -l type=kwok -o jsonpath='{.items[*].metadata.name}') "
  for i in $(seq 1 "$nodes"); do
    name=kwok-node-$i
    case "$existing" in *" $name "*) continue ;; esac
    missing+="$name "
    cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
spec:
  podCIDR: 127.1.$i.0/24
  podCIDRs: [127.1.$i.0/24]
status:
  capacity: {cpu: "$node_cpu", memory: "$node_memory", pods: "$node_pods"}
  allocatable: {cpu: "$node_cpu", memory: "$node_memory", pods: "$node_pods"}
NODE
  done > "$state/nodes.yaml"
  [ -n "$missing" ] || return 0
  log "creating simulated nodes: $missing($node_cpu CPU / $node_memory / $node_pods pods allocatable each)"
  kubectl_ create -f "$state/nodes.yaml" >/dev/null
}

# Ready, with the allocatable they were created with, and untainted (the node lifecycle controller
# lifts node.kubernetes.io/not-ready once KWOK reports them Ready): pods can be scheduled.
nodes_ready() {
  local ready
  ready=$(kubectl_ get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.allocatable.cpu}{" "}{.spec.taints}{"\n"}{end}' 2>/dev/null \
    | awk '$2 == "True" && $3 != "" && $3 != "0" && NF == 3' | wc -l) || return 1
  [ "$ready" -ge "$nodes" ]
}

# Polls a condition until it holds, failing early (with its log) if a component dies meanwhile.
wait_for() { # <what> <seconds> <command...>
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    for c in "${started[@]}"; do alive "$c" || { report_death "$c"; return 1; }; done
    [ $SECONDS -lt $deadline ] || { log "timed out after ${seconds}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

make_pki() {
  mkdir -p "$pki"
  [ -f "$pki/admin.crt" ] && return 0
  log "creating certificates in $pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=tenantry-test-ca" 2>/dev/null
    # Serving certificate for the API server on loopback.
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # Client certificates: a cluster admin, and the controller manager's own identity (bound by
    # the bootstrap RBAC role system:kube-controller-manager).
    client_cert() { # <file> <CN> [O]
      local subj="/CN=$2"; [ -z "${3:-}" ] || subj="/O=$3$subj"
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subj" 2>/dev/null
      printf 'extendedKeyUsage=clientAuth\n' > client.ext
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile client.ext -out "$1.crt" 2>/dev/null
    }
    client_cert kube-controller-manager system:kube-controller-manager
    # The scheduler's identity (bound by the bootstrap RBAC role system:kube-scheduler) and KWOK's
    # (bound by hack/kwok/rbac.yaml).
    client_cert kube-scheduler system:kube-scheduler
    client_cert kwok kwok
    client_cert admin tenantry-admin system:masters
    # Service-account token signing keys.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() { # <file> <cert name> <port>
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tenantry-local
  cluster:
    server: https://127.0.0.1:$3
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: tenantry-local
  context: {cluster: tenantry-local, user: $2}
current-context: tenantry-local
EOF
}

start() { # <name> <binary> <args...>
  local name=$1 bin=$2; shift 2
  printf '%q ' "$bin" "$@" > "$state/$name.cmd" # for `restart`
  nohup "$bin" "$@" >>"$logs/$name.log" 2>&1 &
  echo $! > "$state/$name.pid"
  started+=("$name")
}

# Stops one component (SIGKILL with `kill`, else SIGTERM) and starts it again with the same
# arguments and data; waits until it serves again. For fault tests.
restart() { # <name> [kill]
  local name=$1 pid
  [ -f "$state/$name.cmd" ] || { log "$name was not started by this script"; return 1; }
  pid=$(pid_of "$name")
  if [ -n "$pid" ]; then
    if [ "${2:-}" = kill ]; then kill -9 "$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # A new KWOK process has an identity of its own, and takes a node over only once the node's Lease
  # is free: release the old process's Leases, so that it does at once rather than after 40 s.
  local kwok_nodes=""
  if [ "$name" = kwok ]; then
    kwok_nodes=$(kubectl_ get nodes -l type=kwok -o jsonpath='{.items[*].metadata.name}')
    # shellcheck disable=SC2086 # node names, one word each
    [ -z "$kwok_nodes" ] || kubectl_ delete lease -n kube-node-lease $kwok_nodes --ignore-not-found >/dev/null
  fi
  started=()
  nohup bash -c "exec $(cat "$state/$name.cmd")" >>"$logs/$name.log" 2>&1 &
  echo $! > "$state/$name.pid"
  started+=("$name")
  case "$name" in
    kube-apiserver) wait_for "kube-apiserver /readyz" 120 api_ready ;;
    etcd) wait_for "etcd health" 60 curl -sf -o /dev/null "$(sed -n 's/.*--listen-client-urls \([^ ]*\).*/\1/p' "$state/etcd.cmd")/health" ;;
    *) sleep 1; alive "$name" || { report_death "$name"; return 1; } ;;
  esac
  # shellcheck disable=SC2086
  [ -z "$kwok_nodes" ] || wait_for "KWOK to hold the nodes' Leases" 60 kubectl_ get lease -n kube-node-lease $kwok_nodes -o name >/dev/null 2>&1
  log "restarted $name (pid $(pid_of "$name"))"
}

up() {
  if all_running; then
    log "already running"
    echo "$nodes" > "$state/nodes.count"
    if [ "$nodes" -gt 0 ]; then
      started=(); create_nodes; wait_for "$nodes simulated nodes Ready" 120 nodes_ready
    fi
    echo "$state/kubeconfig"
    return 0
  fi
  # Something is half up (or left over from a crash): start clean rather than guess.
  down quiet
  local bin
  bin=$(bash "$repo/hack/controlplane/build.sh")
  mkdir -p "$state" "$logs"
  make_pki

  local etcd_port etcd_peer api_port kcm_port sched_port kwok_port
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port); kcm_port=$(free_port)
  sched_port=$(free_port); kwok_port=$(free_port)
  echo "$api_port" > "$state/apiserver.port"
  started=()

  log "starting etcd on 127.0.0.1:$etcd_port"
  # --unsafe-no-fsync: this cluster is disposable; fsync would make tests and benchmarks disk-bound.
  start etcd "$bin/etcd" --name tenantry --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "tenantry=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync \
    --quota-backend-bytes 8589934592 --listen-metrics-urls "" --log-level warn
  wait_for "etcd health" 60 curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$etcd_port/health"

  # Audit what Tenantry's own service account does: the RBAC test reads it to prove that every
  # verb in the ClusterRole is used; the adoption test reads the bodies of its patches to
  # governed kinds, to see the uid and resourceVersion they are guarded by. And pod creations and
  # quota creations and patches by anyone, as metadata.
  cat > "$state/audit-policy.yaml" <<AUDIT
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    users: ["system:serviceaccount:tenantry-system:tenantry"]
    verbs: [patch]
    resources:
      - {group: "", resources: [limitranges, resourcequotas]}
      - {group: policy, resources: [poddisruptionbudgets]}
  - level: Metadata
    users: ["system:serviceaccount:tenantry-system:tenantry"]
  # Who created which pod, and created or patched which quota, and when (to the microsecond):
  # the window test (tests/e2e/window.rs) orders the pod creations in a joining namespace
  # against its part's creation and Tenantry's first write to it.
  - level: Metadata
    verbs: [create]
    resources: [{group: "", resources: [pods]}]
  - level: Metadata
    verbs: [create, patch]
    resources: [{group: "", resources: [resourcequotas]}]
  - level: None
AUDIT
  log "starting kube-apiserver on https://127.0.0.1:$api_port"
  # Default admission plugins are on (NamespaceLifecycle, LimitRanger, ServiceAccount,
  # ResourceQuota, ValidatingAdmissionPolicy, ...); LimitRanger and ResourceQuota named for
  # clarity; OwnerReferencesPermissionEnforcement added, as hardened clusters have it.
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode RBAC \
    --enable-admission-plugins LimitRanger,ResourceQuota,OwnerReferencesPermissionEnforcement \
    --audit-policy-file "$state/audit-policy.yaml" --audit-log-path "$logs/audit.log" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --max-requests-inflight 1000 --max-mutating-requests-inflight 500 \
    --profiling="${TENANTRY_PROFILING:-false}"
  wait_for "kube-apiserver /readyz" 120 api_ready

  write_kubeconfig "$state/kubeconfig" admin "$api_port"
  ln -sfn "$bin" "$state/bin" # kubectl of the server's own version, for tests and users
  write_kubeconfig "$state/kube-controller-manager.kubeconfig" kube-controller-manager "$api_port"

  log "starting kube-controller-manager"
  # --controllers=*: every default controller, among them the garbage collector, namespace
  # deletion, resourcequota (status.used) and disruption (PDB status). Each runs under its own
  # service account in kube-system, as in a real cluster.
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --controllers '*' --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --leader-elect=false \
    --kube-api-qps 200 --kube-api-burst 400 \
    --concurrent-gc-syncs 20 --concurrent-namespace-syncs 10 --concurrent-resource-quota-syncs 10
  wait_for "kube-controller-manager /healthz" 60 \
    curl -skf -o /dev/null --max-time 2 "https://127.0.0.1:$kcm_port/healthz"

  # The controllers' service accounts exist once the controller manager has started them.
  KUBECONFIG="$state/kubeconfig" wait_for "the default service account" 60 \
    "$bin/kubectl" get serviceaccount default -n default -o name --request-timeout 5s >/dev/null 2>&1

  echo "$nodes" > "$state/nodes.count"
  local simulated="no nodes (TENANTRY_NODES=0)"
  if [ "$nodes" -gt 0 ]; then
    start_scheduler_and_nodes "$bin" "$sched_port" "$kwok_port"
    simulated="$nodes simulated nodes ($("$bin/kwok" --version | cut -d' ' -f1,3))"
  fi
  log "control plane ready: Kubernetes $("$bin/kube-apiserver" --version | cut -d' ' -f2), etcd v$("$bin/etcd" --version | sed -n 's/^etcd Version: //p'), $simulated"
  echo "$state/kubeconfig"
}

start_scheduler_and_nodes() { # <bin dir> <scheduler port> <kwok port>
  local bin=$1 sched_port=$2 kwok_port=$3 kwok_config=$repo/hack/kwok
  write_kubeconfig "$state/kube-scheduler.kubeconfig" kube-scheduler "$(cat "$state/apiserver.port")"
  cat > "$state/kube-scheduler.yaml" <<SCHED
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $state/kube-scheduler.kubeconfig
  qps: 200
  burst: 400
leaderElection:
  leaderElect: false
SCHED
  log "starting kube-scheduler"
  # The default profile: binds pods by their requests against the nodes' allocatable, with taints,
  # affinity and topology spread as in any cluster. Serves /healthz on loopback only.
  start kube-scheduler "$bin/kube-scheduler" --config "$state/kube-scheduler.yaml" \
    --authentication-kubeconfig "$state/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port"
  wait_for "kube-scheduler /healthz" 60 \
    curl -skf -o /dev/null --max-time 2 "https://127.0.0.1:$sched_port/healthz"

  kubectl_ apply -f "$kwok_config/rbac.yaml" >/dev/null
  write_kubeconfig "$state/kwok.kubeconfig" kwok "$(cat "$state/apiserver.port")"
  mkdir -p "$state/kwok"
  log "starting KWOK (simulated nodes; its server on 127.0.0.1:$kwok_port)"
  # KWOK_WORKDIR: nothing from ~/.kwok is read. The server (health, and the nodes' kubelet port:
  # `kubectl logs` and `exec` end there, refused) listens on loopback only.
  start kwok env KWOK_WORKDIR="$state/kwok" "$bin/kwok" --kubeconfig "$state/kwok.kubeconfig" \
    --config "$kwok_config/kwok.yaml" --config "$kwok_config/stages/node.yaml" \
    --config "$kwok_config/stages/pod.yaml" \
    --server-address "127.0.0.1:$kwok_port" --node-port "$kwok_port"
  wait_for "KWOK /healthz" 60 curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$kwok_port/healthz"

  echo "$nodes" > "$state/nodes.count"
  create_nodes
  wait_for "$nodes simulated nodes Ready" 120 nodes_ready
}

down() {
  local quiet=${1:-}
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    local pid; pid=$(pid_of "$c")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      [ -n "$quiet" ] || log "stopped $c (pid $pid)"
    fi
  done
  rm -rf "$state"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  restart) restart "${2:?component}" "${3:-}" ;;
  status)
    ok=0
    for c in "${components[@]}"; do
      if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: not running"; ok=1; fi
    done
    api_ready && echo "kube-apiserver: ready" || { echo "kube-apiserver: not ready"; ok=1; }
    if [ $ok -eq 0 ] && [ "$nodes" -gt 0 ]; then
      if nodes_ready; then echo "nodes: $nodes Ready"; else echo "nodes: fewer than $nodes Ready"; ok=1; fi
      kubectl_ get nodes -l type=kwok -o wide 2>&1 || true
    fi
    exit $ok ;;
  *) echo "usage: $0 up|down|status|restart <etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok> [kill]" >&2; exit 2 ;;
esac
