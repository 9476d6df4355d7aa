# The operator: the CRD is generated from the pydantic models (one source), and verified for drift.
CRD_FILE := crds/pgqueueworkers.pgqueue.dev.yaml

.PHONY: generate
generate:: venv ## Regenerate generated files (the PgQueueWorker CRD from operator/pgqueue_operator/models.py)
	$(PYTHON) -m pgqueue_operator.crdgen > $(CRD_FILE).tmp && mv $(CRD_FILE).tmp $(CRD_FILE)

.PHONY: verify
verify:: venv ## Fail when a generated file drifted from its source (run `make generate`)
	@$(PYTHON) -m pgqueue_operator.crdgen | diff -u $(CRD_FILE) - \
		|| { echo "$(CRD_FILE) is stale: run 'make generate'"; exit 1; }

.PHONY: test-operator
test-operator: venv ## Operator tests: unit tier, then the k8s tier against a real API server
	$(PYTEST) tests/unit/operator tests/k8s/test_operator.py
