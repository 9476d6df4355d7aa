"""A PgQueuer consumer as its documentation recommends it: asyncpg driver, uvloop, batch 10.

``python -m bench.pgqueuer_worker DSN BATCH`` registers one no-op entrypoint and runs
``QueueManager.run`` until SIGTERM. The schema comes from PgQueuer's own install API
(:func:`install`), never from a copy of its DDL.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from typing import Any

ENTRYPOINT = "bench_noop"


async def _connect(dsn: str) -> Any:
    import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - optional (bench extra)

    return await asyncpg.connect(dsn)


async def install(dsn: str) -> None:
    """PgQueuer's schema, created by PgQueuer itself (what ``pgq install`` runs)."""
    from pgqueuer import AsyncpgDriver, Queries  # noqa: PLC0415

    conn = await _connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await conn.close()


async def enqueue(dsn: str, count: int, chunk: int = 10_000) -> None:
    """Put ``count`` no-op jobs on the queue in batches (one statement per batch)."""
    from pgqueuer import AsyncpgDriver, Queries  # noqa: PLC0415

    conn = await _connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        async with conn.transaction():
            left = count
            while left > 0:
                n = min(chunk, left)
                await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
                left -= n
    finally:
        await conn.close()


async def _serve(dsn: str, batch: int) -> None:
    from pgqueuer import AsyncpgDriver, Queries, QueueManager  # noqa: PLC0415

    conn = await _connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Any) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    try:
        await qm.run(batch_size=batch, dequeue_timeout=timedelta(seconds=5))
    finally:
        await conn.close()


def main(argv: list[str]) -> None:
    dsn, batch = argv[0], int(argv[1])
    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(_serve(dsn, batch))
    except ImportError:
        asyncio.run(_serve(dsn, batch))


if __name__ == "__main__":
    main(sys.argv[1:])
