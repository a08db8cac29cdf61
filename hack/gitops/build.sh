# Sourced by hack/controlplane/build.sh (uses its build_with_progress, cache_root and bin_dir):
# builds the GitOps checkers of hack/gitops into the same cache, keyed like kstatus, and links them
# next to the control plane binaries.
#   helm  helm.sh/helm/v3 at the version go.mod pins (charts/tenantry is linted and rendered by it)
#   flux-ssa  hack/gitops/flux: Flux kustomize-controller's apply, prune, wait and drift engine
gitops_dir="$here/../gitops"
helm_version=$(cd "$gitops_dir" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
helm_bin="$cache_root/bin/helm-$helm_version/helm"
if [ ! -x "$helm_bin" ]; then
  mkdir -p "$(dirname "$helm_bin")"
  # As helm's own Makefile stamps them: its version, and the Kubernetes version it renders for
  # (.Capabilities.KubeVersion) taken from its client-go.
  client_go=$(cd "$gitops_dir" && go list -m -f '{{.Version}}' k8s.io/client-go)
  k8s_minor_of_helm=$(echo "$client_go" | cut -d. -f2)
  helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor_of_helm"
  done
  build_with_progress "$gitops_dir" "$helm_bin" helm.sh/helm/v3/cmd/helm "$helm_ldflags"
fi

flux_key=$(cat "$gitops_dir/flux/main.go" "$gitops_dir/go.sum" | sha256sum | cut -c1-12)
flux_bin="$cache_root/bin/flux-ssa-$flux_key/flux-ssa"
if [ ! -x "$flux_bin" ]; then
  mkdir -p "$(dirname "$flux_bin")"
  build_with_progress "$gitops_dir" "$flux_bin" ./flux ""
fi
ln -sf "$helm_bin" "$bin_dir/helm"
ln -sf "$flux_bin" "$bin_dir/flux-ssa"
