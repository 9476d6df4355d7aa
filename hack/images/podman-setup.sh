#!/usr/bin/env bash
# Configure podman for this sandbox: runtime runc (crun is refused), no default ulimits (setting
# them is refused), and a storage driver that works here. Idempotent: writes the config only when
# it is missing or different, and checks that a container actually starts.
#
# Config goes to /etc/containers/containers.conf when we are root and that file is absent or was
# written by us; otherwise to ${PGQUEUE_CACHE}/podman/containers.conf, and the caller must export
# CONTAINERS_CONF (this script prints the line to use).
set -euo pipefail

cache="${PGQUEUE_CACHE:-$HOME/.cache/pgqueue}"
marker="# written by pgqueue hack/images/podman-setup.sh"
driver="${PGQUEUE_PODMAN_STORAGE_DRIVER:-overlay}"

want_conf() {
  cat <<CONF
$marker
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
}

want_storage() {
  cat <<CONF
$marker
[storage]
driver = "$driver"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
}

# write_if_changed FILE CONTENT: returns 0 when the file already held exactly CONTENT.
write_if_changed() {
  local file="$1" content="$2"
  if [[ -f "$file" ]] && [[ "$(cat "$file")" == "$content" ]]; then
    return 0
  fi
  if [[ -f "$file" ]] && ! grep -qF "$marker" "$file"; then
    return 2  # someone else's file: do not touch
  fi
  mkdir -p "$(dirname "$file")"
  printf '%s\n' "$content" >"$file"
  echo "podman-setup: wrote $file" >&2
}

conf_file=/etc/containers/containers.conf
storage_file=/etc/containers/storage.conf
if [[ $(id -u) -ne 0 ]]; then
  conf_file="$cache/podman/containers.conf"
  storage_file=""
fi

rc=0
write_if_changed "$conf_file" "$(want_conf)" || rc=$?
if [[ $rc -eq 2 ]]; then
  conf_file="$cache/podman/containers.conf"
  write_if_changed "$conf_file" "$(want_conf)"
  echo "podman-setup: /etc/containers/containers.conf is not ours; use: export CONTAINERS_CONF=$conf_file" >&2
fi
if [[ -n "$storage_file" ]]; then
  rc=0
  write_if_changed "$storage_file" "$(want_storage)" || rc=$?
  if [[ $rc -eq 2 ]]; then
    echo "podman-setup: keeping existing $storage_file" >&2
  fi
fi

if [[ "$conf_file" != /etc/containers/containers.conf ]]; then
  export CONTAINERS_CONF="$conf_file"
fi
podman info --format '{{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}' >&2
