#!/usr/bin/env bash
# Prometheus with Kubernetes service discovery, for the migration day on the test node (issue 17):
# Debian's prometheus package is built without it (promtool: "field kubernetes_sd_configs not found
# in type config.ScrapeConfig"). Builds the upstream module at a pinned version, with the
# kubernetes discovery as its only plugin, into
# ${PGQUEUE_CACHE:-~/.cache/pgqueue}/prometheus/<version>/{prometheus,promtool} and prints that
# folder. Modules come through the Go module proxy, like the Kubernetes tools (hack/k8s-tools.sh).
set -euo pipefail

version="${PGQUEUE_PROMETHEUS_VERSION:-v0.53.4}"  # the Go module tag of Prometheus 2.53.4 (LTS)
cache="${PGQUEUE_CACHE:-$HOME/.cache/pgqueue}"
out="$cache/prometheus/$version"

built() { [[ -x "$out/prometheus" && -x "$out/promtool" ]]; }
if built; then echo "$out"; exit 0; fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if built; then echo "$out"; exit 0; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dir="$(cd "$work" && go mod download -json "github.com/prometheus/prometheus@$version" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir/." "$work/src"
chmod -R u+w "$work/src"
cat >"$work/src/plugins/plugins.go" <<'GO'
// Only the Kubernetes service discovery (hack/prometheus-k8s-sd.sh): smaller and quicker to build.

package plugins

import (
	// Register kubernetes plugin.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)
GO
cd "$work/src"
echo "prometheus-k8s-sd: building Prometheus $version with kubernetes_sd_configs" >&2
GOFLAGS=-mod=mod go build -o "$out/prometheus.tmp" ./cmd/prometheus
GOFLAGS=-mod=mod go build -o "$out/promtool.tmp" ./cmd/promtool
mv "$out/prometheus.tmp" "$out/prometheus"
mv "$out/promtool.tmp" "$out/promtool"
echo "$out"
