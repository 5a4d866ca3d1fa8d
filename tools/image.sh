#!/usr/bin/env bash
# Build the container image from the repository's Dockerfile without Docker, a daemon or Docker Hub,
# and print its reference (localhost/kafka-rpc-gateway:<pyproject version>):
#
#   IMAGE="$(tools/image.sh)"
#   tools/image.sh buildah push "$IMAGE" docker://ghcr.io/<org>/kafka-rpc-gateway:0.1.0
#   tools/image.sh buildah images           # any buildah command, on this script's storage
#
# buildah (Debian's package) builds the Dockerfile as is, with --build-arg PYTHON_IMAGE set to a base
# made here instead of python:3.11-slim: Debian bookworm with Debian's python3 (3.11), python3-venv,
# ca-certificates, netbase, tzdata and passwd, by mmdebstrap from Debian's mirror. The base is
# built once per suite and package list (its tarball and the image are cached); the image is
# rebuilt on every call, from buildah's layer cache when nothing changed.
# First run about 2 min on 2 cores (the base 1 to 2.5 min, as fast as the mirror; the image 1 min);
# later, with the base cached, about 35 s, or 15 s after a change to the code alone (the
# dependencies' layer is reused), 5 s when nothing changed.
#
# Runs as root (apt-get installs buildah and mmdebstrap when missing, as .ci/run does for Java; the
# RUN steps use buildah's chroot isolation, which needs no OCI runtime nor cgroups). Everything stays
# under ${XDG_CACHE_HOME:-~/.cache}/kafka-rpc-gateway/image (the base tarball; the image store and
# its containers/storage-<driver>.conf, which buildah and podman read through CONTAINERS_STORAGE_CONF)
# except the store's run-time state (locks, mounts), which belongs on a tmpfs: /run/kafka-rpc-gateway.
# /var/lib/containers is left alone. The RUN steps see this machine's CA bundle (a TLS-inspecting
# proxy's CA, say) mounted over the base's; it is not part of the image.
#
# Overrides: KAFKA_RPC_GATEWAY_IMAGE_CACHE (cache directory), KAFKA_RPC_GATEWAY_STORAGE_DRIVER
# (overlay, or vfs where the cache is itself on overlayfs; the default picks), BUILDAH_ISOLATION
# (chroot), KAFKA_RPC_GATEWAY_BUILD_CA (the CA bundle for the RUN steps; empty: none),
# KAFKA_RPC_GATEWAY_REFRESH_BASE=1 (the base again, with today's packages), DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR. Build output goes to stderr so that stdout carries only
# the image reference.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KAFKA_RPC_GATEWAY_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-rpc-gateway/image}"
NAME=localhost/kafka-rpc-gateway

say() { echo "tools/image.sh: $*" >&2; }

if [[ "$(id -u)" != 0 ]]; then
    say "needs root (buildah's chroot isolation, mmdebstrap, apt-get); run it with sudo"
    exit 1
fi
if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
    say "installing buildah and mmdebstrap from Debian's packages"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap; } >&2
fi

# The store: its own storage.conf, so that neither /etc/containers/storage.conf nor
# /var/lib/containers take part. overlay is native as root (one copy per layer changed); vfs (a
# full copy of the file system per layer) where overlay cannot stack, on an overlayfs cache.
mkdir -p "$CACHE"
DRIVER="${KAFKA_RPC_GATEWAY_STORAGE_DRIVER:-}"
if [[ -z "$DRIVER" ]]; then
    DRIVER=overlay
    [[ "$(stat -f -c %T "$CACHE")" == overlayfs ]] && DRIVER=vfs
fi
export CONTAINERS_STORAGE_CONF="$CACHE/containers/storage-$DRIVER.conf"
mkdir -p "$CACHE/containers/$DRIVER" /run/kafka-rpc-gateway
cat >"$CONTAINERS_STORAGE_CONF.tmp" <<EOF
# Written by tools/image.sh: the store of its images.
[storage]
driver = "$DRIVER"
graphroot = "$CACHE/containers/$DRIVER"
runroot = "/run/kafka-rpc-gateway/containers-$DRIVER"
EOF
mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

if [[ "${1:-}" == buildah ]]; then
    shift
    exec buildah "$@"
fi

# One build at a time: the base tarball and the tag.
exec 9>"$CACHE/lock"
flock 9

# The base. Its key is everything that decides its contents except time: Debian's security updates
# arrive with a new package list, or with KAFKA_RPC_GATEWAY_REFRESH_BASE=1 (build it again).
SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES=python3,python3-venv,ca-certificates,netbase,tzdata,passwd
MMDEBSTRAP=(
    mmdebstrap --variant=apt --include="$PACKAGES"
    # merged /usr by usr-is-merged, not by the usrmerge package (which brings 45 MB of perl)
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
    "$SUITE"
)
MIRRORS=(
    "deb $DEBIAN_MIRROR $SUITE main"
    "deb $DEBIAN_MIRROR $SUITE-updates main"
    "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
)
KEY="$(printf '%s\n' "${MMDEBSTRAP[@]}" "${MIRRORS[@]}" | sha256sum | cut -c1-12)"
BASE="localhost/kafka-rpc-gateway-base:$SUITE-$KEY"
TARBALL="$CACHE/base-$SUITE-$KEY.tar"

fresh=0
if [[ ! -s "$TARBALL" || "${KAFKA_RPC_GATEWAY_REFRESH_BASE:-}" == 1 ]]; then
    say "building the base ($SUITE: $PACKAGES) into $TARBALL (1 to 2.5 min)"
    rm -f "$TARBALL.tmp.tar"
    "${MMDEBSTRAP[@]}" "$TARBALL.tmp.tar" "${MIRRORS[@]}" >&2
    mv "$TARBALL.tmp.tar" "$TARBALL"
    fresh=1
fi
if [[ "$fresh" == 1 ]] || ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    say "importing $TARBALL as $BASE"
    container="$(buildah from scratch)"
    trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
    buildah add --quiet "$container" "$TARBALL" / >&2
    # As python:3.11-slim has them; the Dockerfile sets what it needs.
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd '["python3"]' "$container"
    buildah commit --quiet --rm "$container" "$BASE" >&2
    trap - EXIT
fi

# The image.
VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$ROOT/pyproject.toml")"
IMAGE="$NAME:$VERSION"
CA="${KAFKA_RPC_GATEWAY_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}"
VOLUMES=()
if [[ -n "$CA" && -s "$CA" ]]; then
    VOLUMES=(--volume "$(realpath "$CA"):/etc/ssl/certs/ca-certificates.crt:ro")
fi
say "building $IMAGE from $ROOT/Dockerfile on $BASE ($DRIVER storage, $BUILDAH_ISOLATION isolation)"
buildah bud --layers --pull=never --isolation "$BUILDAH_ISOLATION" \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg VERSION="$VERSION" \
    "${VOLUMES[@]}" --tag "$IMAGE" --file "$ROOT/Dockerfile" "$ROOT" >&2
echo "$IMAGE"
