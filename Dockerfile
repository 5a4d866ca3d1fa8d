# syntax=docker/dockerfile:1
# One image for the gateway (`python -m gateway`) and the workers (`python -m workers`), used by
# charts/kafka-rpc-gateway. Build and push: see docs/KUBERNETES.md.
#
#   docker build -t ghcr.io/<org>/kafka-rpc-gateway:0.1.0 .
#   tools/image.sh        # without Docker or Docker Hub: buildah, on a base built from Debian's packages
#
# Your own handlers: build FROM this image, `pip install` your package, and set worker.handlers.

# Pin by digest in CI for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...
# Any Debian-based image with Python 3.11+ as `python3` (and the venv module) will do as the base:
# tools/image.sh passes one made from Debian bookworm's python3.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# Downloads trust the base's CA store, /etc/ssl/certs (the same Mozilla roots as pip's and uv's own),
# so that a build behind a TLS-inspecting proxy works when that proxy's CA is mounted there for the
# RUN steps (tools/image.sh mounts the build machine's bundle); nothing of it stays in the image.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    UV_SYSTEM_CERTS=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# uv from its hash-pinned requirement, then exactly uv.lock: the same install as `make`, without
# the dev extra and not editable. All runtime dependencies ship manylinux wheels: no compiler.
# uv goes into a venv of its own, left in this stage: Debian's python3 refuses a global
# `pip install` (PEP 668), and has no `python` command (hence `python3` in this stage).
COPY tools/uv.txt ./tools/uv.txt
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --require-hashes --no-deps -r tools/uv.txt
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
# The dependencies first, in a layer that a change to the code alone reuses. The venv keeps its
# pip (--inexact), so images built FROM this one can `pip install` handlers into it.
COPY pyproject.toml uv.lock ./
RUN python3 -m venv /opt/venv \
    && /opt/uv/bin/uv sync --frozen --no-editable --inexact --no-install-project
# Then the project: only what the package build reads (pyproject.toml declares README.md as the
# long description).
COPY README.md ./
COPY kafkarpc ./kafkarpc
COPY gateway ./gateway
COPY workers ./workers
# uv's lock file in the venv is world-writable (0666): the image has no such file.
RUN /opt/uv/bin/uv sync --frozen --no-editable --inexact \
    && rm -f /opt/venv/.lock \
    && /opt/venv/bin/python -c "import gateway.app, workers.runtime, confluent_kafka, uvloop, httptools"

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kafka-rpc-gateway" \
      org.opencontainers.image.description="Synchronous HTTP request-reply over Apache Kafka: gateway and workers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The same uid/gid as the chart's securityContext (runAsUser/runAsGroup/fsGroup 1001).
RUN groupadd --system --gid 1001 app \
    && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
# The venv's python is a symlink to the base's python3, the same in both stages.
COPY --from=build /opt/venv /opt/venv
# No .pyc writes at run time (the root filesystem is read-only in Kubernetes; uv compiled them
# at build time), unbuffered JSON logs, and a writable HOME/TMPDIR on the /tmp emptyDir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 1001:1001
# Gateway HTTP (API, /metrics, /healthz, /readyz) and worker /metrics, /healthz, /readyz.
EXPOSE 8080 9090
CMD ["python", "-m", "gateway"]
