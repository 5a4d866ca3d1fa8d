#!/usr/bin/env bash
# Print the path of a toxiproxy-server binary, building it once with `go install` from the Go
# module proxy into a cache outside the repository; later calls reuse the cached binary.
#
#   TOXIPROXY="$(tools/toxiproxy.sh)" && "$TOXIPROXY" -host 127.0.0.1 -port 8474
#
# Overrides: TOXIPROXY_VERSION (default below), KAFKA_RPC_GATEWAY_TOXIPROXY_BIN (cache directory).
# Build output goes to stderr so that stdout carries only the path.
set -euo pipefail

TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-rpc-gateway"
GO_BIN="${KAFKA_RPC_GATEWAY_TOXIPROXY_BIN:-$CACHE_ROOT/go-bin/toxiproxy-$TOXIPROXY_VERSION}"
SERVER_BIN="$GO_BIN/toxiproxy-server"

cached_version() {
    "$SERVER_BIN" -version 2>/dev/null | awk '{ print $NF }' || true
}

if [[ ! -x "$SERVER_BIN" || "$(cached_version)" != "$TOXIPROXY_VERSION" ]]; then
    GO="$(command -v go || echo /usr/local/go/bin/go)"
    if [[ ! -x "$GO" ]]; then
        echo "tools/toxiproxy.sh: 'go' is not on PATH; install Go (https://go.dev/dl/) to build toxiproxy" >&2
        exit 1
    fi
    echo "tools/toxiproxy.sh: building toxiproxy $TOXIPROXY_VERSION into $GO_BIN" >&2
    mkdir -p "$GO_BIN" "$CACHE_ROOT"
    cd "$CACHE_ROOT"
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
    # The version string is normally stamped by goreleaser; set it the same way so -version works.
    ldflags="-w -s -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION"
    # A private GOBIN: the build never lands in the repository or in ~/go/bin.
    GOBIN="$GO_BIN" "$GO" install -trimpath -ldflags "$ldflags" \
        "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2
    mv "$GO_BIN/server" "$SERVER_BIN"
fi

if [[ ! -x "$SERVER_BIN" ]]; then
    echo "tools/toxiproxy.sh: $SERVER_BIN is missing after the build" >&2
    exit 1
fi
echo "$SERVER_BIN"
