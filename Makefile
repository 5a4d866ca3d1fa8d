# Kafka RPC Gateway: every task a developer or CI runs. `make run` and `make test` set up
# everything they need (virtualenv, Python packages, Kafka jars) on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv installs exactly the versions and hashes of uv.lock into .venv, and never downloads a Python.
UV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv

.PHONY: run test lint format unit integration chaos chaos-soak bench bench-streams bench-cancel kafka-libs helm prometheus kubernetes-tools go-tools jaeger run-prometheus monitoring dashboard-picture chart-check install-check kubernetes image image-check lock clean

run: $(STAMP) kafka-libs  ## The whole system locally: Kafka, one worker, one gateway. Ctrl-C stops all.
	$(BIN)/python -m devstack

test: lint kafka-libs go-tools image  ## Lint, type-check and the full suite: unit, image, chart, install on a real control plane, monitoring, and real-Kafka integration tests.
	$(BIN)/pytest

unit: $(STAMP)  ## Unit tests only (no broker, no chart, no Prometheus).
	$(BIN)/pytest --ignore=tests/integration --ignore=tests/chart --ignore=tests/kubernetes --ignore=tests/chaos --ignore=tests/monitoring --ignore=tests/image/test_image.py -m 'not integration'

integration: $(STAMP) kafka-libs go-tools  ## Integration tests only (real broker, real Jaeger and Prometheus).
	$(BIN)/pytest tests/integration

chaos: $(STAMP) kafka-libs  ## Fault-injection and bad-input suite on real Kafka (about 15 min, loopback only): docs/reliability/.
	mkdir -p docs/reliability
	$(BIN)/python -m chaos --json docs/reliability/figures.json --plots docs/reliability

chaos-soak: $(STAMP) kafka-libs  ## Soak with faults: 30 min at 70 % of the rate its 3-broker topology sustains (measured first), a worker SIGKILLed every 2 min (~37 min): docs/reliability/.
	mkdir -p docs/reliability
	$(BIN)/python -m chaos --only soak-faults --json docs/reliability/soak-faults.json --plots docs/reliability

bench: $(STAMP) kafka-libs  ## Benchmark against the floors (~20-25 min; BENCH_ARGS=--quick ~6 min): docs/benchmarks/.
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-streams: $(STAMP) kafka-libs  ## 10,000 SSE subscribers on one topic (~1 min): docs/benchmarks/streams.md.
	$(BIN)/python -m bench.streams $(BENCH_ARGS)

bench-cancel: $(STAMP) kafka-libs  ## Worker CPU saved by cancel records, on vs off (3-5 min; BENCH_ARGS=--quick < 1 min): docs/benchmarks/cancellation.md.
	$(BIN)/python -m bench.cancellation $(BENCH_ARGS)

lint: $(STAMP)  ## ruff (lint and format check) and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

helm:  ## Build (once) the real helm binary into ~/.cache/kafka-rpc-gateway; prints its path.
	tools/helm.sh

# Built before the suite, not inside a test's time limit: about 32 min cold on 2 cores (Kubernetes 15,
# Prometheus 9, Jaeger 6, helm 2), under a second after.
go-tools:  ## Build (once) every Go program the tests run: helm, Kubernetes and kwok, Prometheus and promtool, Jaeger.
	tools/helm.sh >/dev/null
	tools/kubernetes.sh >/dev/null
	tools/prometheus.sh >/dev/null
	tools/jaeger.sh >/dev/null

prometheus:  ## Build (once) the real prometheus and promtool into ~/.cache/kafka-rpc-gateway; prints their directory.
	tools/prometheus.sh

run-prometheus: $(STAMP) helm prometheus  ## A real Prometheus on 127.0.0.1:9091 scraping `make run` (gateway :8080, worker :9090) with the chart's alert rules.
	$(BIN)/python -m tests.monitoring.local

monitoring: $(STAMP) kafka-libs helm prometheus  ## promtool tests of the alert rules, dashboard checks, a real Prometheus scraping make run's stack (~30 s).
	$(BIN)/pytest tests/monitoring

dashboard-picture: $(STAMP) kafka-libs helm prometheus  ## Redraw docs/images/dashboard-panels.png from a real Prometheus under a minute of load (~1.5 min).
	$(BIN)/python -m tests.monitoring.picture

jaeger: $(STAMP)  ## A real Jaeger on loopback (OTLP :4318, query API :16686) for `make run`'s traces; Ctrl-C stops it.
	$(BIN)/python -m devstack.jaeger

chart-check: $(STAMP) helm  ## Helm chart: lint, render every ci/ values file, strict manifest validation, assertions.
	$(BIN)/pytest tests/chart

kubernetes-tools:  ## Build (once) etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok; prints their directory.
	tools/kubernetes.sh

install-check: $(STAMP) helm kubernetes-tools  ## helm install/upgrade/rollback/uninstall on a real control plane, restricted Pod Security (~40 s).
	$(BIN)/pytest tests/kubernetes

image:  ## Build the container image without Docker (buildah on a Debian base made here; root; ~2 min cold, seconds after); prints its reference.
	tools/image.sh

image-check: $(STAMP) image  ## The image built and run: uid 1001, exactly uv.lock's packages, no dev tooling, the gateway serving (~15 s).
	$(BIN)/pytest tests/image

kubernetes: $(STAMP) helm kubernetes-tools  ## A real Kubernetes control plane with one simulated node on loopback, for helm by hand; Ctrl-C stops it.
	$(BIN)/python -m devstack.controlplane

kafka-libs: $(STAMP)  ## Resolve the Kafka broker jars with Maven into the cache (once).
	$(BIN)/python -c "from devstack.jars import broker_classpath; broker_classpath()"

lock: $(STAMP)  ## Move uv.lock to the newest versions pyproject.toml allows, install them, run the suite.
	$(UV) lock --upgrade
	$(MAKE) test

$(STAMP): pyproject.toml uv.lock tools/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required: set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r tools/uv.txt
	$(UV) sync --frozen --inexact --extra dev --quiet
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
