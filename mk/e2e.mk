# The migration day, end to end (issue 8). One story module, devtools/story.py, is run by the test
# (tests/e2e/test_migration_day.py), by `make demo-k8s` as a script, and against kind by `make e2e-kind`.
KIND ?= kind
KIND_CLUSTER ?= pgqueue-e2e
KIND_KUBECONFIG ?= $(PGQUEUE_CACHE)/kind-$(KIND_CLUSTER).kubeconfig
E2E_PLOTS ?= docs/e2e

.PHONY: demo-k8s
demo-k8s: venv k8s-tools ## Migration day as a script with timings: helm install, apply, gate flips, Prometheus, SIGKILL, sweep, delete (plots into docs/e2e/)
	$(PYTHON) -m devtools.story --plots $(E2E_PLOTS)

.PHONY: demo-k8s-node
demo-k8s-node: venv k8s-tools k8s-node-tools prometheus-k8s-sd images ## The same on a local test node (containerd + kubelet; root): pods by the kubelet, plus drain, rotation, Prometheus SD
	$(PYTHON) -m devtools.story --node --plots $(E2E_PLOTS)

.PHONY: e2e-kind
e2e-kind: venv images ## The same e2e test on a kind cluster with real pods (creates it, kind-loads both images); untested in our CI
	@command -v $(KIND) >/dev/null || { echo "kind is not installed (https://kind.sigs.k8s.io)"; exit 1; }
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || $(KIND) create cluster --name $(KIND_CLUSTER) --wait 120s
	mkdir -p $(dir $(KIND_KUBECONFIG)) && $(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	set -e; for image in $(WORKER_IMAGE) $(OPERATOR_IMAGE); do \
		archive=$$(mktemp --suffix=.tar); $(PODMAN) save -o $$archive $$image; \
		$(KIND) load image-archive $$archive --name $(KIND_CLUSTER); rm -f $$archive; done
	PGQUEUE_TEST_KUBECONFIG=$(KIND_KUBECONFIG) $(PYTEST) tests/e2e/test_migration_day.py -s

.PHONY: e2e-kind-delete
e2e-kind-delete: ## Delete the kind cluster of `make e2e-kind`
	$(KIND) delete cluster --name $(KIND_CLUSTER)
