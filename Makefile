# pgqueue: every entry point is a make target; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
export PGQUEUE_CACHE ?= $(HOME)/.cache/pgqueue

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the make targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

.PHONY: install
install: ## Install pgqueue with every extra the tests and benchmarks need (editable)
	$(PYTHON) -m pip install -q -e '.[test,bench]'

.PHONY: demo
demo: ## Run the demo on an embedded Postgres: migrate, a worker, RPC round trips, the gate flipped
	$(PYTHON) -m pgqueue.cli demo

.PHONY: lint
lint: ## ruff + mypy --strict on both packages
	$(PYTHON) -m ruff check worker operator tests
	$(PYTHON) -m ruff format --check worker operator tests
	$(PYTHON) -m mypy
	lint-imports --no-cache

.PHONY: fmt
fmt: ## Format and autofix
	$(PYTHON) -m ruff format worker operator tests
	$(PYTHON) -m ruff check --fix worker operator tests

.PHONY: test
test: lint ## Run every test tier in one pytest session (what CI runs): shared servers, one summary
	$(PYTEST) tests

.PHONY: test-unit
test-unit: ## Unit tier: no services
	$(PYTEST) tests/unit

.PHONY: test-integration
test-integration: ## Integration tier: real Postgres, PgBouncer, Redis + Celery
	$(PYTEST) tests/integration

.PHONY: test-k8s
test-k8s: ## Kubernetes tier: real kube-apiserver + controller-manager, real Helm
	$(PYTEST) tests/k8s

.PHONY: test-images
test-images: ## Image tier: podman builds and runs the images
	$(PYTEST) tests/images

.PHONY: test-e2e
test-e2e: ## End-to-end tier: the migration-day story
	$(PYTEST) tests/e2e

.PHONY: test-bench-smoke
test-bench-smoke: ## Benchmarks at smoke size (they measure, they do not gate)
	$(PYTEST) tests/benchmarks

-include mk/*.mk
