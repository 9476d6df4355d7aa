"""Queue depth without the operator: ``pgqueue exporter`` and a worker's opt-in sampler, scraped.

Each test reads ``/metrics`` with prometheus_client's parser and compares the figures with counts
taken straight from the tables (not through the exporter's query). Only one process per database
samples at a time; a standby exports no depth and takes over when the sampler goes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.exporters import (
    ExporterFactory,
    depth_of,
    fill,
    parse,
    table_counts,
    value,
)
from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, http_get, wait_until


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[ExporterFactory]:
    factory = ExporterFactory(tmp_path)
    yield factory
    factory.stop_all()


def test_exporter_figures_equal_the_rows(
    pg_dsn: str, exporters: ExporterFactory, tmp_path: Path
) -> None:
    fill(pg_dsn)
    expected = table_counts(pg_dsn)
    assert expected[("orders", "in_flight")] == 2 and expected[("billing", "dead")] == 4
    exporter = exporters.start(pg_dsn)
    wait_until(lambda: depth_of(exporter.scrape()) == expected, 30, f"depth {expected}")
    series = exporter.scrape()
    assert value(series, "pgqueue_depth_sampler_leader") == 1
    for queue in ("orders", "mail", "billing"):
        dead = expected[(queue, "dead")]
        assert value(series, "pgqueue_dead_letter_depth", queue=queue) == dead
    oldest = value(series, "pgqueue_queue_oldest_age_seconds", queue="mail")
    assert oldest is not None and 600 <= oldest < 900, oldest
    assert value(series, "pgqueue_queue_oldest_age_seconds", queue="billing") == 0
    assert value(series, "pgqueue_gate_enabled") is None  # the flag was never set

    # Work drains: the queue reads zero rather than vanishing from a graph.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgqueue.message WHERE queue = 'mail'")
    wait_until(
        lambda: value(exporter.scrape(), "pgqueue_queue_depth", queue="mail", state="ready") == 0,
        30,
        "mail to read 0 ready",
    )
    assert exporter.stop() == 0


def test_one_sampler_per_database_and_a_standby_takes_over(
    pg_dsn: str, exporters: ExporterFactory, workers: WorkerFactory, tmp_path: Path
) -> None:
    fill(pg_dsn)
    first = exporters.start(pg_dsn)
    wait_until(lambda: value(first.scrape(), "pgqueue_depth_sampler_leader") == 1, 30, "a sampler")
    second = exporters.start(pg_dsn)
    # A worker asked to sample stands by too while an exporter holds the lock.
    worker = workers.start(pg_dsn, queues="none", env={"PGQUEUE_DEPTH_INTERVAL": "0.3"})
    for standby in (second.url("/metrics"), worker.url("/metrics")):
        series = parse(http_get(standby)[1])
        assert value(series, "pgqueue_depth_sampler_leader") == 0
        assert not depth_of(series), "a standby must not export depth (it would double-count)"
    assert value(first.scrape(), "pgqueue_depth_sampler_leader") == 1

    assert first.stop() == 0

    def taken_over() -> bool:
        leaders = [
            value(parse(http_get(url)[1]), "pgqueue_depth_sampler_leader")
            for url in (second.url("/metrics"), worker.url("/metrics"))
        ]
        return sorted(leaders) == [0, 1]

    wait_until(taken_over, 30, "exactly one standby to take over")
    expected = table_counts(pg_dsn)
    for url in (second.url("/metrics"), worker.url("/metrics")):
        series = parse(http_get(url)[1])
        if value(series, "pgqueue_depth_sampler_leader") == 1:
            assert depth_of(series) == expected


def test_worker_samples_depth_when_asked(pg_dsn: str, workers: WorkerFactory) -> None:
    fill(pg_dsn)
    expected = table_counts(pg_dsn)
    plain = workers.start(pg_dsn, queues="none")
    assert not depth_of(parse(http_get(plain.url("/metrics"))[1])), "off unless asked"
    sampler = workers.start(pg_dsn, queues="none", env={"PGQUEUE_DEPTH_INTERVAL": "0.3"})
    wait_until(
        lambda: depth_of(parse(http_get(sampler.url("/metrics"))[1])) == expected,
        30,
        f"the worker's depth {expected}",
    )


def test_exporter_health_follows_the_database(
    pg_dsn: str,
    pg_server: PgServer,
    exporters: ExporterFactory,
    tmp_path: Path,
    proxy_factory: Callable[[str, int], FaultProxy],
) -> None:
    proxy = proxy_factory(pg_server.host, pg_server.port)
    exporter = exporters.start(proxy.dsn_for(pg_dsn))
    wait_until(
        lambda: value(exporter.scrape(), "pgqueue_depth_sampler_leader") == 1, 30, "a sampler"
    )
    proxy.refuse()
    wait_until(lambda: http_get(exporter.url("/healthz"))[0] == 503, 30, "/healthz 503")
    series = exporter.scrape()
    assert value(series, "pgqueue_depth_sampler_leader") == 0
    assert not depth_of(series), "no stale depth while the database is unreachable"
    assert (value(series, "pgqueue_depth_sample_errors_total") or 0) >= 1
    proxy.resume()
    wait_until(lambda: http_get(exporter.url("/healthz"))[0] == 200, 30, "/healthz 200 again")


@pytest.mark.parametrize(
    ("env", "option"),
    [
        ({"PGQUEUE_DEPTH_INTERVAL": "-1"}, "--depth-interval"),
        ({"PGQUEUE_METRICS_PORT": "99999"}, "--metrics-port"),
    ],
)
def test_bad_settings_name_the_option(env: dict[str, str], option: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "exporter", "--dsn", "dbname=x"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert option in result.stderr


def test_a_worker_refuses_a_bad_depth_interval_naming_it(pg_dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "worker", "--tasks", "pgqueue.demo_tasks"],
        env={**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_DEPTH_INTERVAL": "-3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PGQUEUE_DEPTH_INTERVAL='-3'" in result.stderr
    assert "Traceback" not in result.stderr


def test_exporter_exits_1_when_its_port_is_taken(pg_dsn: str, exporters: ExporterFactory) -> None:
    first = exporters.start(pg_dsn)
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "exporter", "--metrics-host", "127.0.0.1"],
        env={**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_METRICS_PORT": str(first.port)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot bind 127.0.0.1:{first.port}" in result.stderr
