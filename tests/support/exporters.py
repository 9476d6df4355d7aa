"""``pgqueue exporter`` processes for the tests, and the queue rows they are checked against.

An exporter counts as up when its ``/healthz`` answers 200; stopping sends SIGTERM. ``fill`` puts
messages in every state into a database and ``table_counts`` counts them straight from the rows,
not through the exporter's query.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from pgqueue import Client
from pgqueue.embedded import free_port
from tests.support.workers import REPO, http_get, wait_until

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


class ExporterFactory:
    """Starts exporters like :class:`tests.support.workers.WorkerFactory` starts workers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Exporter] = []

    def start(self, dsn: str, *extra: str, env: dict[str, str] | None = None) -> Exporter:
        port = free_port()
        log_path = self.tmp / f"exporter-{port}.log"
        args = [sys.executable, "-m", "pgqueue.cli", "exporter", "--metrics-host", "127.0.0.1"]
        args += extra
        full_env = {
            **os.environ,
            "PGQUEUE_DSN": dsn,
            "PGQUEUE_METRICS_PORT": str(port),
            "PGQUEUE_DEPTH_INTERVAL": "0.3",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        exporter = Exporter(proc, port, log_path)
        self.started.append(exporter)

        def up() -> bool:
            assert proc.poll() is None, f"exporter exited {proc.returncode}:\n{exporter.log()}"
            return http_get(exporter.url("/healthz"))[0] == 200

        wait_until(up, 30, "exporter /healthz")
        return exporter

    def stop_all(self) -> None:
        for exporter in self.started:
            if exporter.proc.poll() is None:
                exporter.proc.kill()
                exporter.proc.wait(10)


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
