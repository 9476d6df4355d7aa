"""The calling side of the RPC scenarios: one blocking no-op call after another, timed.

The same loop serves the sequential latency scenario (in the run's own process) and the
throughput scenario (one spawned process per caller, so eight callers never share a GIL or a
Celery result consumer, which is not thread-safe). A caller is described by a plain dict, so it
pickles into a spawned process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from pgqueue.bench.procs import BenchError

NOOP_TASK = "demo.noop"
CALL_TIMEOUT = 30.0

Call = Callable[[], None]


@contextlib.contextmanager
def pgqueue_caller(spec: dict[str, Any]) -> Iterator[Call]:
    from pgqueue.client import Client  # noqa: PLC0415 - keeps the spawned import light
    from pgqueue.settings import ClientSettings  # noqa: PLC0415

    settings = ClientSettings(dsn=spec["dsn"], pooled=bool(spec.get("pooled", False)))
    client = Client(settings=settings)
    queue = str(spec.get("queue", "default"))
    tenant = str(spec.get("tenant", ""))

    def call() -> None:
        result = client.call(NOOP_TASK, queue=queue, tenant=tenant, timeout=CALL_TIMEOUT)
        if not result.ok:
            raise BenchError(f"pgqueue call failed: {result.kind}: {result.error}")

    try:
        yield call
    finally:
        client.close()


@contextlib.contextmanager
def celery_caller(spec: dict[str, Any]) -> Iterator[Call]:
    import os  # noqa: PLC0415

    os.environ["PGQUEUE_BENCH_REDIS_URL"] = str(spec["redis_url"])
    from pgqueue.bench import celery_app  # noqa: PLC0415

    queue = str(spec.get("queue", "celery"))

    def call() -> None:
        celery_app.noop.apply_async(queue=queue).get(timeout=CALL_TIMEOUT)

    try:
        yield call
    finally:
        celery_app.app.close()


def caller(spec: dict[str, Any]) -> contextlib.AbstractContextManager[Call]:
    kind = spec["kind"]
    if kind == "pgqueue":
        return pgqueue_caller(spec)
    if kind == "celery":
        return celery_caller(spec)
    raise BenchError(f"unknown caller kind {kind!r}")


def sequential(spec: dict[str, Any], warmup: int, calls: int) -> list[float]:
    """``warmup`` untimed calls, then ``calls`` timed ones, one after another (seconds each)."""
    with caller(spec) as call:
        for _ in range(warmup):
            call()
        samples: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
    return samples
