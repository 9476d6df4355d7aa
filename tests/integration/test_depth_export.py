"""Queue depth without the operator: ``pgqueue exporter`` and a worker's opt-in sampler, scraped.

Each test reads ``/metrics`` with prometheus_client's parser and compares the figures with counts
taken straight from the tables (not through the exporter's query). Only one process per database
samples at a time; a standby exports no depth and takes over when the sampler goes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgqueue import Client
from pgqueue.embedded import free_port
from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer
from tests.support.workers import REPO, WorkerFactory, http_get, wait_until

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def scrape(self) -> Series:
        status, text = http_get(self.url("/metrics"))
        assert status == 200, f"/metrics answered {status}:\n{self.log()}"
        return parse(text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def parse(text: str) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


def depth_of(series: Series) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["queue"], dict(labels)["state"]): v
        for (name, labels), v in series.items()
        if name == "pgqueue_queue_depth"
    }


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[list[Exporter]]:
    started: list[Exporter] = []
    yield started
    for exporter in started:
        if exporter.proc.poll() is None:
            exporter.proc.kill()
            exporter.proc.wait(10)


def start_exporter(
    started: list[Exporter], tmp: Path, dsn: str, *extra: str, env: dict[str, str] | None = None
) -> Exporter:
    port = free_port()
    log_path = tmp / f"exporter-{port}.log"
    args = [sys.executable, "-m", "pgqueue.cli", "exporter", "--host", "127.0.0.1"]
    full_env = {
        **os.environ,
        "PGQUEUE_DSN": dsn,
        "PGQUEUE_PORT": str(port),
        "PGQUEUE_INTERVAL": "0.3",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*args, *extra], env=full_env, stdout=log, stderr=subprocess.STDOUT)
    exporter = Exporter(proc, port, log_path)
    started.append(exporter)

    def up() -> bool:
        assert proc.poll() is None, f"exporter exited {proc.returncode}:\n{exporter.log()}"
        return http_get(exporter.url("/healthz"))[0] == 200

    wait_until(up, 30, "exporter /healthz")
    return exporter


def fill(dsn: str) -> None:
    """Messages in every state on two queues, and dead letters on a third."""
    with Client(dsn) as client:
        for i in range(5):
            client.enqueue("demo.echo", [i], queue="orders")
        for i in range(3):
            client.enqueue("demo.echo", [i], queue="orders", delay=3600)
        for i in range(2):
            client.enqueue("demo.echo", [i], queue="mail")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Two of the orders claimed by a (pretend) worker whose lease runs; the oldest ready
        # message of mail enqueued ten minutes ago.
        conn.execute(
            "UPDATE pgqueue.message SET vt = now() + interval '1 hour', claimed_by = 'w1', "
            "claimed_at = now(), read_ct = 1 WHERE msg_id IN (SELECT msg_id FROM pgqueue.message "
            "WHERE queue = 'orders' AND vt <= now() ORDER BY msg_id LIMIT 2)"
        )
        conn.execute(
            "UPDATE pgqueue.message SET enqueued_at = now() - interval '600 seconds' "
            "WHERE msg_id = (SELECT min(msg_id) FROM pgqueue.message WHERE queue = 'mail')"
        )
        conn.execute(
            "INSERT INTO pgqueue.dead_letter (msg_id, queue, task_name, payload, priority, "
            "tenant, enqueued_at, read_ct, reason) SELECT g, 'billing', 'demo.fail', '{}', 5, "
            "'', now(), 3, 'failed 3 times' FROM generate_series(1, 4) g"
        )


def table_counts(dsn: str) -> dict[tuple[str, str], float]:
    """Depth counted from the rows, the way a person would check it by hand."""
    counts: dict[tuple[str, str], float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for queue, vt_past, claimed, n in conn.execute(
            "SELECT queue, vt <= now(), claimed_by IS NOT NULL, count(*) FROM pgqueue.message "
            "GROUP BY 1, 2, 3"
        ):
            state = "ready" if vt_past else "in_flight" if claimed else "delayed"
            counts[(queue, state)] = counts.get((queue, state), 0) + n
        for queue, n in conn.execute("SELECT queue, count(*) FROM pgqueue.dead_letter GROUP BY 1"):
            counts[(queue, "dead")] = n
    queues = {q for q, _ in counts}
    return {
        (q, s): counts.get((q, s), 0.0)
        for q in queues
        for s in ("ready", "in_flight", "delayed", "dead")
    }


def test_exporter_figures_equal_the_rows(
    pg_dsn: str, exporters: list[Exporter], tmp_path: Path
) -> None:
    fill(pg_dsn)
    expected = table_counts(pg_dsn)
    assert expected[("orders", "in_flight")] == 2 and expected[("billing", "dead")] == 4
    exporter = start_exporter(exporters, tmp_path, pg_dsn)
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
    pg_dsn: str, exporters: list[Exporter], workers: WorkerFactory, tmp_path: Path
) -> None:
    fill(pg_dsn)
    first = start_exporter(exporters, tmp_path, pg_dsn)
    wait_until(lambda: value(first.scrape(), "pgqueue_depth_sampler_leader") == 1, 30, "a sampler")
    second = start_exporter(exporters, tmp_path, pg_dsn)
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
    exporters: list[Exporter],
    tmp_path: Path,
    proxy_factory: Callable[[str, int], FaultProxy],
) -> None:
    proxy = proxy_factory(pg_server.host, pg_server.port)
    exporter = start_exporter(exporters, tmp_path, proxy.dsn_for(pg_dsn))
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
    [({"PGQUEUE_INTERVAL": "-1"}, "--interval"), ({"PGQUEUE_PORT": "99999"}, "--port")],
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
