#!/usr/bin/env bash
# Build the test tools agentctl's suite needs from the Go module proxy, into a cache outside the
# checkout, and print the path of the one asked for. Built once per version; later calls are free.
#
#   hack/tools.sh actionlint      -> prints the path of the actionlint binary
#
# AGENTCTL_TOOLS_CACHE overrides the cache (default: ${XDG_CACHE_HOME:-~/.cache}/agentctl/tools).
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
CACHE="${AGENTCTL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentctl/tools}"

build() {  # build <name> <module path>@<version>
  local name="$1" pkg="$2" version="$3"
  local dir="$CACHE/$name-$version"
  if [[ ! -x "$dir/$name" ]]; then
    command -v go >/dev/null || { echo "hack/tools.sh: go is needed to build $name" >&2; exit 1; }
    mkdir -p "$dir"
    echo "hack/tools.sh: building $name $version into $dir" >&2
    GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "$pkg@$version" >&2
  fi
  echo "$dir/$name"
}

case "${1:-}" in
  actionlint) build actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" ;;
  *) echo "usage: hack/tools.sh actionlint" >&2; exit 2 ;;
esac
