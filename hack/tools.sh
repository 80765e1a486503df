#!/usr/bin/env bash
# Build the test tools agentctl's suite needs from the Go module proxy, into a cache outside the
# checkout, and print the path of the one asked for. Built once per version; later calls are free.
#
#   hack/tools.sh actionlint      -> the path of the actionlint binary
#   hack/tools.sh kube-assets     -> a directory holding kube-apiserver and etcd (envtest's layout);
#                                    $KUBEBUILDER_ASSETS when it is set and holds both
#   hack/tools.sh gateway-crds    -> the directory of Gateway API's standard CRD files
#   hack/tools.sh helm            -> the path of the helm binary (for helm lint / helm template)
#
# AGENTCTL_TOOLS_CACHE overrides the cache (default: ${XDG_CACHE_HOME:-~/.cache}/agentctl/tools).
# kube-apiserver takes about 5 minutes on 2 cores from an empty Go module cache; etcd under one.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.6}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.1}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${AGENTCTL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentctl/tools}"

need_go() {
  command -v go >/dev/null || { echo "hack/tools.sh: go is needed to build $1" >&2; exit 1; }
}

build() {  # build <name> <package> <version>: a module with no replace directives of its own
  local name="$1" pkg="$2" version="$3"
  local dir="$CACHE/$name-$version"
  if [[ ! -x "$dir/$name" ]]; then
    need_go "$name"
    mkdir -p "$dir"
    echo "hack/tools.sh: building $name $version into $dir" >&2
    GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "$pkg@$version" >&2
  fi
  echo "$dir/$name"
}

# A main package whose own go.mod has replace directives (k8s.io/kubernetes points its staging
# modules at ./staging, etcd's server at ../api...) cannot be built with `go install pkg@version`.
# It is built from a throwaway wrapper module that requires it and pins each replaced module to its
# published version instead.
build_wrapped() {  # build_wrapped <name> <module> <version> <package> <out> <replace lines> [flags]
  local name="$1" module="$2" version="$3" pkg="$4" out="$5" replaces="$6"; shift 6
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"; trap - RETURN' RETURN  # once: a RETURN trap outlives the function
  {
    echo "module agentctl.invalid/build-$name"
    echo "go 1.24.0"
    echo "require $module $version"
    echo "$replaces"
  } >"$work/go.mod"
  echo "package main" >"$work/main.go"  # the module needs a package of its own to be buildable
  echo "hack/tools.sh: building $name $version into $(dirname "$out")" >&2
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local go build "$@" -o "$out.tmp" "$pkg" >&2)
  mv "$out.tmp" "$out"
}

module_dir() {  # module_dir <module>@<version>: download it and print where it was unpacked
  need_go "$1"
  (cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$1") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

kube_assets() {
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
      echo "$KUBEBUILDER_ASSETS"
      return
    fi
    echo "hack/tools.sh: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS holds no kube-apiserver and etcd" >&2
    exit 1
  fi
  local dir="$CACHE/kube-assets-$KUBE_VERSION-etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  if [[ ! -x "$dir/etcd" ]]; then
    local etcd_src replaces
    etcd_src="$(module_dir "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
    # ../api, ../client/pkg... -> go.etcd.io/etcd/api/v3 v3.6.6, ...
    replaces="$(sed -n 's#^[[:space:]]*\(go\.etcd\.io/etcd/[^ ]*\) => \.\./.*#replace \1 => \1 '"$ETCD_VERSION"'#p' \
      "$etcd_src/go.mod")"
    build_wrapped etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
      "$dir/etcd" "$replaces"
  fi
  if [[ ! -x "$dir/kube-apiserver" ]]; then
    local kube_src replaces minor="${KUBE_VERSION#v1.}"
    kube_src="$(module_dir "k8s.io/kubernetes@$KUBE_VERSION")"
    # k8s.io/api => ./staging/src/k8s.io/api  ->  replace k8s.io/api => k8s.io/api v0.34.4
    replaces="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#replace \1 => \1 v0.'"$minor"'#p' \
      "$kube_src/go.mod")"
    local v=k8s.io/component-base/version
    build_wrapped kube-apiserver k8s.io/kubernetes "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver \
      "$dir/kube-apiserver" "$replaces" -tags selinux,notest -trimpath \
      -ldflags "-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*}"
  fi
  echo "$dir"
}

gateway_crds() {
  local src
  src="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
  [[ -d "$src/config/crd/standard" ]] || {
    echo "hack/tools.sh: no config/crd/standard in sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" >&2
    exit 1
  }
  echo "$src/config/crd/standard"
}

mkdir -p "$CACHE"
case "${1:-}" in
  actionlint) build actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" ;;
  kube-assets) kube_assets ;;
  gateway-crds) gateway_crds ;;
  helm) build helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" ;;
  *) echo "usage: hack/tools.sh actionlint|kube-assets|gateway-crds|helm" >&2; exit 2 ;;
esac
