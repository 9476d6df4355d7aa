"""A plain Prometheus scrape of queue depth, read through the dashboard's PromQL.

A real Prometheus scrapes two ``pgqueue exporter`` processes and two workers (one of them asked
to sample too) from static targets, and the operator's own depth series (its metrics module, fed
from the same tables) as a second source. The dashboard's depth panel must give the figures of
the tables once, although two sources export every queue (a sum would give twice as much).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import start_http_server

from devtools import grafana
from devtools.e2e_prometheus import Prometheus
from pgqueue import admin
from pgqueue.embedded import free_port
from pgqueue_operator import depth as operator_depth
from pgqueue_operator import metrics as operator_metrics
from tests.support.exporters import (
    ExporterFactory,
    fill,
    table_counts,
)
from tests.support.workers import WorkerFactory, wait_until

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/pgqueue-operator/dashboards/pgqueue.json"


def dashboard_expr(title: str) -> str:
    board = json.loads(DASHBOARD.read_text())
    (panel,) = [p for p in board["panels"] if p["title"].startswith(title)]
    return grafana.expand(panel["targets"][0]["expr"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path / "prometheus")
    yield prom
    prom.stop()


def job(name: str, ports: list[int], *, honor_labels: bool = False) -> dict[str, Any]:
    # The exporter and the workers run in the fleet's namespace: the label a Kubernetes scrape
    # would give them, so both sources group under the same (namespace, queue).
    return {
        "job_name": name,
        "honor_labels": honor_labels,
        "static_configs": [
            {"targets": [f"127.0.0.1:{p}" for p in ports], "labels": {"namespace": "shop"}}
        ],
    }


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[ExporterFactory]:
    factory = ExporterFactory(tmp_path)
    yield factory
    factory.stop_all()


def test_dashboard_depth_equals_the_tables_with_two_sources(
    pg_dsn: str,
    exporters: ExporterFactory,
    workers: WorkerFactory,
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    fill(pg_dsn)
    expected = table_counts(pg_dsn)
    first = exporters.start(pg_dsn)
    second = exporters.start(pg_dsn)
    plain = workers.start(pg_dsn, queues="none")
    sampling_worker = workers.start(pg_dsn, queues="none", env={"PGQUEUE_DEPTH_INTERVAL": "0.5"})

    # The operator's series for a PgQueueWorker "orders" in namespace "shop", as its sampler
    # records them (honorLabels keeps their namespace, as the chart's ServiceMonitor does).
    queues = sorted({q for q, _ in expected})
    # The operator's registry is process-wide: other tests of this session (the fault tier's
    # sampler, say) leave their fleets' series in it, which this scrape must not count.
    others = {
        (sample.labels["namespace"], sample.labels["pgqueueworker"])
        for family in operator_metrics.REGISTRY.collect()
        for sample in family.samples
        if "namespace" in sample.labels and "pgqueueworker" in sample.labels
    } - {("shop", "orders")}
    for namespace, name in others:
        operator_metrics.forget(namespace, name)
    operator_metrics.revive("shop", "orders")
    operator_metrics.record_depth(
        "shop", "orders", operator_depth.summarise(admin.queue_stats(pg_dsn), queues)
    )
    operator_port = free_port()
    server, _ = start_http_server(operator_port, "127.0.0.1", registry=operator_metrics.REGISTRY)
    try:
        prometheus.start(
            [
                job("pgqueue-exporter", [first.port, second.port]),
                job("pgqueue-workers", [plain.port, sampling_worker.port]),
                job("pgqueue-operator", [operator_port], honor_labels=True),
            ]
        )
        depth = dashboard_expr("Queue depth")

        def scraped() -> dict[tuple[str, str], float] | None:
            got = {
                (s["metric"]["queue"], s["metric"]["state"]): float(s["value"][1])
                for s in prometheus.query(depth)
            }
            sources = prometheus.query("count by (job) (pgqueue_queue_depth)")
            return got if got == expected and len(sources) == 2 else None

        wait_until(scraped, 60, f"the dashboard's depth to equal the tables {expected}")
        namespaces = {s["metric"].get("namespace") for s in prometheus.query(depth)}
        assert namespaces == {"shop"}
        summed = prometheus.query(
            'sum by (queue) (pgqueue_queue_depth{queue="orders", state="ready"})'
        )
        assert float(summed[0]["value"][1]) == 2 * expected[("orders", "ready")], (
            "both sources export the queue: only max keeps it counted once"
        )
        samplers = prometheus.query("sum(pgqueue_depth_sampler_leader)")
        assert float(samplers[0]["value"][1]) == 1, "one sampler per database"

        oldest = prometheus.query(dashboard_expr("Oldest message age"))
        ages = {s["metric"]["queue"]: float(s["value"][1]) for s in oldest}
        assert 600 <= ages["mail"] < 900 and ages["billing"] == 0
        dead = prometheus.query(dashboard_expr("Dead letters"))
        assert {s["metric"]["queue"]: float(s["value"][1]) for s in dead} == {
            q: expected[(q, "dead")] for q in queues
        }
        # Every other panel's query, as Grafana would send it, is valid PromQL here too.
        board = json.loads(DASHBOARD.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                prometheus.query(grafana.expand(target["expr"]))  # raises on a bad query
    finally:
        server.shutdown()
        server.server_close()
        operator_metrics.forget("shop", "orders")
