# Two commands do all the set-up on a fresh machine:
#   make run    apply the example manifests to the embedded default (MLflow on sqlite:///mlflow.db,
#               or $MLFLOW_TRACKING_URI when exported; model servers and the router on
#               127.0.0.1:8765, or $AGENTCTL_ROUTER_PORT; `make down` stops them)
#   make test   the whole test suite (starts and stops its own MLflow server on 127.0.0.1)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One registry for every step of `make run`, as agentctl itself picks it: $MLFLOW_TRACKING_URI when
# exported, else the embedded default.
TRACKING_URI ?= $(or $(MLFLOW_TRACKING_URI),sqlite:///mlflow.db)
ROUTER_PORT ?= $(or $(AGENTCTL_ROUTER_PORT),8765)
MANIFESTS ?= manifests

.PHONY: run down test lint schema bench-router bench-kube bench-controller bench-scale bench-eval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/agentctl validate $(MANIFESTS)
	$(BIN)/agentctl apply $(MANIFESTS) --tracking-uri $(TRACKING_URI) --router-port $(ROUTER_PORT)
	@echo "--- a second plan must find nothing to do (exit 0):"
	$(BIN)/agentctl plan $(MANIFESTS) --tracking-uri $(TRACKING_URI) --detailed-exitcode
	$(BIN)/agentctl status --tracking-uri $(TRACKING_URI)
	@printf '%s\n' "--- still serving; try: curl -s -w '\n' localhost:$(ROUTER_PORT)/agents/support-bot/invocations -H 'content-type: application/json' -d '{\"input\":[{\"role\":\"user\",\"content\":\"refund?\"}]}'"
	@echo "--- stop with: make down"

down: $(STAMP)
	$(BIN)/agentctl down

# The Kubernetes tests run a real kube-apiserver and etcd, built once from the Go module proxy into
# ~/.cache/agentctl/tools (about 5 minutes on 2 cores; $$KUBEBUILDER_ASSETS, when set, is used instead),
# and helm, for the chart's tests (about 1.5 minutes).
test: $(STAMP)
	@assets="$$(bash hack/tools.sh kube-assets)" && crds="$$(bash hack/tools.sh gateway-crds)" && \
	  helm="$$(bash hack/tools.sh helm)" && \
	  AGENTCTL_KUBE_ASSETS="$$assets" AGENTCTL_GATEWAY_CRDS="$$crds" AGENTCTL_HELM="$$helm" \
	  $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check controller tests bench
	$(BIN)/python -m ruff format --check controller tests bench
	$(BIN)/python -m mypy

bench-router: $(STAMP)
	$(BIN)/python bench/router.py

bench-eval: $(STAMP)
	$(BIN)/python -P bench/eval.py

bench-kube: $(STAMP)
	@assets="$$(bash hack/tools.sh kube-assets)" && crds="$$(bash hack/tools.sh gateway-crds)" && \
	  AGENTCTL_KUBE_ASSETS="$$assets" AGENTCTL_GATEWAY_CRDS="$$crds" $(BIN)/python bench/kube.py

bench-controller: $(STAMP)
	@assets="$$(bash hack/tools.sh kube-assets)" && crds="$$(bash hack/tools.sh gateway-crds)" && \
	  AGENTCTL_KUBE_ASSETS="$$assets" AGENTCTL_GATEWAY_CRDS="$$crds" $(BIN)/python bench/controller.py

# 1,000 agents against mlflow server on sqlite, then on PostgreSQL (Debian's package, installed
# with apt-get when missing; psycopg2 from the bench extra).
bench-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/scale.py

schema: $(STAMP)
	$(BIN)/agentctl schema > agentctl.schema.json

clean:
	-$(BIN)/agentctl down
	rm -rf $(VENV) mlflow.db mlruns mlartifacts .agentctl .pytest_cache .mypy_cache .ruff_cache
