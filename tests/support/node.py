"""The test node as pytest fixtures (the node itself: :mod:`devtools.node`)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.kubeapi import REPO, KubeCluster
from devtools.node import (
    OPERATOR_IMAGE,
    ROOT_PREFIX,
    WORKER_IMAGE,
    KubeNode,
    NodeError,
    NodeRunner,
    ensure_node_tools,
)

# --------------------------------------------------------------------------------------------
# pytest fixtures.


@pytest.fixture(scope="session")
def node_runtime(request: pytest.FixtureRequest, kube: KubeCluster) -> Iterator[NodeRunner]:
    """containerd, the pod bridge and the host record, once per session; stopped and undone at
    the end. Tests take :func:`kube_node`, which joins a kubelet to the cluster."""
    runner = NodeRunner(kube, ensure_node_tools(), Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)))
    runner.start()
    try:
        yield runner
    finally:
        failed = request.session.testsfailed > 0
        errors = runner.stop(keep_logs=failed)
        if failed:
            sys.stderr.write(f"node: logs kept in {runner.log_dir}\n")
        if errors:
            sys.stderr.write("node: host changes not undone:\n  " + "\n  ".join(errors) + "\n")


@pytest.fixture(scope="module")
def kube_node(node_runtime: NodeRunner) -> Iterator[KubeNode]:
    """The node, joined (kubelet + kube-scheduler, Ready) for one test module, then drained and
    deleted: outside these modules the cluster has no node, as the rest of the tier expects."""
    node = node_runtime.join()
    sys.stderr.write(f"node: {node.name} Ready {node.ready_seconds:.1f}s after the kubelet start\n")
    try:
        yield node
    finally:
        node_runtime.leave()
        left = node_runtime.cluster.kubectl("get", "nodes", "-o", "name").stdout.strip()
        if left:
            raise NodeError(f"the node should be gone after its module, yet: {left}")


@dataclass(frozen=True)
class NodeImages:
    worker: str
    operator: str
    build_seconds: float
    import_seconds: float


@pytest.fixture(scope="session")
def node_images_imported(node_runtime: NodeRunner) -> NodeImages:
    """``make images`` (cached layers make a rebuild quick), then both images into the node."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["make", "--no-print-directory", "images"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    built = time.monotonic() - t0
    if proc.returncode != 0:
        raise NodeError(f"make images failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    node = node_runtime.node
    assert node is not None
    imported = sum(node.import_image(i) for i in (WORKER_IMAGE, OPERATOR_IMAGE))
    sys.stderr.write(f"node: make images {built:.1f}s, import into containerd {imported:.1f}s\n")
    return NodeImages(WORKER_IMAGE, OPERATOR_IMAGE, built, imported)
