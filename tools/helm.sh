#!/usr/bin/env bash
# Print the path of a real helm binary, building it once with `go install` from the Go module
# proxy into a cache outside the repository; later calls reuse the cached binary.
#
#   HELM="$(tools/helm.sh)" && "$HELM" lint --strict charts/kafka-rpc-gateway
#
# Overrides: HELM_VERSION (default below), KAFKA_RPC_GATEWAY_GO_BIN (cache directory).
# Build output goes to stderr so that stdout carries only the path. Needs Go >= 1.26.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-rpc-gateway"
GO_BIN="${KAFKA_RPC_GATEWAY_GO_BIN:-$CACHE_ROOT/go-bin/helm-$HELM_VERSION}"
HELM_BIN="$GO_BIN/helm"

cached_version() {
    "$HELM_BIN" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ ! -x "$HELM_BIN" || "$(cached_version)" != "$HELM_VERSION" ]]; then
    if ! command -v go >/dev/null; then
        echo "tools/helm.sh: 'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/) to build helm" >&2
        exit 1
    fi
    echo "tools/helm.sh: building helm $HELM_VERSION into $GO_BIN (first run takes a few minutes)" >&2
    mkdir -p "$GO_BIN"
    cd "$CACHE_ROOT"
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
    # Plain `go install` skips the release ldflags, leaving helm's default Kubernetes version at
    # 1.20 (below this chart's kubeVersion). Set them as helm's Makefile does: the version, and the
    # Kubernetes minor of the client-go that helm release is built against.
    go_mod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$go_mod")"   # e.g. v0.37.0
    k8s_minor="$(echo "$client_go" | cut -d. -f2)"
    if [[ -z "$k8s_minor" ]]; then
        echo "tools/helm.sh: cannot find the k8s.io/client-go version in $go_mod" >&2
        exit 1
    fi
    ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
    done
    # A private GOBIN: the build never lands in the repository or in ~/go/bin.
    GOBIN="$GO_BIN" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi

# Fail here, not in a caller, if the cached binary is broken (e.g. a truncated build).
if [[ "$(cached_version)" != "$HELM_VERSION" ]]; then
    echo "tools/helm.sh: $HELM_BIN does not report version $HELM_VERSION" >&2
    exit 1
fi
echo "$HELM_BIN"
