#!/usr/bin/env bash
# The Debian services the integration tier and the benchmarks start themselves (private instances
# on free ports): PgBouncer, Redis, Prometheus. Skipped when installed. The Python side (the
# clone's .venv with the test extras) is made by make before this step. zsh: the completion test
# loads `pgqueue completion zsh` in a real zsh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
sudo=(); [[ $(id -u) == 0 ]] || sudo=(sudo)
pkgs=(pgbouncer redis-server prometheus zsh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start their own daemons (at install, and at boot); the tests start private
# ones on free ports.
for svc in "${pkgs[@]}"; do
  ("${sudo[@]}" service "$svc" stop || "${sudo[@]}" systemctl stop "$svc" || true) >/dev/null 2>&1
done
echo "10-python: ${pkgs[*]} installed"
