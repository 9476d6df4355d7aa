"""Measure the cost of committing claims synchronously (issue 14, fencing that survives a crash).

Starts an embedded Postgres (fsync and synchronous_commit on, like production), migrates it, and
compares two variants of ``pgqueue.claim`` that differ only in how the claim commits:

- ``sync``: the shipped function (migration 0005): a claim holding a call commits synchronously;
- ``async``: the same function committing every claim asynchronously (as before 0005).

Figures: the latency of a one-row claim of a call on a backlog (client round trip, committed),
and the round trip of an RPC (``Client.call`` of ``demo.noop`` through a real ``pgqueue
worker``), p50 and p95 over N each, the variants interleaved in rounds so machine load hits
both alike.

    python hack/measure_claim_commit.py [--calls 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from pgqueue import Client
from pgqueue.claiming import claim_params
from pgqueue.embedded import EmbeddedPostgres, free_port
from pgqueue.migrating import migrate
from pgqueue.sqlfiles import query

# What the shipped function commits a call's claim with; the async variant says 'off'.
DURABLE = """CASE WHEN NOT p_durable THEN 'off'
                         WHEN current_setting('synchronous_commit') = 'off' THEN 'local'
                         ELSE current_setting('synchronous_commit') END;"""


def _function(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute("SELECT pg_get_functiondef('pgqueue.claim'::regproc)").fetchone()
    assert row is not None
    return str(row[0])


def _variant(dsn: str, shipped: str, mode: str) -> None:
    text = shipped
    if mode == "async":
        assert DURABLE in text
        text = text.replace(DURABLE, "'off';")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(text.encode())


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            dsn = pg.dsn
            migrate(dsn)
            with psycopg.connect(dsn, autocommit=True) as conn:
                shipped = _function(conn)
            per_round = args.calls // args.rounds
            claims: dict[str, list[float]] = {"sync": [], "async": []}
            with psycopg.connect(dsn, autocommit=True) as conn:
                for _ in range(args.rounds):
                    for mode in ("sync", "async"):
                        _variant(dsn, shipped, mode)
                        conn.execute(
                            "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key) "
                            "SELECT 'default', 'demo.noop', '{}', 'k' || g "
                            "FROM generate_series(1, %s) g",
                            (per_round,),
                        )
                        params = claim_params("default", 1, 60.0, "measure")
                        for _ in range(per_round):
                            began = time.perf_counter()
                            conn.execute(query("claim"), params).fetchall()
                            claims[mode].append(time.perf_counter() - began)
                        conn.execute("DELETE FROM pgqueue.message")
            rpc: dict[str, list[float]] = {"sync": [], "async": []}
            port = free_port()
            env = {**os.environ, "PGQUEUE_DSN": dsn}
            worker = subprocess.Popen(
                [sys.executable, "-m", "pgqueue.cli", "worker", "--tasks", "pgqueue.demo_tasks",
                 "--concurrency", "1", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.1)
                with Client(dsn) as client:
                    for _ in range(50):
                        client.call("demo.noop", timeout=10)  # warm-up
                    for _ in range(args.rounds):
                        for mode in ("sync", "async"):
                            _variant(dsn, shipped, mode)
                            for _ in range(per_round):
                                began = time.perf_counter()
                                result = client.call("demo.noop", timeout=10)
                                rpc[mode].append(time.perf_counter() - began)
                                assert result.ok, result
            finally:
                worker.terminate()
                worker.wait(30)
            _variant(dsn, shipped, "sync")
        finally:
            pg.cleanup()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, data in (("claim (1 row, committed)", claims), ("RPC round trip", rpc)):
        for mode in ("async", "sync"):
            values = data[mode]
            print(
                f"{name:26} {mode:5}: p50 {statistics.median(values) * 1e3:7.3f} ms  "
                f"p95 {_pct(values, 0.95) * 1e3:7.3f} ms  (n={len(values)})"
            )
        ratio = statistics.median(data["sync"]) / statistics.median(data["async"])
        print(f"{name:26} sync/async p50 ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
