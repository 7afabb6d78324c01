# scrm-models — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
DEMO_DATA ?= data/demo
DEMO_CUSTOMERS ?= 20000
DEMO_AS_OF ?= 2026-01-01
PORT ?= 3000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /'

$(STAMP): $(LOCK) pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

## venv: create .venv from the lock (requirements/lock.txt, hashes checked), then the project itself (no deps)
venv: $(STAMP)

## lock: re-resolve requirements/lock.txt from pyproject.toml (Python 3.11, x86_64 Linux, PyPI only, hashes)
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra realdata --extra spark --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --generate-hashes --no-config --upgrade -o $(LOCK)

## audit: check the lock for advisories (pip-audit --strict where reachable, .ci/advisories.yaml always)
audit: $(STAMP)
	$(BIN)/python .ci/audit.py --lock $(LOCK) --advisories .ci/advisories.yaml

## demo: simulate a brand → validate → features → train + promote → batch-score → serve on http://127.0.0.1:$(PORT)
demo: export SCRM_DEV = 1
demo: $(STAMP)
	$(BIN)/scrm simulate --customers $(DEMO_CUSTOMERS) --seed 7 --out $(DEMO_DATA)
	$(BIN)/scrm validate --data $(DEMO_DATA)
	$(BIN)/scrm features build --data $(DEMO_DATA) --as-of $(DEMO_AS_OF)
	$(BIN)/scrm train all --data $(DEMO_DATA) --as-of $(DEMO_AS_OF)
	$(BIN)/scrm score --data $(DEMO_DATA) --as-of $(DEMO_AS_OF) --out $(DEMO_DATA)/scores.parquet
	$(BIN)/scrm serve --data $(DEMO_DATA) --port $(PORT)

## test: run the test suite (slow tests excluded; `make test-all` includes them)
test: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

## test-slow: run only the slow tests (exit 0 when none are collected)
test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "test-slow: no slow tests collected"; exit 0; fi; exit $$rc

## test-all: run every test, slow ones included
test-all: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

## lint: ruff over the code
lint: $(STAMP)
	$(BIN)/ruff check features training serving tests benchmarks

## bench: run the benchmarks at full size (prints figures; see docs/benchmarks.md)
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## mlflow-ui: open the MLflow UI on the embedded store (http://127.0.0.1:5000)
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port 5000

## clean: remove the demo data and the local MLflow store (keeps .venv)
clean:
	rm -rf $(DEMO_DATA) mlruns/mlflow.db mlruns/artifacts

.PHONY: help venv lock audit demo test test-slow test-all lint bench mlflow-ui clean
