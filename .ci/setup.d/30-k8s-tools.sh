#!/usr/bin/env bash
# Kubernetes tier: the pinned control-plane binaries and Helm, compiled from the Go module proxy
# into ${PGQUEUE_CACHE}/k8s (a no-op taking milliseconds once built). etcd is built too (3.5, the
# version kube-apiserver expects), so no Debian etcd is needed; openssl is handy for debugging.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
command -v go >/dev/null || { echo "30-k8s-tools: a Go toolchain (go >= 1.24) is required" >&2; exit 1; }
if ! command -v flock >/dev/null || ! command -v openssl >/dev/null || [[ ! -x /usr/bin/time ]]; then
  apt-get install -y -qq --no-install-recommends util-linux openssl time >/dev/null
fi
make k8s-tools
