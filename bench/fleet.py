"""Scenario 6, ``fleet``: what one call costs as the fleet grows (issue #20).

N caller processes (each its own ``pgqueue.Client``, one call in flight, every call echoing a
value unique to its caller that the caller checks) against W ``pgqueue worker --pool inline``
processes (one slot each, so W workers are W slots), for every N x W of the grid. Each cell runs
for a fixed window; what it reports per call is counted, not estimated, where Postgres counts it:

- claim statements (``pg_stat_statements`` calls of the worker's claim) and the rows they
  returned, so claims per message and the empty claims (at least calls − rows: exact while a
  claim takes at most one row, as it does with one call in flight per caller);
- polls: the callers' reads of their own reply row (take_reply, peek_reply);
- Postgres CPU: utime + stime from ``/proc/<pid>/stat`` of the postmaster and every child,
  sampled when the window opens and when it closes, while every connection is still open;
- NOTIFYs sent: the enqueue's wake-ups (migration 0012: one NOTIFY to one waiting worker's own
  channel, counted in ``pgqueue.waiting_worker.woken``, or, when no worker waits, one on the
  shared channel every worker hears: the enqueues less the private wake-ups), the ack's reply
  NOTIFYs (rows of the statement, one per reply), and
  the sessions LISTENing when the window closes: the workers' (their last statement) and the
  callers' live reply listeners (Postgres signals every listening session of the database on
  every NOTIFY);
- wake-ups received by the callers: the notifications their reply listeners were handed.

Callers come from a forkserver that has imported the client already: 200 spawned interpreters
would cost a minute of this machine's CPU each cell. Each caller keeps its client (and its two
sessions) open until the parent has read its counters, so a caller that has finished never
takes its backend's CPU time with it.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue as queue_mod
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg

from bench.cpu import TICK, postgres_ticks, postmaster_pid, process_ticks, ticks_between
from bench.procs import BenchError, Proc
from bench.stats import latency_ms

if TYPE_CHECKING:
    from bench.scenarios import Bench

log = logging.getLogger(__name__)

QUEUE = "fleet"
ECHO_TASK = "demo.echo"
CALL_TIMEOUT = 30.0
START_LEAD, START_LEAD_PER_CALLER = 0.5, 0.005  # seconds from the go barrier to the window
IDLE_SECONDS = 5.0  # the idle fleet's own Postgres CPU is sampled this long per W


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pgqueue.client", "pgqueue.settings", "bench.fleet"])
    return ctx


# -- the callers -----------------------------------------------------------------------------------


def caller_main(
    dsn: str,
    reply_wait: str,
    index: int,
    duration: float,
    ready: Any,
    go: Any,
    start: Any,
    release: Any,
    results: Any,
) -> None:
    """One caller process: warm up with one call, meet the others, call from ``start`` (a
    shared ``perf_counter`` time: CLOCK_MONOTONIC, one clock for every process) until the
    window ends.

    Reports its samples, how many replies it checked, the notifications its listener was handed
    and its own CPU seconds, then keeps the client open until ``release`` is set.
    """
    from pgqueue.client import Client  # noqa: PLC0415 - preloaded in the forkserver
    from pgqueue.settings import ClientSettings  # noqa: PLC0415

    try:
        client = Client(settings=ClientSettings(dsn=dsn, reply_wait=reply_wait))  # type: ignore[arg-type]
        try:
            token = index << 32

            def call() -> None:
                nonlocal token
                token += 1
                result = client.call(ECHO_TASK, [token], queue=QUEUE, timeout=CALL_TIMEOUT)
                if not result.ok:
                    raise BenchError(f"call failed: {result.kind}: {result.error}")
                if result.value != {"args": [token], "kwargs": {}}:
                    raise BenchError(
                        f"caller {index} call {token} got another call's reply: {result.value!r}"
                    )

            call()
            ready.wait(timeout=600)
            go.wait(timeout=600)
            # The barrier lets its parties go one at a time, through its lock: had each begun
            # as it passed, the last of 200 would start long after the first (while the first
            # take the CPU) and stop as long after. All begin at one time instead.
            time.sleep(max(0.0, start.value - time.perf_counter()))
            delivered_before = _delivered(client)
            cpu_before = _own_cpu()
            began = time.perf_counter()
            end = start.value + duration
            samples: list[float] = []
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                call()
                samples.append(time.perf_counter() - t0)
            ended = time.perf_counter()
            delivered = _delivered(client)
            results.put(
                {
                    "samples": samples,
                    "checked": len(samples),
                    "delivered": None if delivered is None else delivered - (delivered_before or 0),
                    "cpu_s": _own_cpu() - cpu_before,
                    "listening": _listening(client),
                    "late_s": began - start.value,
                    "ended": ended,
                }
            )
            release.wait(timeout=600)
        finally:
            client.close()
    except threading.BrokenBarrierError:
        pass  # another caller failed: its report says why
    except Exception as exc:
        results.put(f"caller {index}: {type(exc).__name__}: {exc}")
        ready.abort()
        go.abort()


def _delivered(client: Any) -> int | None:
    """Notifications the client's reply listener received (None if this client has none)."""
    listener = getattr(client, "_listener", None)
    value = getattr(listener, "delivered", None)
    return int(value) if isinstance(value, int) else None


def _listening(client: Any) -> bool:
    """Whether the client's reply listener holds its LISTEN session now."""
    return bool(getattr(getattr(client, "_listener", None), "live", False))


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- one cell --------------------------------------------------------------------------------------


# pg_stat_statements keeps the statements' text with constants as $n: match what is not one.
# Single enqueues (each wakes one waiting worker, or NOTIFYs the shared channel).
_ENQUEUE = "query LIKE '%%INSERT INTO pgqueue.message%%pgqueue.wake(%%'"
# The ack NOTIFYs once per acked message with a reply key (every message here has one).
_ACK = "query LIKE '%%pg_notify(pgqueue.reply_channel(a.reply_key)%%'"
_CLAIM = "query LIKE '%%pgqueue.claim(%%'"
# A caller's read of its own reply row (take_reply, peek_reply; not the listeners' take_replies).
_POLL = "query LIKE '%%FROM pgqueue.result r%%WHERE r.reply_key = $%%'"
_COUNTS = f"""
SELECT coalesce(sum(calls) FILTER (WHERE {_CLAIM}), 0)::float8,
       coalesce(sum(rows) FILTER (WHERE {_CLAIM}), 0)::float8,
       coalesce(sum(calls) FILTER (WHERE {_ENQUEUE}), 0)::float8,
       coalesce(sum(rows) FILTER (WHERE {_ACK}), 0)::float8,
       coalesce(sum(calls) FILTER (WHERE {_POLL}), 0)::float8
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# A worker's LISTEN session runs nothing else; a client's also deletes the replies it was
# handed, so the callers say themselves whether their listener is live.
_LISTENING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND query ILIKE 'LISTEN pgqueue_enqueue%%'
"""


# Wake-ups sent to waiting workers' own channels (pgqueue.wake counts them per worker).
_WAKES = "SELECT coalesce(sum(woken), 0)::float8 FROM pgqueue.waiting_worker"


def wakes_so_far(dsn: str) -> float:
    """Wake-ups sent to waiting workers' own channels so far."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(_WAKES).fetchone()
    return float(row[0]) if row else 0.0


def _statement_counts(dsn: str) -> dict[str, float]:
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(_COUNTS).fetchone()
        listening = conn.execute(_LISTENING).fetchone()
    assert row is not None
    assert listening is not None
    keys = ("claims", "claimed_rows", "enqueues", "reply_notifies", "reply_polls")
    out = dict(zip(keys, (float(v) for v in row), strict=True))
    out["listening_workers"] = float(listening[0])
    return out


def _worker_cpu(workers: list[Proc]) -> float:
    total = 0
    for w in workers:
        got = process_ticks(w.popen.pid)
        total += got[1] if got else 0
    return total / TICK


def run_cell(bench: Bench, dsn: str, workers: list[Proc], callers: int) -> dict[str, Any]:
    """``callers`` processes calling for ``fleet_seconds`` against the running ``workers``."""
    from bench.scenarios import reset_statements, top_statements  # noqa: PLC0415 - it imports us

    p = bench.p
    ctx = _context()
    ready, go = ctx.Barrier(callers + 1), ctx.Barrier(callers + 1)
    start = ctx.Value("d", 0.0, lock=False)
    release = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=caller_main,
            args=(dsn, p.fleet_reply_wait, i, p.fleet_seconds, ready, go, start, release, results),
            name=f"bench-fleet-caller-{i}",
            daemon=True,
        )
        for i in range(callers)
    ]
    for proc in procs:
        proc.start()
    postmaster = postmaster_pid(bench.pg.server.data_dir)
    try:
        try:
            ready.wait(timeout=120 + 2 * callers)
        except threading.BrokenBarrierError:
            raise BenchError(f"fleet callers did not start: {_first_failure(results)}") from None
        wakes_before = wakes_so_far(dsn)
        reset_statements(dsn)
        # The callers are idle until the window: what the CPU does meanwhile is not calls'.
        pg_before = postgres_ticks(postmaster)
        workers_before = _worker_cpu(workers)
        # Time for every caller to pass the barrier (one at a time, but idle meanwhile).
        start.value = time.perf_counter() + START_LEAD + callers * START_LEAD_PER_CALLER
        try:
            go.wait(timeout=60)
        except threading.BrokenBarrierError:
            raise BenchError(f"fleet callers failed: {_first_failure(results)}") from None
        reports: list[dict[str, Any]] = []
        for _ in procs:
            got = results.get(timeout=p.fleet_seconds + CALL_TIMEOUT + 60)
            if isinstance(got, str):
                raise BenchError(f"fleet caller failed: {got}")
            reports.append(got)
        # From the callers' clock: this process may get the CPU late among 200 callers.
        elapsed = max(r["ended"] for r in reports) - start.value
        pg_cpu = ticks_between(pg_before, postgres_ticks(postmaster))
        worker_cpu = _worker_cpu(workers) - workers_before
        counts = _statement_counts(dsn)
        # Each enqueue NOTIFYs once: one waiting worker, or else the shared channel.
        counts["worker_wakeups"] = wakes_so_far(dsn) - wakes_before
        counts["enqueue_notifies"] = counts["enqueues"]
        bench.profiles[f"fleet.N{callers}.W{len(workers)}"] = top_statements(dsn)
        for w in workers:
            w.check_alive()
    finally:
        release.set()
        for proc in procs:
            proc.join(timeout=15)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    samples = [s for r in reports for s in r["samples"]]
    calls = len(samples)
    if calls == 0:
        raise BenchError(f"fleet cell N={callers} W={len(workers)} made no call")
    delivered = [r["delivered"] for r in reports]
    notifies = counts["enqueue_notifies"] + counts["reply_notifies"]
    listening = counts["listening_workers"] + sum(bool(r["listening"]) for r in reports)
    figures: dict[str, Any] = latency_ms(samples)
    figures.update(
        {
            "callers": callers,
            "workers": len(workers),
            "window_s": elapsed,
            "calls": calls,
            "checked": sum(r["checked"] for r in reports),
            "calls_per_s": calls / elapsed,
            "callers_late_s": max(r["late_s"] for r in reports),
            "claims": counts["claims"],
            "claimed_rows": counts["claimed_rows"],
            "claims_per_message": counts["claims"] / calls,
            "empty_claims_per_message": max(0.0, counts["claims"] - counts["claimed_rows"]) / calls,
            "polls_per_call": counts["reply_polls"] / calls,
            "pg_cpu_s": pg_cpu,
            "pg_cpu_ms_per_call": 1000.0 * pg_cpu / calls,
            "worker_cpu_ms_per_call": 1000.0 * worker_cpu / calls,
            "caller_cpu_ms_per_call": 1000.0 * sum(r["cpu_s"] for r in reports) / calls,
            "enqueue_notifies": counts["enqueue_notifies"],
            "reply_notifies": counts["reply_notifies"],
            "notifies_per_call": notifies / calls,
            "listening_sessions": float(listening),
            "signals_per_call": notifies * listening / calls,
            # Private wake-ups reach one worker each; a shared NOTIFY (nobody waited) reaches
            # every worker listening.
            "worker_wakeups_per_call": (
                counts["worker_wakeups"]
                + (counts["enqueues"] - counts["worker_wakeups"]) * counts["listening_workers"]
            )
            / calls,
            "caller_wakeups_per_call": (math.nan if None in delivered else sum(delivered) / calls),
        }
    )
    log.info(
        "fleet N=%d W=%d: %.0f calls/s, p50 %.2f ms, %.2f claims/msg, PG %.3f ms CPU/call",
        callers,
        len(workers),
        figures["calls_per_s"],
        figures["p50_ms"],
        figures["claims_per_message"],
        figures["pg_cpu_ms_per_call"],
    )
    bench.samples[f"fleet.N{callers}.W{len(workers)}"] = samples
    return figures


def _stop_forkserver() -> None:
    """End the callers' forkserver with the scenario, not with the run (private API: the only
    way; a Python without it leaves the server to exit with this process)."""
    from multiprocessing import forkserver  # noqa: PLC0415

    stop = getattr(forkserver._forkserver, "_stop", None)
    if callable(stop):
        stop()


def _first_failure(results: Any) -> str:
    try:
        got = results.get(timeout=10)
    except queue_mod.Empty:
        return "no caller reported why"
    return str(got) if isinstance(got, str) else "a caller stopped waiting"


def idle_cpu(bench: Bench, workers: list[Proc], seconds: float) -> float:
    """Postgres CPU ms per second while the W workers wait and nobody calls."""
    postmaster = postmaster_pid(bench.pg.server.data_dir)
    before = postgres_ticks(postmaster)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:  # a measurement window, not a wait for an event
        time.sleep(min(0.5, seconds))
        for w in workers:
            w.check_alive()
    used = ticks_between(before, postgres_ticks(postmaster))
    return 1000.0 * used / (time.perf_counter() - t0)


def run_fleet(bench: Bench) -> dict[str, Any]:
    """Every N x W cell: W workers are started once per W and serve each N in turn."""
    p = bench.p
    dsn = bench.pg.fresh_database("bench_fleet")
    cells: list[dict[str, Any]] = []
    try:
        for w in p.fleet_workers:
            with bench.pgqueue_workers(dsn, w, queue=QUEUE, pool=p.fleet_pool) as workers:
                idle = idle_cpu(bench, workers, min(p.fleet_seconds, IDLE_SECONDS))
                for n in p.fleet_callers:
                    cell = run_cell(bench, dsn, workers, n)
                    cell["pg_idle_cpu_ms_per_s"] = idle
                    # What the calls cost Postgres beyond what the idle fleet costs it anyway
                    # (heartbeats, lease renewals, the workers' periodic VACUUM, empty polls).
                    busy = cell["pg_cpu_s"] - idle / 1000.0 * cell["window_s"]
                    cell["pg_cpu_ms_per_call_net"] = 1000.0 * busy / cell["calls"]
                    cells.append(cell)
    finally:
        _stop_forkserver()
    return {
        "unit": "per call",
        "callers": f"{list(p.fleet_callers)} processes, one Client each, one call in flight",
        "workers": f"{list(p.fleet_workers)} x pgqueue worker --pool {p.fleet_pool}",
        "reply_wait": p.fleet_reply_wait,
        "cells": cells,
        "ratios": ratios(cells),
    }


def _one(value: float) -> dict[str, float]:
    """A single measurement in the shape of ``stats.spread`` (the targets read that shape)."""
    return {"median": value, "min": value, "max": value, "runs": 0.0 if math.isnan(value) else 1.0}


def ratios(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The figures issue #20's acceptance names, from the grid's corner cells."""
    by = {(c["callers"], c["workers"]): c for c in cells}
    ns = sorted({c["callers"] for c in cells})
    ws = sorted({c["workers"] for c in cells})
    lo_n, hi_n, hi_w = ns[0], ns[-1], ws[-1]
    # The caller comparison at the smallest W: the workers are not what grows there.
    base, big = by[(lo_n, ws[0])], by[(hi_n, ws[0])]
    return {
        "claims_per_message_at_most_workers": _one(by[(lo_n, hi_w)]["claims_per_message"]),
        "pg_cpu_per_call_most_vs_fewest_callers": _one(
            big["pg_cpu_ms_per_call"] / base["pg_cpu_ms_per_call"]
        ),
        "calls_per_s_most_vs_fewest_callers": _one(big["calls_per_s"] / base["calls_per_s"]),
    }
