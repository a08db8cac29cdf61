#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (the client matching
# the server), KWOK (hack/kwok: the simulated nodes), the kstatus checker and the GitOps checkers of
# hack/gitops (helm, flux-ssa) from the Go module proxy into a cache outside the work tree, keyed by
# version: a second run finds them and returns in milliseconds.
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
  # A temporary name of this run's own: two builds at once (two checkouts, or `make test` beside
  # `make controlplane`) must not move each other's half-written output.
  local tmp="$out.tmp.$$"
  (cd "$dir" && CGO_ENABLED=0 go build -v -trimpath -tags selinux,notest -ldflags "-s -w $ldflags" \
      -o "$tmp" "$pkg" 2>&1) | while IFS= read -r line; do
        case "$line" in
          *" "*) echo "$line" >&2 ;; # package paths have no spaces: anything else is a message
          *) n=$((n + 1)); if [ $((n % 100)) -eq 0 ]; then
               log "  $(basename "$out"): $n/$total packages compiled, $(( $(date +%s) - started ))s"; fi ;;
        esac
      done
  [ "${PIPESTATUS[0]}" -eq 0 ] && [ -f "$tmp" ] || { rm -f "$tmp"; log "build of $pkg failed"; return 1; }
  mv "$tmp" "$out"
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
for component in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
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

# KWOK (hack/kwok): the simulated nodes of the test cluster. Keyed by its version and dependencies.
kwok_dir="$here/../kwok"
kwok_version=$(cd "$kwok_dir" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
kwok_key=$(cat "$kwok_dir/go.mod" "$kwok_dir/go.sum" | sha256sum | cut -c1-12)
kwok_bin="$cache_root/bin/kwok-$kwok_version-$kwok_key/kwok"
if [ ! -x "$kwok_bin" ]; then
  mkdir -p "$(dirname "$kwok_bin")"
  build_with_progress "$kwok_dir" "$kwok_bin" sigs.k8s.io/kwok/cmd/kwok ""
fi

ln -sf "$etcd_dir/etcd" "$bin_dir/etcd"
ln -sf "$kwok_bin" "$bin_dir/kwok"
ln -sf "$kstatus_bin" "$bin_dir/kstatus"
ln -sf "$k8s_dir/kube-apiserver" "$bin_dir/kube-apiserver"
ln -sf "$k8s_dir/kube-controller-manager" "$bin_dir/kube-controller-manager"
ln -sf "$k8s_dir/kube-scheduler" "$bin_dir/kube-scheduler"
ln -sf "$k8s_dir/kubectl" "$bin_dir/kubectl"
# helm and the Flux engine checker (hack/gitops/build.sh, sourced: same helpers and cache).
# shellcheck source=../gitops/build.sh
source "$here/../gitops/build.sh"
echo "$bin_dir"
