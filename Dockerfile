# syntax=docker/dockerfile:1
# One image for the gateway (`python -m gateway`) and the workers (`python -m workers`), used by
# charts/kafka-rpc-gateway. Build and push: see docs/KUBERNETES.md.
#
#   docker build -t ghcr.io/<org>/kafka-rpc-gateway:0.1.0 .
#
# Your own handlers: build FROM this image, `pip install` your package, and set worker.handlers.

# Pin by digest in CI for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# uv from its hash-pinned requirement, then exactly uv.lock: the same install as `make`, without
# the dev extra and not editable. All runtime dependencies ship manylinux wheels: no compiler.
COPY tools/uv.txt ./tools/uv.txt
RUN pip install --require-hashes --no-deps -r tools/uv.txt
# Only what the package build reads (pyproject.toml declares README.md as the long description).
COPY pyproject.toml uv.lock README.md ./
COPY kafkarpc ./kafkarpc
COPY gateway ./gateway
COPY workers ./workers
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
# The venv keeps its pip (--inexact), so images built FROM this one can `pip install` handlers into it.
RUN python -m venv /opt/venv \
    && uv sync --frozen --no-editable --inexact \
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
COPY --from=build /opt/venv /opt/venv
# No .pyc writes at run time (the root filesystem is read-only in Kubernetes; pip compiled them
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
