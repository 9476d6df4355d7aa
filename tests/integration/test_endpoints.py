"""The worker's /metrics, /healthz and /readyz as a scraper and a kubelet see them (§7)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pgqueue import Client
from tests.support.workers import WorkerFactory, http_get

WORKER_SERIES = {
    "pgqueue_tasks",
    "pgqueue_task_duration_seconds",
    "pgqueue_queue_wait_seconds",
    "pgqueue_rpc_latency_seconds",
    "pgqueue_worker_busy_slots",
    "pgqueue_lease_renewals",
    "pgqueue_lease_lost",
    "pgqueue_heartbeat_age_seconds",
}


def test_metrics_parse_and_carry_the_worker_series(pg_dsn: str, workers: WorkerFactory) -> None:
    worker = workers.start(pg_dsn, concurrency=1)
    with Client(pg_dsn) as client:
        for i in range(3):
            assert client.call("demo.add", [i, 1], timeout=20).ok
        assert not client.call("demo.fail", timeout=20).ok
    status, text = http_get(worker.url("/metrics"))
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) >= WORKER_SERIES
    completed = [
        s.value
        for s in families["pgqueue_tasks"].samples
        if s.name == "pgqueue_tasks_total"
        and s.labels == {"queue": "default", "task": "demo.add", "outcome": "completed"}
    ]
    assert completed == [3.0]
    rpc_counts = [
        s.value
        for s in families["pgqueue_rpc_latency_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert sum(rpc_counts) == 4.0


def test_health_and_readiness(pg_dsn: str, workers: WorkerFactory) -> None:
    worker = workers.start(pg_dsn, concurrency=1)
    assert http_get(worker.url("/healthz"))[0] == 200
    assert http_get(worker.url("/readyz"))[0] == 200
    assert http_get(worker.url("/nope"))[0] == 404
