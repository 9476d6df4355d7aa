"""Fault matrix, client side: a partitioned network and a stopped backend.

The client reaches Postgres through a fault proxy (or has its backends SIGSTOPped); neither
kind of fault is visible to TCP (the proxy's kernel, or the stopped backend's, still
acknowledges every byte), so only the client's own deadline can end the wait: ``call()`` must
return by its timeout plus the documented margin, and work again once the fault is gone.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg

from pgqueue import CallResult, Client, ClientSettings
from pgqueue.client import CALL_MARGIN
from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory

TIMEOUT = 2.0
# The documented margin, plus room for a 2-core machine shared with other builds.
SLACK = CALL_MARGIN + 1.5


def _timed_call(client: Client, timeout: float) -> tuple[float, CallResult]:
    started = time.monotonic()
    result = client.call("demo.echo", ["during"], timeout=timeout)
    return time.monotonic() - started, result


def test_call_returns_by_its_deadline_through_a_partition_and_works_after(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory, proxy_factory: object
) -> None:
    workers.start(pg_dsn, concurrency=1)
    proxy: FaultProxy = proxy_factory(pg_server.host, pg_server.port)  # type: ignore[operator]
    with Client(proxy.dsn_for(pg_dsn)) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=30).ok
        proxy.stall()
        try:
            for _ in range(2):  # a second call meets the connections the first one gave up
                elapsed, result = _timed_call(client, TIMEOUT)
                assert result.kind in {"timeout", "enqueue_error"}, result
                assert elapsed <= TIMEOUT + SLACK, f"call took {elapsed:.2f}s with {TIMEOUT}s"
        finally:
            proxy.resume()
        after = client.call("demo.echo", ["after"], timeout=30)
        assert after.ok, after
        assert after.value == {"args": ["after"], "kwargs": {}}


def test_call_returns_by_its_deadline_with_its_backends_stopped(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    settings = ClientSettings(dsn=pg_dsn, pool_size=2)
    with Client(settings=settings) as client, psycopg.connect(pg_dsn, autocommit=True) as admin:
        assert client.call("demo.echo", ["warm-up"], timeout=30).ok
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgqueue-client' "
            "AND datname = current_database()"
        ).fetchall()
        pids = [int(r[0]) for r in rows]
        assert pids, "the client has no backend to stop"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            elapsed, result = _timed_call(client, TIMEOUT)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        assert result.kind in {"timeout", "enqueue_error"}, result
        assert elapsed <= TIMEOUT + SLACK, f"call took {elapsed:.2f}s with {TIMEOUT}s"
        after = client.call("demo.echo", ["after"], timeout=30)
        assert after.ok, after
