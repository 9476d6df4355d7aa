"""Fault matrix, AsyncClient: a stalled path or a stopped backend holds no call past its deadline.

The client reaches Postgres through a fault proxy that stalls, or has its backends SIGSTOPped
(either way a kernel still acknowledges every byte, so TCP sees nothing): only the client's
asyncio timeouts can end the waits. A restart of Postgres kills every session: the listener
must come back, and the first call after it must succeed. Every
call awaiting at once must return by its timeout plus the documented margin, the event loop
must keep running meanwhile, and the client must work again once the path heals.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time

import psycopg
import pytest

from pgqueue import AsyncClient, CallResult
from pgqueue.client import CALL_MARGIN
from tests.support.faultproxy import FaultProxy
from tests.support.loopwatch import LoopWatch
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory

TIMEOUT = 2.0
# The documented margin, plus room for a 2-core machine shared with other builds.
SLACK = CALL_MARGIN + 1.5


async def _timed(client: AsyncClient, value: str) -> tuple[float, CallResult]:
    started = time.monotonic()
    result = await client.call("demo.echo", [value], timeout=TIMEOUT)
    return time.monotonic() - started, result


@pytest.mark.asyncio
async def test_calls_return_by_their_deadline_through_a_partition_and_work_after(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory, proxy_factory: object
) -> None:
    workers.start(pg_dsn, concurrency=1)
    proxy: FaultProxy = proxy_factory(pg_server.host, pg_server.port)  # type: ignore[operator]
    async with AsyncClient(proxy.dsn_for(pg_dsn)) as client:
        warm = await client.call("demo.echo", ["warm-up"], timeout=30)
        assert warm.ok, warm
        gc.freeze()  # as a service after its start-up (see tests/integration/test_async_client)
        proxy.stall()
        try:
            with LoopWatch() as watch:
                # Twice: the second round meets the connections the first one gave up.
                for round_ in range(2):
                    timed = await asyncio.gather(
                        *(_timed(client, f"during-{round_}-{i}") for i in range(20))
                    )
                    worst = max(elapsed for elapsed, _ in timed)
                    print(f"\nround {round_}: 20 calls, slowest {worst:.2f}s with {TIMEOUT}s")
                    for elapsed, result in timed:
                        assert result.kind in {"timeout", "enqueue_error"}, result
                        assert elapsed <= TIMEOUT + SLACK, f"call took {elapsed:.2f}s"
            print(watch.summary())
            assert watch.blocked < 0.05, watch.summary()
        finally:
            proxy.resume()
        after = await client.call("demo.echo", ["after"], timeout=30)
        assert after.ok, after
        assert after.value == {"args": ["after"], "kwargs": {}}


@pytest.mark.asyncio
async def test_calls_return_by_their_deadline_with_the_clients_backends_stopped(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    app = "pgqueue-async-stopped"
    async with AsyncClient(pg_dsn, application_name=app) as client:
        await asyncio.gather(*(client.call("demo.echo", [i], timeout=30) for i in range(8)))

        def pids() -> list[int]:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
                ).fetchall()
            return [int(r[0]) for r in rows]

        stopped = await asyncio.to_thread(pids)
        assert len(stopped) >= 2, "the client's pool and listener have no backends to stop"
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            timed = await asyncio.gather(*(_timed(client, f"stopped-{i}") for i in range(10)))
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        print(f"\nstopped: 10 calls, slowest {max(e for e, _ in timed):.2f}s with {TIMEOUT}s")
        for elapsed, result in timed:
            assert result.kind in {"timeout", "enqueue_error"}, result
            assert elapsed <= TIMEOUT + SLACK, f"call took {elapsed:.2f}s with {TIMEOUT}s"
        after = await client.call("demo.echo", ["after"], timeout=30)
        assert after.ok, after


@pytest.mark.asyncio
async def test_first_call_after_a_postgres_restart_succeeds_and_the_listener_returns(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    async with AsyncClient(pg_dsn) as client:
        warm = await asyncio.gather(*(client.call("demo.echo", [i], timeout=30) for i in range(8)))
        assert all(r.ok for r in warm)
        listener = client.listener
        assert listener is not None and listener.connects == 1
        await asyncio.to_thread(pg_server.stop, "immediate")
        await asyncio.to_thread(pg_server.start)
        first = await client.call("demo.echo", ["first"], timeout=60)
        assert first.ok, first
        deadline = time.monotonic() + 30
        while not (listener.live and listener.connects >= 2):
            assert time.monotonic() < deadline, "the reply listener did not reconnect"
            await asyncio.sleep(0.05)
        second = await client.call("demo.echo", ["second"], timeout=30)
        assert second.ok, second
