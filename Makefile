# Rebalancing service. `make run` serves the demo; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.runtime: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

install: $(VENV)/.runtime ## Create .venv/ and install the pinned runtime requirements

install-dev: $(VENV)/.dev ## Also install test, lint and bench requirements

run: export DEBUG ?= 1
run: install ## Set up (install, migrate, demo data) and serve web + worker + beat + FIX broker on 127.0.0.1
	@scripts/ensure-redis.sh
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo --if-empty
	@echo "Serving on http://127.0.0.1:8000/ (Ctrl-C stops web, worker, beat and the simulated FIX broker)"
	$(VENV)/bin/honcho start -f Procfile

test: install-dev ## Set up and run the whole test suite (PostgreSQL-only tests need DATABASE_URL)
	@scripts/ensure-chromium.sh
	@scripts/ensure-redis.sh
	$(VENV)/bin/pytest

lint: install-dev ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install-dev ## Run the benchmarks in bench/ (prints tables and one JSON line each)
	@for f in bench/*_bench.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) var/db.sqlite3 var/staticfiles var/fix-broker-state.json var/fix-broker-state.json.sent.jsonl

.PHONY: help install install-dev run test lint bench clean
