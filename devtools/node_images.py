"""Images for the test node's containerd: a locally built pause image, and podman's images moved in.

There is no registry here, so the pod sandbox image (containerd's ``sandbox_image``) is built from
``hack/node/pause.c`` with ``gcc -static`` into a one-file ``FROM scratch`` OCI archive, cached
under ``PGQUEUE_CACHE/node`` by the hash of its source. Images built by ``make images`` live in
podman's store; :func:`import_from_podman` streams ``podman save`` (docker-archive, which carries
the repository tag) into ``ctr -n k8s.io images import``, so pods use them with
``imagePullPolicy: Never`` or ``IfNotPresent`` and nothing is ever pulled.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAUSE_SOURCE = REPO / "hack" / "node" / "pause.c"
PAUSE_IMAGE = "localhost/pgqueue-pause:1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


class NodeImageError(RuntimeError):
    """An image could not be built or imported; the message carries the tool's output."""


def cache_dir() -> Path:
    return Path(os.environ.get("PGQUEUE_CACHE", Path.home() / ".cache" / "pgqueue")) / "node"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0  # reproducible: the same source gives the same digests
    tar.addfile(info, io.BytesIO(data))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _oci_archive(binary: bytes, name: str) -> bytes:
    """A one-layer OCI image layout (as a tar) holding ``/pause``, named ``name`` for ctr."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "pause", binary, 0o755)
    diff = layer_tar.getvalue()
    layer = gzip.compress(diff, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [_sha(diff)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _sha(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", index)
        for blob in (config, manifest, layer):
            _add(tar, f"blobs/sha256/{_sha(blob).removeprefix('sha256:')}", blob)
    return out.getvalue()


def pause_archive() -> Path:
    """The pause image as an OCI archive, built once per source version (gcc: well under 1 s)."""
    source = PAUSE_SOURCE.read_bytes()
    key = hashlib.sha256(source).hexdigest()[:16]
    archive = cache_dir() / f"pause-{key}.tar"
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    binary = archive.with_suffix(".bin")
    proc = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(PAUSE_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeImageError(f"gcc -static {PAUSE_SOURCE} failed:\n{proc.stderr}")
    partial = archive.with_suffix(".partial")
    partial.write_bytes(_oci_archive(binary.read_bytes(), PAUSE_IMAGE))
    binary.unlink()
    partial.rename(archive)
    return archive


def ctr_import(ctr: list[str], archive: Path) -> None:
    """``ctr images import`` an archive file into the CRI's namespace (k8s.io)."""
    proc = subprocess.run(
        [*ctr, "images", "import", str(archive)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeImageError(f"ctr images import {archive} failed:\n{proc.stdout}{proc.stderr}")


def import_from_podman(ctr: list[str], image: str) -> float:
    """Stream ``podman save image`` into ``ctr images import``; returns the seconds it took."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as save_err:
        save = subprocess.Popen(
            ["podman", "save", "--format", "docker-archive", image],
            stdout=subprocess.PIPE,
            stderr=save_err,
        )
        assert save.stdout is not None
        with save.stdout:
            load = subprocess.run(
                [*ctr, "images", "import", "-"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        save.wait(timeout=60)
        save_err.seek(0)
        err = save_err.read().decode(errors="replace")
    if save.returncode != 0:
        raise NodeImageError(f"podman save {image} failed (exit {save.returncode}):\n{err}")
    if load.returncode != 0:
        raise NodeImageError(f"ctr images import of {image} failed:\n{load.stdout}{load.stderr}")
    return time.monotonic() - t0
