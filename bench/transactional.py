"""Scenario 7, ``tx_enqueue``: enqueue in the caller's own transaction (issue #18).

One producer (this process) enqueues no-op jobs for a window per mode, with no worker running,
so the figure is the producer's cost alone; modes alternate within each run:

- ``client_pool``: ``client.enqueue(task)`` on the client's own autocommit pool (one commit per
  job: the baseline, what ``enqueue`` did before ``conn=`` existed);
- ``tx_1``: ``client.enqueue(task, conn=conn)`` in a transaction of the caller's own connection,
  one job per transaction (the shape of "insert the order and its job");
- ``tx_100``: 100 ``enqueue(conn=)`` calls per caller transaction;
- ``tx_100_batch``: one ``enqueue_many`` of 100 messages per caller transaction.

After each window the rows in ``pgqueue.message`` must be exactly the jobs the producer counted
(a lost or duplicated enqueue fails the run); the table is emptied before the next window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from bench.procs import BenchError
from bench.stats import spread
from pgqueue import Client, Message

if TYPE_CHECKING:
    from bench.scenarios import Bench

log = logging.getLogger(__name__)

TASK = "demo.noop"
QUEUE = "tx_enqueue"
MODES = ("client_pool", "tx_1", "tx_100", "tx_100_batch")


def _per_transaction(mode: str) -> int:
    return 100 if mode.startswith("tx_100") else 1


def _step(mode: str, client: Client, conn: psycopg.Connection[Any]) -> Callable[[], None]:
    """One transaction's worth of enqueues in ``mode``."""
    if mode == "client_pool":

        def own() -> None:
            client.enqueue(TASK, queue=QUEUE)

        return own

    if mode == "tx_100_batch":
        batch = [Message(task=TASK, queue=QUEUE) for _ in range(100)]

        def many() -> None:
            with conn.transaction():
                client.enqueue_many(batch, conn=conn)

        return many

    count = _per_transaction(mode)

    def each() -> None:
        with conn.transaction():
            for _ in range(count):
                client.enqueue(TASK, queue=QUEUE, conn=conn)

    return each


def measure(dsn: str, mode: str, seconds: float) -> dict[str, float]:
    """Jobs/s and transactions/s of one window; checks the table holds exactly those jobs."""
    with Client(dsn) as client, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgqueue.message")
        step = _step(mode, client, conn)
        step()  # untimed: the pool connects, the statements are prepared
        conn.execute("TRUNCATE pgqueue.message")
        transactions = 0
        t0 = time.perf_counter()
        stop = t0 + seconds
        while time.perf_counter() < stop:
            step()
            transactions += 1
        elapsed = time.perf_counter() - t0
        row = conn.execute("SELECT count(*) FROM pgqueue.message").fetchone()
        conn.execute("TRUNCATE pgqueue.message")
    jobs = transactions * _per_transaction(mode)
    stored = int(row[0]) if row else 0
    if stored != jobs:
        raise BenchError(f"tx_enqueue {mode}: {jobs} jobs enqueued but {stored} rows stored")
    return {
        "jobs_per_s": jobs / elapsed,
        "transactions_per_s": transactions / elapsed,
        "jobs": float(jobs),
    }


def run_tx_enqueue(bench: Bench) -> dict[str, Any]:
    p = bench.p
    dsn = bench.pg.fresh_database("bench_tx_enqueue")
    runs: list[dict[str, dict[str, float]]] = []
    for r in range(p.runs):
        run = {mode: measure(dsn, mode, p.tx_seconds) for mode in MODES}
        log.info(
            "tx_enqueue run %d jobs/s: %s",
            r + 1,
            {k: round(v["jobs_per_s"]) for k, v in run.items()},
        )
        runs.append(run)
    summary = {
        mode: {
            key: spread([run[mode][key] for run in runs])
            for key in ("jobs_per_s", "transactions_per_s")
        }
        for mode in MODES
    }
    base = "client_pool"
    ratios = {
        f"{mode}_vs_{base}": spread(
            [run[mode]["jobs_per_s"] / run[base]["jobs_per_s"] for run in runs]
        )
        for mode in MODES
        if mode != base
    }
    return {"unit": "jobs/s", "runs": runs, "summary": summary, "ratios": ratios}
