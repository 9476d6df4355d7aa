"""AsyncClient beside the sync Client: RPC p50 and calls/s on the same server and worker.

``python -m bench.async_rpc [--calls N] [--seconds S] [--callers C]`` starts an embedded
Postgres (fsync and synchronous commit on, as the other scenarios) and one ``pgqueue worker``
(inline pool, the latency scenario's fastest shape), then measures, alternating the clients:

- sequential latency: ``calls`` echo calls one after another (p50/p95/p99, ms);
- throughput: ``callers`` calls in flight for ``seconds`` (the sync client from that many
  threads sharing it, the async client from that many tasks on one event loop), calls/s.

Every call echoes a number and checks it gets its own back. Prints one JSON document. The same
measures are scenario 8 of ``make bench`` (``async_rpc``, :func:`run_async_rpc`), with the
harness's servers, worker start-up and warm-up, and report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.procs import BenchError, Processes, http_status, wait_until
from bench.servers import start_postgres
from bench.stats import latency_ms, spread
from pgqueue import AsyncClient, Client, embedded

if TYPE_CHECKING:
    from bench.scenarios import Bench

log = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0
WORKER_ARGS = [
    "-m", "pgqueue.cli", "--log-level", "WARNING", "worker",
    "--tasks", "pgqueue.demo_tasks", "--concurrency", "2", "--pool", "inline",
]  # fmt: skip


def _check(token: int, value: object) -> None:
    if value != {"args": [token], "kwargs": {}}:
        raise BenchError(f"call {token} got another call's reply: {value!r}")


def sync_latency(dsn: str, calls: int, warmup: int) -> list[float]:
    samples: list[float] = []
    with Client(dsn) as client:
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            result = client.call("demo.echo", [i], timeout=CALL_TIMEOUT)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
            _check(i, result.value)
    return samples


async def async_latency(dsn: str, calls: int, warmup: int) -> list[float]:
    samples: list[float] = []
    async with AsyncClient(dsn) as client:
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            result = await client.call("demo.echo", [i], timeout=CALL_TIMEOUT)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
            _check(i, result.value)
    return samples


def sync_throughput(dsn: str, callers: int, seconds: float) -> float:
    done = [0] * callers
    errors: list[str] = []
    with Client(dsn) as client:
        client.call("demo.echo", [0], timeout=CALL_TIMEOUT)
        stop = time.perf_counter() + seconds

        def body(n: int) -> None:
            token = n * 1_000_000
            while time.perf_counter() < stop:
                token += 1
                result = client.call("demo.echo", [token], timeout=CALL_TIMEOUT)
                if not result.ok:
                    errors.append(result.error)
                    return
                _check(token, result.value)
                done[n] += 1

        threads = [threading.Thread(target=body, args=(n,)) for n in range(callers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    if errors:
        raise BenchError(f"sync call failed: {errors[0]}")
    return sum(done) / elapsed


async def async_throughput(dsn: str, callers: int, seconds: float) -> float:
    done = [0] * callers
    async with AsyncClient(dsn) as client:
        await client.call("demo.echo", [0], timeout=CALL_TIMEOUT)
        stop = time.perf_counter() + seconds

        async def body(n: int) -> None:
            token = n * 1_000_000
            while time.perf_counter() < stop:
                token += 1
                result = await client.call("demo.echo", [token], timeout=CALL_TIMEOUT)
                if not result.ok:
                    raise BenchError(f"async call failed: {result.error}")
                _check(token, result.value)
                done[n] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(body(n) for n in range(callers)))
        elapsed = time.perf_counter() - t0
    return sum(done) / elapsed


def measures(
    dsn: str, calls: int, warmup: int, seconds: float, callers: int
) -> dict[str, Callable[[], Any]]:
    """The four measures, in the order a run alternates them."""
    return {
        "sync_latency": lambda: latency_ms(sync_latency(dsn, calls, warmup)),
        "async_latency": lambda: latency_ms(asyncio.run(async_latency(dsn, calls, warmup))),
        "sync_calls_per_s": lambda: sync_throughput(dsn, callers, seconds),
        "async_calls_per_s": lambda: asyncio.run(async_throughput(dsn, callers, seconds)),
    }


def run_async_rpc(bench: Bench) -> dict[str, Any]:
    """Scenario 8: one ``pgqueue worker --pool inline --concurrency 2``, both clients in turn."""
    p = bench.p
    dsn = bench.pg.fresh_database("bench_async_rpc")
    runs: list[dict[str, Any]] = []
    with bench.pgqueue_workers(dsn, 1, concurrency=2, pool="inline"):
        for r in range(p.runs):
            todo = measures(dsn, p.async_calls, p.rpc_warmup, p.async_seconds, p.async_callers)
            run = {name: measure() for name, measure in todo.items()}
            log.info(
                "async_rpc run %d: p50 ms sync %.2f async %.2f; calls/s sync %.0f async %.0f",
                r + 1,
                run["sync_latency"]["p50_ms"],
                run["async_latency"]["p50_ms"],
                run["sync_calls_per_s"],
                run["async_calls_per_s"],
            )
            runs.append(run)
    summary = {
        client: {
            "p50_ms": spread([run[f"{client}_latency"]["p50_ms"] for run in runs]),
            "p99_ms": spread([run[f"{client}_latency"]["p99_ms"] for run in runs]),
            "calls_per_s": spread([run[f"{client}_calls_per_s"] for run in runs]),
        }
        for client in ("sync", "async")
    }
    ratios = {
        "async_vs_sync_p50": spread(
            [run["async_latency"]["p50_ms"] / run["sync_latency"]["p50_ms"] for run in runs]
        ),
        "async_vs_sync_calls_per_s": spread(
            [run["async_calls_per_s"] / run["sync_calls_per_s"] for run in runs]
        ),
    }
    return {
        "callers": p.async_callers,
        "worker": "1 pgqueue worker --pool inline --concurrency 2",
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
    }


def run(calls: int, warmup: int, seconds: float, callers: int, runs: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pgqueue-bench-async-"))
    procs = Processes(workdir)
    pg = start_postgres(workdir)
    try:
        dsn = pg.fresh_database("bench_async")
        port = embedded.free_port()
        worker = procs.python(
            "pgqueue-worker",
            [*WORKER_ARGS, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
            env={"PGQUEUE_DSN": dsn},
        )

        def ready() -> bool:
            worker.check_alive()
            return http_status(f"http://127.0.0.1:{port}/readyz") == 200

        wait_until(ready, 60, "pgqueue worker /readyz", pause=0.05)
        todo = measures(dsn, calls, warmup, seconds, callers)
        figures: dict[str, list[Any]] = {name: [] for name in todo}
        for _ in range(runs):
            for name, measure in todo.items():
                figures[name].append(measure())
        return {
            "params": {
                "calls": calls,
                "warmup": warmup,
                "seconds": seconds,
                "callers": callers,
                "runs": runs,
            },
            "figures": figures,
        }
    finally:
        procs.close()
        pg.server.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.async_rpc", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="timed sequential calls")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls first")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput window")
    parser.add_argument("--callers", type=int, default=8, help="calls in flight")
    parser.add_argument("--runs", type=int, default=2, help="repetitions, clients alternating")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(args.calls, args.warmup, args.seconds, args.callers, args.runs), indent=2))


if __name__ == "__main__":
    main()
