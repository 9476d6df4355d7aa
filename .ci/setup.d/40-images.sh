#!/usr/bin/env bash
# Image tier: podman (runc runtime), debootstrap for the registry-free base image, tini for PID 1;
# then podman's config for this machine and the base image (cached under PGQUEUE_CACHE/images).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs tini)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
hack/images/podman-setup.sh
hack/images/base-image.sh
