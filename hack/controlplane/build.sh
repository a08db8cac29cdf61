#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl (the client matching the server),
# the kstatus checker and the GitOps checkers of hack/gitops (helm, flux-ssa) from the Go module
# proxy into a cache outside the work tree, keyed by version: a second run finds them and returns in milliseconds.
# Prints the directory holding the binaries on its last line of stdout. Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${TENANTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantry}
k8s_dir="$cache_root/bin/kubernetes-v${KUBERNETES_VERSION}"
etcd_dir="$cache_root/bin/etcd-v${ETCD_VERSION}"
bin_dir="$cache_root/bin/controlplane-k8s${KUBERNETES_VERSION}-etcd${ETCD_VERSION}"

log() { echo "[controlplane build] $*" >&2; }

# go build -v names each package as it compiles it; show a running count instead of thousands of lines.
build_with_progress() { # <module dir> <output> <package> [ldflags]
  local dir=$1 out=$2 pkg=$3 ldflags=${4:-}
  local total started n=0
  started=$(date +%s)
  total=$(cd "$dir" && go list -deps "$pkg" 2>/dev/null | wc -l)
  log "building $(basename "$out") ($total packages; cold builds take several minutes on 2 cores)"
  (cd "$dir" && CGO_ENABLED=0 go build -v -trimpath -tags selinux,notest -ldflags "-s -w $ldflags" \
      -o "$out.tmp" "$pkg" 2>&1) | while IFS= read -r line; do
        case "$line" in
          *" "*) echo "$line" >&2 ;; # package paths have no spaces: anything else is a message
          *) n=$((n + 1)); if [ $((n % 100)) -eq 0 ]; then
               log "  $(basename "$out"): $n/$total packages compiled, $(( $(date +%s) - started ))s"; fi ;;
        esac
      done
  [ "${PIPESTATUS[0]}" -eq 0 ] && [ -f "$out.tmp" ] || { log "build of $pkg failed"; return 1; }
  mv "$out.tmp" "$out"
  log "built $(basename "$out") in $(( $(date +%s) - started ))s ($(du -h "$out" | cut -f1))"
}

export GOFLAGS=-mod=mod
mkdir -p "$k8s_dir" "$etcd_dir" "$bin_dir"

if [ ! -x "$etcd_dir/etcd" ]; then
  build_with_progress "$here/etcd" "$etcd_dir/etcd" go.etcd.io/etcd/server/v3 \
    "-X go.etcd.io/etcd/api/v3/version.GitSHA=v${ETCD_VERSION}"
fi

k8s_minor=${KUBERNETES_VERSION#1.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=v${KUBERNETES_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${k8s_minor}"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for component in kube-apiserver kube-controller-manager kubectl; do
  if [ ! -x "$k8s_dir/$component" ]; then
    build_with_progress "$here/kubernetes" "$k8s_dir/$component" "k8s.io/kubernetes/cmd/$component" "$k8s_ldflags"
  fi
done

# kstatus checker (hack/kstatus): keyed by its source and dependencies.
kstatus_key=$(cat "$here/../kstatus/main.go" "$here/../kstatus/go.sum" | sha256sum | cut -c1-12)
kstatus_bin="$cache_root/bin/kstatus-$kstatus_key/kstatus"
if [ ! -x "$kstatus_bin" ]; then
  mkdir -p "$(dirname "$kstatus_bin")"
  build_with_progress "$here/../kstatus" "$kstatus_bin" . ""
fi

ln -sf "$etcd_dir/etcd" "$bin_dir/etcd"
ln -sf "$kstatus_bin" "$bin_dir/kstatus"
ln -sf "$k8s_dir/kube-apiserver" "$bin_dir/kube-apiserver"
ln -sf "$k8s_dir/kube-controller-manager" "$bin_dir/kube-controller-manager"
ln -sf "$k8s_dir/kubectl" "$bin_dir/kubectl"
# helm and the Flux engine checker (hack/gitops/build.sh, sourced: same helpers and cache).
# shellcheck source=../gitops/build.sh
source "$here/../gitops/build.sh"
echo "$bin_dir"
