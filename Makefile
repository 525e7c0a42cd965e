# reelscore entry points. `make demo` and `make test` do all set-up on a fresh Debian 12
# machine and are quick when it is already done (every step checks before it works).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
SCALE ?= 100k
export PYTHONUNBUFFERED := 1

.PHONY: help setup system python npm db migrate data demo test test-unit test-db test-e2e bench bench-smoke fuzz docs lint stop clean

help:
	@echo "make demo   - set up everything, load the real sample data, serve the admin on http://127.0.0.1:8000"
	@echo "make test   - set up everything, then run the whole test suite against the real cluster"
	@echo "make db     - start (or find) the local PostgreSQL cluster and print its URL"
	@echo "make bench  - benchmarks at SCALE=100k (or 1m, or 1m-dense: 18.7M values); writes docs/benchmarks-<scale>.md (docs/benchmarks.md at 1m)"
	@echo "make fuzz   - long property-based fuzz run (outside CI)"

setup: system python npm

system:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/install-system.sh; else sudo bash scripts/install-system.sh; fi

python: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[test,bench]' 2>&1 | grep -vE '^\s*$$|WARNING|!!|wheel_obj|strategy' || true
	@$(PY) -c "import psycopg, alembic, flask, sklearn, pgvector, pytest" || { echo "python environment incomplete: pip install failed"; exit 1; }
	@touch $@

npm: node_modules/.installed
node_modules/.installed: package.json
	@npm install --no-audit --no-fund --loglevel=error >/dev/null || { echo "npm install failed: is the npm registry reachable?"; exit 1; }
	@touch $@

db: system
	@bash scripts/cluster.sh start

migrate: python db
	@$(BIN)/reelscore migrate

data: migrate npm
	@$(BIN)/reelscore demo-data

demo: setup migrate data
	@$(BIN)/reelscore refresh --scores --coverage --rollups
	@$(BIN)/reelscore status
	@if $(BIN)/reelscore admin list-users | grep -q '^no users'; then \
	  pw=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(12))'); \
	  echo "$$pw" | $(BIN)/reelscore admin create-user admin --role admin --password-stdin >/dev/null && \
	  echo "created admin login: user 'admin', password '$$pw' (change it: reelscore admin set-password admin)"; \
	fi
	@echo "admin panel: http://127.0.0.1:8000 (Ctrl-C stops it)"
	@$(BIN)/reelscore admin --port 8000

test: setup db
	@$(BIN)/pytest -q --durations=25 tests

test-unit: python
	@$(BIN)/pytest -q tests/unit

test-db: setup db
	@$(BIN)/pytest -q tests/db

test-e2e: setup db
	@$(BIN)/pytest -q tests/e2e

bench: setup db
	@$(BIN)/python -m bench.run --scale $(SCALE)

bench-smoke: setup db
	@$(BIN)/python -m bench.run --scale 1k --smoke

fuzz: setup db
	@REELSCORE_FUZZ_EXAMPLES=$${REELSCORE_FUZZ_EXAMPLES:-100000} $(BIN)/pytest -q tests -m fuzz

docs: python db
	@$(BIN)/python -m reelscore.docgen

lint: python
	@$(BIN)/ruff check reelscore admin ml plpy tests bench

stop:
	@bash scripts/cluster.sh stop

clean: stop
	rm -rf .pgdata $(VENV) node_modules
