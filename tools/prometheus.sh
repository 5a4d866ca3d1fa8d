#!/usr/bin/env bash
# Print the directory holding real `prometheus` and `promtool` binaries, building them once with
# `go install` from the Go module proxy into a cache outside the repository; later calls reuse them.
#
#   PROM_DIR="$(tools/prometheus.sh)" && "$PROM_DIR/promtool" check rules rules.yaml
#   "$PROM_DIR/prometheus" --config.file=prometheus.yml --web.listen-address=127.0.0.1:9091
#
# The directory, not one path, because the tests need both: promtool checks and unit-tests the
# chart's rules, prometheus scrapes a running gateway and worker.
#
# The web UI's assets are not part of the Go module (they are built with npm and compiled in only
# with the `builtinassets` tag), so this prometheus answers the UI's pages with errors. The HTTP
# API (/api/v1/query, /api/v1/query_range, /api/v1/targets, /api/v1/alerts), scraping and rule
# evaluation are all there, and they are all the tests and the docs use.
#
# Overrides: PROMETHEUS_VERSION (the Go module version of github.com/prometheus/prometheus,
# default below; v0.3XX.Y is Prometheus 3.XX.Y), KAFKA_RPC_GATEWAY_PROMETHEUS_BIN (cache directory).
# Build output goes to stderr so that stdout carries only the directory. Needs Go >= 1.26.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-rpc-gateway"
GO_BIN="${KAFKA_RPC_GATEWAY_PROMETHEUS_BIN:-$CACHE_ROOT/go-bin/prometheus-$PROMETHEUS_VERSION}"
MODULE=github.com/prometheus/prometheus

# The release number the binaries report: the module's VERSION file says it (3.16.0 for
# v0.316.0); the mapping is computed here only to check the cache without touching the network.
release_of() {
    local minor patch
    IFS=. read -r _ minor patch <<<"${1#v}"
    echo "$((minor / 100)).$((minor % 100)).$patch"
}
RELEASE="$(release_of "$PROMETHEUS_VERSION")"

cached_version() {  # "prometheus, version 3.16.0 (branch: ...)" -> 3.16.0
    "$GO_BIN/$1" --version 2>/dev/null | awk 'NR == 1 { print $3 }' || true
}

cached() {
    [[ -x "$GO_BIN/prometheus" && -x "$GO_BIN/promtool" \
        && "$(cached_version prometheus)" == "$RELEASE" && "$(cached_version promtool)" == "$RELEASE" ]]
}

if ! cached; then
    GO="$(command -v go || echo /usr/local/go/bin/go)"
    if [[ ! -x "$GO" ]]; then
        echo "tools/prometheus.sh: 'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/) to build prometheus" >&2
        exit 1
    fi
    echo "tools/prometheus.sh: building prometheus and promtool $RELEASE ($MODULE@$PROMETHEUS_VERSION)" \
        "into $GO_BIN (first run takes several minutes)" >&2
    mkdir -p "$GO_BIN" "$CACHE_ROOT"
    cd "$CACHE_ROOT"
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
    # Plain `go install` leaves the version empty (Prometheus' Makefile stamps it with promu); stamp
    # it from the module's own VERSION file, so --version and /api/v1/status/buildinfo tell the truth.
    module_dir="$("$GO" mod download -json "$MODULE@$PROMETHEUS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
    version="$(tr -d '[:space:]' <"$module_dir/VERSION")"
    if [[ "$version" != "$RELEASE" ]]; then
        echo "tools/prometheus.sh: $MODULE@$PROMETHEUS_VERSION says it is $version, not $RELEASE" >&2
        exit 1
    fi
    ldflags="-w -s -X github.com/prometheus/common/version.Version=$version"
    # A private GOBIN: the build never lands in the repository or in ~/go/bin.
    GOBIN="$GO_BIN" "$GO" install -trimpath -ldflags "$ldflags" \
        "$MODULE/cmd/prometheus@$PROMETHEUS_VERSION" "$MODULE/cmd/promtool@$PROMETHEUS_VERSION" >&2
fi

# Fail here, not in a caller, if a cached binary is broken (e.g. a truncated build).
if ! cached; then
    echo "tools/prometheus.sh: $GO_BIN/prometheus or promtool does not report version $RELEASE" >&2
    exit 1
fi
echo "$GO_BIN"
