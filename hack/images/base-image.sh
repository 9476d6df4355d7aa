#!/usr/bin/env bash
# Build localhost/pgqueue-base:bookworm without a container registry: debootstrap a Debian bookworm
# minbase root filesystem with python3 (3.11), python3-venv, ca-certificates and tini, and
# `podman import` it. The rootfs tarball is cached under ${PGQUEUE_CACHE}/images/, keyed by the
# package list, so a fresh clone on this machine re-imports it in seconds; an image already in
# podman storage with the same key is a no-op.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PGQUEUE_CACHE:-$HOME/.cache/pgqueue}/images"
image="${PGQUEUE_BASE_IMAGE:-localhost/pgqueue-base:bookworm}"
suite=bookworm
mirror="${PGQUEUE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="python3,python3-venv,ca-certificates,tini"

# Bump recipe when the way the rootfs is made changes; the key also covers suite and packages.
recipe=1
key="$(printf '%s %s %s\n' "$recipe" "$suite" "$packages" | sha256sum | cut -c1-12)"
tarball="$cache/pgqueue-base-$suite-$key.tar"

if podman image exists "$image" \
  && [[ "$(podman image inspect --format '{{index .Labels "dev.pgqueue.base.key"}}' "$image" 2>/dev/null)" == "$key" ]]; then
  echo "base-image: $image (key $key) already present"
  exit 0
fi

if [[ ! -f "$tarball" ]]; then
  command -v debootstrap >/dev/null || { echo "base-image: debootstrap not installed" >&2; exit 1; }
  mkdir -p "$cache"
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  echo "base-image: debootstrap $suite ($packages) into $rootfs"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -30 "$cache/debootstrap.log" >&2; exit 1; }
  # Slim it: no apt lists or caches, docs, man pages or locales in an image.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/debootstrap
  printf 'deb %s %s main\n' "$mirror" "$suite" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
  trap - EXIT
  # Keep only the current key's tarball.
  find "$cache" -maxdepth 1 -name "pgqueue-base-$suite-*.tar" ! -name "$(basename "$tarball")" -delete
fi

echo "base-image: importing $tarball as $image"
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL dev.pgqueue.base.key=$key" \
  --change "LABEL org.opencontainers.image.title=pgqueue-base" \
  --change "LABEL org.opencontainers.image.base.name=debian:$suite" \
  "$tarball" "$image" >/dev/null
podman image ls "$image"
