"""Fault matrix, AsyncClient: a partitioned network path must not hold a call past its deadline.

The client reaches Postgres through a fault proxy that stalls (its kernel still acknowledges
every byte, so TCP sees nothing): only the client's asyncio timeouts can end the waits. Every
call awaiting at once must return by its timeout plus the documented margin, the event loop
must keep running meanwhile, and the client must work again once the path heals.
"""

from __future__ import annotations

import asyncio
import time

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
        proxy.stall()
        try:
            with LoopWatch() as watch:
                # Twice: the second round meets the connections the first one gave up.
                for round_ in range(2):
                    timed = await asyncio.gather(
                        *(_timed(client, f"during-{round_}-{i}") for i in range(20))
                    )
                    for elapsed, result in timed:
                        assert result.kind in {"timeout", "enqueue_error"}, result
                        assert elapsed <= TIMEOUT + SLACK, f"call took {elapsed:.2f}s"
            assert watch.blocked < 0.05, watch.summary()
        finally:
            proxy.resume()
        after = await client.call("demo.echo", ["after"], timeout=30)
        assert after.ok, after
        assert after.value == {"args": ["after"], "kwargs": {}}
