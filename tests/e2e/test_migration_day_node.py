"""Migration day on the test node (issue 17): the same story, its pods run by a real kubelet.

``kube_node`` joins a kubelet to the session's control plane, so the story sees a cluster with a
node and leaves its pods to it (as on kind): the chart's operator pod, the worker pods and the
sweep Job run from the images ``make images`` built, under the restricted security context. Pods
reach the host's Postgres and API server through the node's forwarders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from devtools.node_story import NodeStory
from devtools.story import PROPAGATION_BOUND
from tests.e2e.test_migration_day import legacy_broker  # noqa: F401 - a fixture

if TYPE_CHECKING:
    from devtools.kubeapi import KubeCluster
    from tests.support.node import KubeNode, NodeImages

pytest_plugins = ["tests.support.node"]


# The node modules' 1500 s: collected before them, this test pays for the session's node and
# `make images` in its setup, which the timeout counts.
@pytest.mark.timeout(1500)
def test_migration_day_on_the_node(
    kube: KubeCluster,
    kube_node: KubeNode,
    node_images_imported: NodeImages,
    kube_namespace: str,
    pg_dsn: str,
    legacy_broker: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    pg = kube_node.forward(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432))))
    monkeypatch.setenv("PGQUEUE_E2E_POD_PG_HOST", f"{pg.host}:{pg.port}")
    api = kube_node.forward("127.0.0.1", kube_node.api_port)
    operator_env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": api.host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(api.port)},
    ]
    with NodeStory(
        kube, kube_namespace, pg_dsn, legacy_broker, tmp_path,
        plots_dir=tmp_path / "plots", operator_env=operator_env,
        kill_pod=kube_node.kill_container, node_name=kube_node.name,
    ) as story:  # fmt: skip
        try:
            figures = story.run()
        except BaseException:
            # What the kubelet saw, before the story's clean-up removes the namespace.
            ns = kube_namespace
            for args in (
                ("get", "pods", "-o", "wide"),
                ("get", "events", "--sort-by=.lastTimestamp"),
                ("logs", "-l", "app.kubernetes.io/component=operator", "--tail=60"),
                ("get", "pqw", "-o", "yaml"),
            ):
                out = kube.kubectl("-n", ns, *args, check=False)
                print(f"--- kubectl {' '.join(args)}\n{out.stdout}{out.stderr}")
            raise
    print(json.dumps(figures, indent=2))
    assert story.real_pods
    assert figures["gate_propagation_max_s"] < PROPAGATION_BOUND
