#!/usr/bin/env bash
# Debian services the integration tier starts itself, and the Python package with its test extras
# in a virtualenv of this clone (.venv; .ci/run puts it first on PATH), so CI never touches the
# machine's own site-packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends pgbouncer redis-server prometheus >/dev/null
# The Debian packages start their own daemons; the tests start private ones on free ports.
for svc in pgbouncer redis-server prometheus; do
  (service "$svc" stop || systemctl stop "$svc" || true) >/dev/null 2>&1
done
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'
