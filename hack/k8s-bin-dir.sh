#!/usr/bin/env bash
# Print the folder where `make k8s-tools` puts (or has put) the pinned Kubernetes tools.
# It lives in the cache outside the clone, so every clone on this machine shares one build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=k8s-versions.env
source "$here/k8s-versions.env"
echo "${PGQUEUE_CACHE:-$HOME/.cache/pgqueue}/k8s/${K8S_VERSION}/bin"
