#!/usr/bin/env bash
# Node tier (a real kubelet in the k8s tests): containerd (CRI v1) with runc, the CNI plugins
# (bridge, host-local, portmap in /usr/lib/cni), conntrack and iptables from Debian; then kubelet,
# kube-scheduler and kube-proxy built from the same pinned k8s.io/kubernetes as the API server
# (hack/k8s-node-tools.sh, cached under PGQUEUE_CACHE, a no-op once built). Idempotent.
# The Debian containerd service is stopped and disabled: the tests start a private containerd with
# its own root, state and socket, and never use /run/containerd.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(containerd runc containernetworking-plugins conntrack iptables gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq -o DPkg::Lock::Timeout=600
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
  (service containerd stop || systemctl disable --now containerd || true) >/dev/null 2>&1
fi
command -v go >/dev/null || { echo "35-node: a Go toolchain (go >= 1.24) is required" >&2; exit 1; }
make k8s-node-tools
# The node story's Prometheus discovers pods through the API server: Debian's is built without
# kubernetes_sd_configs, so the upstream one is built (a few minutes once, then cached).
make prometheus-k8s-sd
