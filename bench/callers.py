"""The calling side of the RPC scenarios: one blocking no-op call after another, timed.

The same loop serves the sequential latency scenario (in the run's own process) and the
throughput scenario (spawned caller processes, each running one or more calling threads that
share one client: pgqueue's ``Client`` and Celery's app are both meant to be shared by the
threads of a process). A caller is described by a plain dict, so it pickles into a spawned
process.

With ``"echo": True`` in the spec each call sends a number and checks that its reply carries it
back, so a reply handed to the wrong waiter (threads share one reply listener, or one Celery
app) fails the run instead of passing as a fast call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.procs import BenchError

NOOP_TASK = "demo.noop"
ECHO_TASK = "demo.echo"
CALL_TIMEOUT = 30.0

Call = Callable[[int], None]  # the argument: a number an echo call must get back


@contextlib.contextmanager
def pgqueue_caller(spec: dict[str, Any]) -> Iterator[Call]:
    from pgqueue.client import Client  # noqa: PLC0415 - keeps the spawned import light
    from pgqueue.settings import ClientSettings  # noqa: PLC0415

    settings = ClientSettings(dsn=spec["dsn"], pooled=bool(spec.get("pooled", False)))
    client = Client(settings=settings)
    queue = str(spec.get("queue", "default"))
    tenant = str(spec.get("tenant", ""))
    echo = bool(spec.get("echo", False))

    def call(token: int) -> None:
        task, args = (ECHO_TASK, [token]) if echo else (NOOP_TASK, [])
        result = client.call(task, args, queue=queue, tenant=tenant, timeout=CALL_TIMEOUT)
        if not result.ok:
            raise BenchError(f"pgqueue call failed: {result.kind}: {result.error}")
        if echo and result.value != {"args": [token], "kwargs": {}}:
            raise BenchError(f"pgqueue call {token} got another call's reply: {result.value!r}")

    try:
        yield call
    finally:
        client.close()


@contextlib.contextmanager
def celery_caller(spec: dict[str, Any]) -> Iterator[Call]:
    import os  # noqa: PLC0415

    os.environ["PGQUEUE_BENCH_REDIS_URL"] = str(spec["redis_url"])
    from bench import celery_app  # noqa: PLC0415

    queue = str(spec.get("queue", "celery"))
    echo = bool(spec.get("echo", False))

    def call(token: int) -> None:
        if not echo:
            celery_app.noop.apply_async(queue=queue).get(timeout=CALL_TIMEOUT)
            return
        value = celery_app.echo.apply_async((token,), queue=queue).get(timeout=CALL_TIMEOUT)
        if value != token:
            raise BenchError(f"celery call {token} got another call's reply: {value!r}")

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
        for i in range(warmup):
            call(i)
        samples: list[float] = []
        for i in range(calls):
            t0 = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - t0)
    return samples
