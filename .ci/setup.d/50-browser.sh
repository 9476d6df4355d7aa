#!/usr/bin/env bash
# The web console's browser tier (tests/web): Debian's headless-capable Chromium, driven by
# Playwright for Python (from the test extra) through its executable path. Playwright's own
# browser download is never used (`playwright install` is not run), so nothing but Debian
# packages is fetched. Idempotent: a Chromium already installed is left as it is.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version 2>/dev/null  # its wrapper script warns on stderr about a memory check
