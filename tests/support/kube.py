"""The k8s tier's cluster fixtures over :mod:`devtools.kubeapi` (the control plane itself).

``kube`` is the session's cluster: ``PGQUEUE_TEST_KUBECONFIG`` if set (kind), else a private
control plane. Where the tools are missing it skips locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.kubeapi import (
    KUBECONFIG_ENV,
    ControlPlane,
    ControlPlaneError,
    KubeCluster,
    bin_dir,
    ensure_tools,
    in_ci,
    server_of,
)


@pytest.fixture(scope="session")
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    """The session's cluster: ``PGQUEUE_TEST_KUBECONFIG`` if set, else a private control plane."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        directory = bin_dir()
        helm_home = tmp_path_factory.mktemp("helm")
        path = Path(external)
        yield KubeCluster(
            kubeconfig=path, server=server_of(path), bin_dir=directory, helm_home=helm_home
        )
        return

    try:
        directory = ensure_tools()
    except (ControlPlaneError, OSError, subprocess.SubprocessError) as exc:
        if in_ci():
            raise
        pytest.skip(f"Kubernetes tools unavailable (run `make k8s-tools`): {exc}")

    workdir = Path(tempfile.mkdtemp(prefix="pgqueue-kube-"))
    plane = ControlPlane(directory, workdir)
    cluster = plane.start()  # raises with log tails on failure, in CI and locally alike
    sys.stderr.write(
        f"kubeapi: control plane up in {plane.startup_seconds:.1f}s at {cluster.server}\n"
    )
    try:
        yield cluster
    finally:
        failed = request.session.testsfailed > 0
        plane.stop(keep_logs=failed)
        if failed:
            sys.stderr.write(f"kubeapi: control-plane logs kept in {plane.log_dir}\n")


@pytest.fixture
def kube_namespace(kube: KubeCluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for finalization)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
