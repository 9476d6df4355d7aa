#!/usr/bin/env bash
# Fill images/wheels/ with wheels of every runtime dependency (worker + operator extra) and of the
# build backend, downloaded on the host, so the image builds install offline (`--no-index`): the
# build containers here cannot verify the package index's TLS chain, and offline installs are
# reproducible and fast. Skipped when the requirement list has not changed since the last fill.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
out="$root/images/wheels"
cd "$root"

requirements="$("$python" images/requirements.py operator web; printf '%s\n' 'setuptools>=77' 'wheel')"
stamp="$out/.requirements.sha256"
sum="$(printf '%s\n' "$requirements" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]] && compgen -G "$out/*.whl" >/dev/null; then
  echo "wheelhouse: up to date ($(find "$out" -name '*.whl' | wc -l) wheels)"
  exit 0
fi

echo "wheelhouse: downloading wheels into images/wheels/"
find "$out" -name '*.whl' -delete
# --only-binary: the image has no compilers; every dependency must come as a wheel.
"$python" -m pip wheel --quiet --only-binary=:all: --wheel-dir "$out" \
  -r <(printf '%s\n' "$requirements")
printf '%s\n' "$sum" >"$stamp"
echo "wheelhouse: $(find "$out" -name '*.whl' | wc -l) wheels"
