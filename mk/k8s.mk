# Kubernetes test tier: pinned tools built once into $(PGQUEUE_CACHE)/k8s/<version>/bin (outside
# the clone), and a throwaway control plane for poking at by hand.

.PHONY: k8s-tools
k8s-tools: ## Build pinned kube-apiserver, kube-controller-manager, etcd, kubectl, helm into the cache (no-op when built)
	@bash hack/k8s-tools.sh

.PHONY: k8s-bin-dir
k8s-bin-dir: ## Print the folder holding the pinned Kubernetes tools
	@bash hack/k8s-bin-dir.sh

.PHONY: k8s-up
k8s-up: venv k8s-tools ## Run a private etcd + kube-apiserver + controller-manager in the foreground (Ctrl-C stops it)
	$(PYTHON) -m devtools.kubeapi
