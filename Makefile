# csae-referrals: `make run` runs the whole pipeline locally; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install browser up down run test test-unit lint format bench schemas alerts observe

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python python3.11 --compile-bytecode
	touch $@

install: $(VENV)/.synced ## Install the locked Python dependencies into .venv
	@# Bytecode of our own modules too (dependencies get theirs at sync): every process starts
	@# faster, even where PYTHONDONTWRITEBYTECODE keeps Python from caching it by itself.
	@$(BIN)/python -m compileall -q schemas services

browser: ## Install Debian's Chromium for the console's browser tests (quick when it is there)
	@# Playwright drives the system browser (its own browser download is not used).
	@test -x /usr/bin/chromium || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium; }

up: install ## Start local Kafka and PostgreSQL (idempotent) and migrate the database
	deploy/local/kafka.sh start
	deploy/local/postgres.sh start
	$(BIN)/csae db upgrade
	$(BIN)/csae topics create

down: ## Stop the Kafka and PostgreSQL that `make up` started
	deploy/local/kafka.sh stop
	deploy/local/postgres.sh stop

run: install ## Run the whole pipeline with the sample flags; Ctrl-C stops everything it started
	deploy/local/run.sh

test: install browser ## Start Kafka and PostgreSQL, run every test (the browser ones in Chromium), stop what was started
	CSAE_POSTGRES_UNSAFE_FOR_TESTS=1 deploy/local/with-infra.sh $(BIN)/pytest

test-unit: install ## Run the unit tests only (no servers)
	$(BIN)/pytest tests/unit

lint: install ## ruff, mypy --strict, import layering; Dockerfile, compose and Kubernetes offline
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy schemas services tests benchmarks deploy/validate.py
	$(BIN)/lint-imports
	$(BIN)/python deploy/validate.py

format: install ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schemas: install ## Regenerate the JSON Schema files in schemas/json
	$(BIN)/csae schemas export

bench: install ## Run the benchmarks: the pure core, then the pipeline on Kafka and PostgreSQL (not part of make test)
	deploy/local/with-infra.sh $(BIN)/python -m benchmarks

alerts: ## Check the Prometheus alert rules and their tests with promtool
	deploy/prometheus/promtool.sh check rules deploy/prometheus/csae-alerts.yaml
	cd deploy/prometheus && ./promtool.sh test rules csae-alerts.test.yaml

observe: ## Run Prometheus beside `make run`: scrapes its local ports, evaluates the alert rules
	@mkdir -p $(TOOLS)/prometheus-data
	@echo "Prometheus on http://127.0.0.1:9090 (alerts at /alerts); Ctrl-C stops it"
	deploy/prometheus/prometheus.sh --config.file=deploy/prometheus/prometheus.yml \
		--storage.tsdb.path=$(TOOLS)/prometheus-data --web.listen-address=127.0.0.1:9090
