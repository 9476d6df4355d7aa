# The node of the k8s test tier: kubelet, kube-scheduler and kube-proxy at the pinned Kubernetes
# version (next to the control-plane tools in $(PGQUEUE_CACHE)/k8s/<version>/bin); containerd,
# runc and the CNI plugins come from Debian (.ci/setup.d/35-node.sh).

.PHONY: k8s-node-tools
k8s-node-tools: ## Build pinned kubelet, kube-scheduler, kube-proxy into the cache (no-op when built)
	@bash hack/k8s-node-tools.sh

.PHONY: prometheus-k8s-sd
prometheus-k8s-sd: ## Build Prometheus with kubernetes_sd_configs into the cache (Debian's has none; no-op when built)
	@bash hack/prometheus-k8s-sd.sh
