#!/usr/bin/env bash
# Print the directory of a real Kubernetes control plane for the chart's install tests, building
# it once from the Go module proxy into a cache outside the repository; later calls reuse it:
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler   (tools/kubernetes/go.mod)
#   kwok, and its stage definitions in stages/                      (sigs.k8s.io/kwok)
#   crds/: the prometheus-operator's and KEDA's CRDs               (their Go modules)
#
#   K8S="$(tools/kubernetes.sh)" && "$K8S/kube-apiserver" --version
#   tools/kubernetes.sh --check     # the path if built, else exit 1 (no build: for tests)
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces its staging modules with local
# paths), so tools/kubernetes/ is a wrapper module that replaces each with its published release
# and names the programs as tools; its go.sum pins every dependency. etcd is the version that
# Kubernetes release itself requires. kwok (a simulated node) installs with plain `go install`.
#
# Cold build on 2 cores: about 15 min (kube-apiserver about 10) and several GB of Go build cache.
# Overrides: KAFKA_RPC_GATEWAY_KUBERNETES_BIN (cache directory). Build output goes to stderr so
# that stdout carries only the path. Needs Go >= 1.26.
set -euo pipefail

MODULE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/kubernetes" && pwd)"
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$MODULE_DIR/go.mod")"
KWOK_VERSION="v0.8.0"
PROMETHEUS_OPERATOR_VERSION="v0.85.0"
KEDA_VERSION="v2.21.0"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-rpc-gateway"
BIN_DIR="${KAFKA_RPC_GATEWAY_KUBERNETES_BIN:-$CACHE_ROOT/go-bin/kubernetes-$K8S_VERSION-kwok-$KWOK_VERSION-crds-$PROMETHEUS_OPERATOR_VERSION-$KEDA_VERSION}"
STAMP="$BIN_DIR/.complete"
if [[ -z "$K8S_VERSION" ]]; then
    echo "tools/kubernetes.sh: no k8s.io/kubernetes version in $MODULE_DIR/go.mod" >&2
    exit 1
fi
# What the build is of: a change to any version or pinned dependency rebuilds (go install then
# relinks only what changed).
KEY="$K8S_VERSION kwok $KWOK_VERSION crds $PROMETHEUS_OPERATOR_VERSION $KEDA_VERSION"
KEY+=" $(cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" | sha256sum | cut -c1-16)"

if [[ "${1:-}" == "--check" && "$(cat "$STAMP" 2>/dev/null)" != "$KEY" ]]; then
    echo "tools/kubernetes.sh: the control plane is not built yet; run \`make kubernetes-tools\`" \
        "(about 15 min on 2 cores the first time)" >&2
    exit 1
fi

GO="$(command -v go || echo /usr/local/go/bin/go)"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$KEY" ]]; then
    if [[ ! -x "$GO" ]]; then
        echo "tools/kubernetes.sh: 'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/)" >&2
        exit 1
    fi
    echo "tools/kubernetes.sh: building Kubernetes $K8S_VERSION and kwok $KWOK_VERSION into $BIN_DIR" \
        "(first run: about 15 min on 2 cores)" >&2
    mkdir -p "$BIN_DIR" "$CACHE_ROOT"
    rm -f "$STAMP"
    export GOWORK=off CGO_ENABLED=0
    # The version Kubernetes' own build stamps (hack/lib/version.sh): helm checks the chart's
    # kubeVersion against what the API server reports.
    minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    ldflags="-w -s"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean"
    done
    # A private GOBIN: the build never lands in the repository or in ~/go/bin.
    (cd "$MODULE_DIR" && GOBIN="$BIN_DIR" "$GO" install -mod=readonly -trimpath -ldflags "$ldflags" tool >&2)
    mv "$BIN_DIR/server" "$BIN_DIR/etcd"   # the etcd program is the package go.etcd.io/etcd/server/v3
    (cd "$CACHE_ROOT" && GOBIN="$BIN_DIR" GOFLAGS=-mod=mod "$GO" install -trimpath -ldflags "-w -s" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2)
    module_dir() {
        local dir
        dir="$(cd "$CACHE_ROOT" && GOFLAGS=-mod=mod "$GO" mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
        if [[ ! -d "$dir" ]]; then
            echo "tools/kubernetes.sh: could not download the Go module $1" >&2
            exit 1
        fi
        echo "$dir"
    }
    # kwok's lifecycles (a Ready node that renews its lease, Running and Ready pods, deletion)
    # ship as YAML in its module; so do the operators' CRDs.
    kwok="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")/kustomize/stage"
    operator="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
    keda="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
    rm -rf "$BIN_DIR/stages" "$BIN_DIR/crds" && mkdir -p "$BIN_DIR/stages" "$BIN_DIR/crds"
    cp "$kwok"/node/fast/node-*.yaml "$kwok"/node/heartbeat-with-lease/node-*.yaml "$kwok"/pod/fast/pod-*.yaml \
        "$BIN_DIR/stages/"
    cp "$operator"/example/prometheus-operator-crd/*.yaml "$keda"/config/crd/bases/keda.sh_*.yaml "$BIN_DIR/crds/"
    chmod -R u+w "$BIN_DIR/stages" "$BIN_DIR/crds"
    echo "$KEY" >"$STAMP"
fi

# Fail here, not in a caller, if the cache is broken (e.g. a truncated build).
for program in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    if [[ ! -x "$BIN_DIR/$program" ]]; then
        echo "tools/kubernetes.sh: $BIN_DIR/$program is missing; delete $BIN_DIR to rebuild" >&2
        exit 1
    fi
done
for part in stages/node-initialize.yaml stages/pod-ready.yaml crds/keda.sh_scaledobjects.yaml \
    crds/monitoring.coreos.com_servicemonitors.yaml; do
    if [[ ! -s "$BIN_DIR/$part" ]]; then
        echo "tools/kubernetes.sh: $BIN_DIR/$part is missing; delete $BIN_DIR to rebuild" >&2
        exit 1
    fi
done
if ! "$BIN_DIR/kube-apiserver" --version | grep -qx "Kubernetes $K8S_VERSION"; then
    echo "tools/kubernetes.sh: $BIN_DIR/kube-apiserver does not report $K8S_VERSION" >&2
    exit 1
fi
echo "$BIN_DIR"
