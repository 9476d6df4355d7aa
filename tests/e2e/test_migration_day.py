"""Migration day, end to end (issue 8): helm install, kubectl apply, flip the gate, scrape, sweep.

The story itself lives in :mod:`devtools.story` (``make demo-k8s`` runs the same module); this test
gives it the session's real components — the API server and controller-manager (``kube``), a
fresh Postgres database (``pg_dsn``), a private Redis and a Celery worker — and asserts what it
measured. Run with ``-s`` to see each step and its timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devtools.e2e_celery import CeleryWorker, RedisServer
from devtools.story import PROPAGATION_BOUND, Story

if TYPE_CHECKING:
    from devtools.kubeapi import KubeCluster


@pytest.fixture
def legacy_broker(tmp_path: Path) -> Iterator[str]:
    """A private redis-server and a Celery worker serving the legacy tasks; the broker URL."""
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        worker = CeleryWorker(redis_server.url, tmp_path / "celery").start()
        try:
            yield redis_server.url
        finally:
            worker.stop()
    finally:
        redis_server.stop()


@pytest.mark.timeout(600)
def test_migration_day(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, legacy_broker: str, tmp_path: Path
) -> None:
    with Story(
        kube, kube_namespace, pg_dsn, legacy_broker, tmp_path, plots_dir=tmp_path / "plots"
    ) as story:
        figures = story.run()
    print(json.dumps(figures, indent=2))
    print(
        f"gate-flip propagation, end to end, worst of 3 flips: {figures['gate_propagation_max_s']}s"
    )
    assert figures["gate_propagation_max_s"] < PROPAGATION_BOUND
    calls = figures["calls"]
    assert (
        calls["celery"] > 0 and calls["pg"] > 0 and calls["total"] == calls["celery"] + calls["pg"]
    )
    assert figures["promql"]["rpc_replies_stored"] == figures["calls_pg_before_kill"]
    assert (tmp_path / "plots" / "dashboard.png").stat().st_size > 0
