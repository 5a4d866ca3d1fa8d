#!/usr/bin/env bash
# Print the path of a jaeger binary (Jaeger v2: OTLP in, query API and UI out), building it
# once from the Go module proxy into a cache outside the repository; later calls reuse it.
#
#   JAEGER="$(tools/jaeger.sh)" && "$JAEGER" --config devstack/jaeger.yaml
#
# `go install github.com/jaegertracing/jaeger/cmd/jaeger@v...` is refused (Jaeger's go.mod has a
# replace directive), so tools/jaeger/ is a wrapper module that names the program as a tool; its
# go.sum pins every dependency. The UI's assets are not in the Go module (Jaeger's release builds
# them with npm): this binary serves the query API and a placeholder page at /.
#
# Overrides: KAFKA_RPC_GATEWAY_JAEGER_BIN (cache directory). Build output goes to stderr so that
# stdout carries only the path. Needs Go >= 1.26.
set -euo pipefail

MODULE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/jaeger" && pwd)"
JAEGER_VERSION="$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2 }' "$MODULE_DIR/go.mod")"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-rpc-gateway"
GO_BIN="${KAFKA_RPC_GATEWAY_JAEGER_BIN:-$CACHE_ROOT/go-bin/jaeger-$JAEGER_VERSION}"
JAEGER_BIN="$GO_BIN/jaeger"

cached_version() {
    "$JAEGER_BIN" version 2>/dev/null | sed -n 's/.*"gitVersion":"\([^"]*\)".*/\1/p' || true
}

if [[ ! -x "$JAEGER_BIN" || "$(cached_version)" != "$JAEGER_VERSION" ]]; then
    GO="$(command -v go || echo /usr/local/go/bin/go)"
    if [[ ! -x "$GO" ]]; then
        echo "tools/jaeger.sh: 'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/) to build Jaeger" >&2
        exit 1
    fi
    echo "tools/jaeger.sh: building jaeger $JAEGER_VERSION into $GO_BIN (first run: about 6 min on 2 cores)" >&2
    mkdir -p "$GO_BIN"
    cd "$MODULE_DIR"
    export GOWORK=off CGO_ENABLED=0
    # The version is normally stamped by Jaeger's Makefile; set it the same way so `version` works.
    ldflags="-w -s -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION"
    # A private GOBIN: the build never lands in the repository or in ~/go/bin.
    GOBIN="$GO_BIN" "$GO" install -mod=readonly -trimpath -ldflags "$ldflags" tool >&2
fi

if [[ "$(cached_version)" != "$JAEGER_VERSION" ]]; then
    echo "tools/jaeger.sh: $JAEGER_BIN does not report version $JAEGER_VERSION" >&2
    exit 1
fi
echo "$JAEGER_BIN"
