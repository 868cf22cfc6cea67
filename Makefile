# IRAS developer commands. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install IRAS with its test tools

run: $(STAMP) ## start the whole service (SQLite, in-process broker and worker) on :8080
	$(BIN)/iras run --host $${HOST:-127.0.0.1} --port $${PORT:-8080}

test: $(STAMP) ## run the whole test suite (integration tests skip locally when a service is missing)
	$(BIN)/python -m pytest $${PYTEST_ARGS:-}

test-fast: $(STAMP) ## unit and end-to-end tests on SQLite only
	$(BIN)/python -m pytest -m "not integration and not browser and not chaos"

lint: $(STAMP) ## ruff check + format check, alembic check on SQLite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check iras tests bench migrations
	rm -f /tmp/iras-alembic-check.db
	DATABASE_URL=sqlite:////tmp/iras-alembic-check.db $(BIN)/alembic upgrade head
	DATABASE_URL=sqlite:////tmp/iras-alembic-check.db $(BIN)/alembic check

demo: $(STAMP) ## start the service and replay bundled incidents with their evidence (PORT=8080)
	$(BIN)/iras demo --host $${HOST:-127.0.0.1} --port $${PORT:-8080}

DIR ?= tests/scenarios_own
eval: $(STAMP) ## score the offline analyst on the project's own scenarios (or DIR=folder)
	$(BIN)/iras eval $(DIR) --analyst offline

eval-perturb: $(STAMP) ## score the offline analyst on DIR and on perturbed copies, side by side
	$(BIN)/iras eval $(DIR) --analyst offline --direct --perturb

bench: $(STAMP) ## run every benchmark (needs the Debian postgresql and redis-server packages)
	@for b in bench/ingest.py bench/pipeline.py bench/latency.py bench/queries.py bench/memory.py; do \
		test -f $$b && { echo "== $$b"; $(BIN)/python $$b || exit 1; }; done

clean: ## remove the virtualenv and local databases
	rm -rf $(VENV) iras.db iras.db-* .pytest_cache

.PHONY: help install run demo test test-fast lint eval eval-perturb bench clean
