"""The scenarios, each comparing systems side by side on the same servers in one run.

Method shared by all: consumers are started first and measured only once up (start-up never
counts); each system's consumers run alone (the others are stopped, so an idle poller never steals
CPU from the system being measured); every scenario repeats ``runs`` times, systems alternating
within a repetition, so a ratio is always taken between two figures of the same repetition.
Backlogs are loaded with COPY in one transaction and the clock starts at its commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import multiprocessing
import os
import queue as queue_mod
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench import async_rpc, callers, pgqueuer_worker, rawloop, transactional
from bench.params import BenchParams
from bench.procs import BenchError, Proc, Processes, http_status, wait_until
from bench.servers import PgBouncer, Postgres, Redis, start_pgbouncer, start_redis
from bench.stats import latency_ms, spread
from pgqueue import embedded, sqlfiles
from pgqueue.claiming import claim_params

log = logging.getLogger(__name__)

NOOP_PAYLOAD = json.dumps({"args": [], "kwargs": {}, "headers": {}, "tenant": ""})
_CTX = multiprocessing.get_context("spawn")

Figures = dict[str, Any]
STATEMENT_TIMEOUT_MS = 120_000
STALL_SECONDS = 60.0


def _payload(tenant: str) -> str:
    return json.dumps({"args": [], "kwargs": {}, "headers": {}, "tenant": tenant})


def _connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A helper connection of the harness; unprepared, since it may go through PgBouncer.

    A statement timeout bounds every helper query, so a stuck server never hangs the run (a
    blocked query would also hold off Ctrl-C until it returns). PgBouncer ignores it.
    """
    return psycopg.connect(
        dsn,
        autocommit=autocommit,
        prepare_threshold=None,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    )


def _count(dsn: str, query: str) -> int:
    with _connect(dsn) as conn:
        row = conn.execute(query.encode()).fetchone()
    return int(row[0]) if row else 0


def _wait_empty(
    dsn: str, query: str, timeout: float, procs: list[Proc], params: tuple[Any, ...] = ()
) -> float:
    """Seconds until ``query`` (a count) reads 0, polled every 50 ms on one connection.

    Fails when the count has not moved for STALL_SECONDS (a stuck consumer) or after timeout.
    """
    t0 = last_move = time.perf_counter()
    last = -1
    with _connect(dsn) as conn:
        while True:
            row = conn.execute(query.encode(), params).fetchone()
            left = int(row[0]) if row is not None else -1
            now = time.perf_counter()
            if left == 0:
                return now - t0
            if left != last:
                last, last_move = left, now
            if now - last_move > STALL_SECONDS:
                raise BenchError(f"no progress for {STALL_SECONDS:g}s ({left} left)")
            if now - t0 > timeout:
                raise BenchError(f"backlog not drained within {timeout:g}s ({left} left)")
            for proc in procs:
                proc.check_alive()
            time.sleep(0.05)


def copy_messages(
    dsn: str,
    count: int,
    *,
    queue: str = "default",
    tenant: str = "",
    task: str = callers.NOOP_TASK,
    priority: int = 5,
    notify: bool = True,
) -> None:
    """COPY ``count`` no-op messages into pgqueue.message in one transaction (NOTIFY at commit)."""
    line = f"{queue}\t{task}\t{_payload(tenant)}\t{tenant}\t{priority}\n".encode()
    chunk = 10_000
    with _connect(dsn, autocommit=False) as conn:
        with conn.cursor().copy(
            "COPY pgqueue.message (queue, task_name, payload, tenant, priority) FROM STDIN"
        ) as copy:
            left = count
            while left > 0:
                n = min(chunk, left)
                copy.write(line * n)
                left -= n
        if notify:
            conn.execute("SELECT pg_notify('pgqueue_enqueue', %s)", (queue,))
        conn.commit()


def copy_raw(dsn: str, count: int) -> None:
    line = f"{NOOP_PAYLOAD}\n".encode()
    with _connect(dsn, autocommit=False) as conn:
        with conn.cursor().copy("COPY bench_raw.job (payload) FROM STDIN") as copy:
            left = count
            while left > 0:
                n = min(10_000, left)
                copy.write(line * n)
                left -= n
        conn.commit()


ANY_LEFT = "SELECT count(*) FROM (SELECT 1 FROM pgqueue.message LIMIT 1) one"


def reset_statements(dsn: str) -> None:
    with _connect(dsn) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def reset_tables(dsn: str, prefix: str) -> None:
    """Empty a system's tables (those whose qualified name starts with ``prefix``) between runs.

    TRUNCATE, not DELETE: the previous run's 50,000 deleted rows would otherwise sit at the
    front of every index (bloat is what the churn part of scenario 4 measures, not the drain),
    and, unlike VACUUM of an empty table, it keeps the planner statistics of a full backlog
    that ``prime`` gathered, so every system plans its dequeue as in production.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
                "WHERE format('%%s.%%s', schemaname, tablename) LIKE %s",
                (prefix + "%",),
            ).fetchall()
        ]
        if names:
            conn.execute(f"TRUNCATE {', '.join(names)}".encode())


def prime(dsn: str, prefix: str, load: Callable[[], None]) -> None:
    """Give a system's tables the statistics of a full backlog: load it, ANALYZE, empty them."""
    load()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    reset_tables(dsn, prefix)


def top_statements(dsn: str, limit: int = 8) -> list[dict[str, Any]]:
    """The statements that cost the server most since the last reset (pg_stat_statements)."""
    with _connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query, calls,
                   round(total_exec_time::numeric, 1)::float8 AS total_ms,
                   round(mean_exec_time::numeric, 4)::float8 AS mean_ms,
                   rows, wal_bytes::float8 AS wal_bytes
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC LIMIT %s
            """,
            (limit,),
        ).fetchall()
    keys = ["query", "calls", "total_ms", "mean_ms", "rows", "wal_bytes"]
    return [dict(zip(keys, row, strict=True)) for row in rows]


def relation_sizes(dsn: str) -> dict[str, float]:
    with _connect(dsn) as conn:
        row = conn.execute(
            """
            SELECT pg_relation_size('pgqueue.message'), pg_indexes_size('pgqueue.message'),
                   pg_total_relation_size('pgqueue.result'),
                   (SELECT n_live_tup FROM pg_stat_user_tables
                     WHERE relid = 'pgqueue.message'::regclass),
                   (SELECT n_dead_tup FROM pg_stat_user_tables
                     WHERE relid = 'pgqueue.message'::regclass),
                   (SELECT autovacuum_count FROM pg_stat_user_tables
                     WHERE relid = 'pgqueue.message'::regclass)
            """
        ).fetchone()
    assert row is not None
    keys = ["table_bytes", "index_bytes", "result_total_bytes", "live_tup", "dead_tup", "autovac"]
    return {k: float(v or 0) for k, v in zip(keys, row, strict=True)}


def _claim_params(limit: int) -> dict[str, Any]:
    """The parameters the supervisor passes to ``claim``, from the supervisor itself."""
    return claim_params("default", limit, 60.0, "bench")


def claim_latency(dsn: str, samples: int, limit: int = 1) -> list[float]:
    """Time the worker's own claim statement (named query ``claim``), one after another.

    Each claimed row is then deleted, untimed, as a worker's ack would: left leased, the rows
    sat in front of the next claims (each sample walked the ones before it) and, still leased
    for a minute, kept the drain window after this from ever seeing the backlog empty.
    """
    text = sqlfiles.query("claim")
    out: list[float] = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=5) as conn:
        for _ in range(samples):
            t0 = time.perf_counter()
            rows = conn.execute(text, _claim_params(limit)).fetchall()
            out.append(time.perf_counter() - t0)
            conn.execute(
                "DELETE FROM pgqueue.message WHERE msg_id = ANY(%s)", ([r[0] for r in rows],)
            )
    return out


def explain_claim(dsn: str, limit: int = 1) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim's statement, rolled back so it claims nothing.

    The claim runs inside the function ``pgqueue.claim``, whose own EXPLAIN shows one Function
    Scan; auto_explain with nested statements logs the plan of the statement inside, and
    ``client_min_messages = log`` hands that log line to this session as a notice.
    """
    plans: list[str] = []
    with _connect(dsn, autocommit=False) as conn:
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET LOCAL auto_explain.log_min_duration = 0",
            "SET LOCAL auto_explain.log_analyze = on",
            "SET LOCAL auto_explain.log_buffers = on",
            "SET LOCAL auto_explain.log_nested_statements = on",
            "SET LOCAL client_min_messages = log",
        ):
            conn.execute(setting.encode())
        conn.execute(sqlfiles.query("claim"), _claim_params(limit)).fetchall()
        conn.rollback()
    inner = [p for p in plans if "Update on message" in p]
    if not inner:
        raise BenchError(f"auto_explain gave no plan of the claim's statement: {plans!r}")
    # "duration: … plan:\nQuery Text: <the statement, many lines>\n<plan>": keep the plan,
    # whose first line is the first with a cost.
    lines = inner[0].splitlines()
    first = next((i for i, line in enumerate(lines) if "(cost=" in line), 0)
    return "\n".join(lines[first:])


class Bench:
    """One run's context: its servers, its processes, its parameters."""

    def __init__(self, params: BenchParams, workdir: Path, procs: Processes, pg: Postgres) -> None:
        self.p = params
        self.workdir = workdir
        self.procs = procs
        self.pg = pg
        self._redis: Redis | None = None
        self._bouncers: dict[str, PgBouncer] = {}
        self.profiles: dict[str, Any] = {}
        self.samples: dict[str, list[float]] = {}
        self.notes: list[str] = []

    # -- servers and consumers ---------------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = start_redis(self.procs)
        return self._redis

    def bouncer(self, database: str) -> PgBouncer:
        if database not in self._bouncers:
            self._bouncers[database] = start_pgbouncer(self.procs, self.pg, database)
        return self._bouncers[database]

    def pgqueue_worker(
        self,
        dsn: str,
        *,
        queue: str = "default",
        concurrency: int = 2,
        pooled: bool = False,
        poll_interval: float | None = None,
        pool: str = "process",
    ) -> Proc:
        port = embedded.free_port()
        argv = [
            "-m", "pgqueue.cli", "--log-level", "WARNING", "worker",
            "--tasks", "pgqueue.demo_tasks", "--queues", queue,
            "--concurrency", str(concurrency), "--pool", pool,
            "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        ]  # fmt: skip
        if pooled:
            argv.append("--pooled")
        if poll_interval is not None:
            argv += ["--poll-interval", str(poll_interval)]
        proc = self.procs.python("pgqueue-worker", argv, env={"PGQUEUE_DSN": dsn})
        proc.port = port
        return proc

    def wait_pgqueue_ready(self, workers: list[Proc]) -> None:
        for proc in workers:
            port = proc.port

            def ready(proc: Proc = proc, port: int = port) -> bool:
                proc.check_alive()
                return http_status(f"http://127.0.0.1:{port}/readyz") == 200

            wait_until(ready, 60, "pgqueue worker /readyz", pause=0.05)

    @contextmanager
    def pgqueue_workers(self, dsn: str, count: int, **kwargs: Any) -> Iterator[list[Proc]]:
        workers = [self.pgqueue_worker(dsn, **kwargs) for _ in range(count)]
        try:
            self.wait_pgqueue_ready(workers)
            self._warm_up(dsn, workers, str(kwargs.get("queue", "default")), count * 8)
            yield workers
        finally:
            self.procs.stop_all(workers)

    def _warm_up(self, dsn: str, workers: list[Proc], queue: str, count: int) -> None:
        """Run a few top-priority no-ops through fresh workers before anything is measured.

        /readyz answers 200 once the supervisor is connected, while its spawned slots may still
        be importing (seconds on a loaded 2-core machine): the first tasks would wait for them.
        """
        copy_messages(dsn, count, queue=queue, priority=10)
        query = "SELECT count(*) FROM pgqueue.message WHERE priority = 10 AND queue = %s"
        _wait_empty(dsn, query, 120, workers, (queue,))

    @contextmanager
    def celery_workers(self, queue: str, *, pool: str, count: int = 1) -> Iterator[list[Proc]]:
        """``pool`` "solo" (count solo workers) or "prefork" (one worker, -c 2)."""
        env = {"PGQUEUE_BENCH_REDIS_URL": self.redis.url}
        workers = []
        for i in range(count):
            argv = [
                "-m", "celery", "-A", "bench.celery_app", "worker",
                "--loglevel", "WARNING", "-Q", queue, "-n", f"bench{i}-{queue}@%h",
                "--pool", pool,
            ]  # fmt: skip
            if pool == "prefork":
                argv += ["--concurrency", "2"]
            workers.append(self.procs.python(f"celery-{pool}", argv, env=env))
        try:
            yield workers
        finally:
            self.procs.stop_all(workers)

    def pgqueuer_workers(self, dsn: str, count: int) -> AbstractContextManager[list[Proc]]:
        argv = ["-m", "bench.pgqueuer_worker", dsn, str(self.p.pgqueuer_batch)]
        return self._polling_workers("pgqueuer-worker", argv, dsn, count)

    def raw_workers(self, dsn: str, count: int) -> AbstractContextManager[list[Proc]]:
        argv = ["-m", "bench.rawloop", dsn, str(self.p.raw_batch)]
        return self._polling_workers("raw-loop", argv, dsn, count)

    @contextmanager
    def _polling_workers(
        self, name: str, argv: list[str], dsn: str, count: int
    ) -> Iterator[list[Proc]]:
        """``count`` processes of ``argv`` with no readiness probe (PgQueuer's, the raw loop)."""
        workers = [self.procs.python(name, argv) for _ in range(count)]
        try:
            self._wait_connections(dsn, count, workers)
            yield workers
        finally:
            self.procs.stop_all(workers)

    def _wait_connections(self, dsn: str, count: int, workers: list[Proc]) -> None:
        """Consumers without a readiness probe: up once their connections idle in the database."""
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )

        def up() -> bool:
            for proc in workers:
                proc.check_alive()
            return _count(dsn, query) >= count

        wait_until(up, 60, "consumers to connect", pause=0.1)
        time.sleep(1.0)  # let them reach their first idle wait (LISTEN, first empty poll)

    def _drain_timeout(self, jobs: int) -> float:
        return max(120.0, jobs / 50.0)

    # -- 1. fire-and-forget drain ------------------------------------------------------------------

    def drain(self) -> Figures:
        p = self.p
        dsn_pq = self.pg.fresh_database("bench_drain_pgqueue")
        dsn_pqr = self.pg.fresh_database("bench_drain_pgqueuer", pgqueue_schema=False)
        asyncio.run(pgqueuer_worker.install(dsn_pqr))
        dsn_raw = self.pg.fresh_database("bench_drain_raw", pgqueue_schema=False)
        with psycopg.connect(dsn_raw, autocommit=True) as conn:
            conn.execute(rawloop.SCHEMA.encode())
        systems = (
            (dsn_pq, "pgqueue.message", lambda: copy_messages(dsn_pq, p.drain_jobs)),
            (
                dsn_pqr,
                "public.pgqueuer",
                lambda: asyncio.run(pgqueuer_worker.enqueue(dsn_pqr, p.drain_jobs)),
            ),
            (dsn_raw, "bench_raw.job", lambda: copy_raw(dsn_raw, p.drain_jobs)),
        )
        for dsn, prefix, load in systems:
            prime(dsn, prefix, load)
        runs: list[dict[str, float]] = []
        timeout = self._drain_timeout(p.drain_jobs)
        for r in range(p.runs):
            last = r == p.runs - 1
            run: dict[str, float] = {}
            for dsn, prefix, _ in systems:
                reset_tables(dsn, prefix)  # consumers stopped: TRUNCATE waits for no one
            with self.pgqueue_workers(
                dsn_pq, p.drain_workers, concurrency=p.pgqueue_concurrency
            ) as workers:
                reset_statements(dsn_pq)
                copy_messages(dsn_pq, p.drain_jobs)
                took = _wait_empty(dsn_pq, "SELECT count(*) FROM pgqueue.message", timeout, workers)
                run["pgqueue"] = p.drain_jobs / took
                if last:
                    self.profiles["drain.pgqueue"] = top_statements(dsn_pq)
            with self.pgqueuer_workers(dsn_pqr, p.drain_workers) as workers:
                reset_statements(dsn_pqr)
                asyncio.run(pgqueuer_worker.enqueue(dsn_pqr, p.drain_jobs))
                took = _wait_empty(dsn_pqr, "SELECT count(*) FROM pgqueuer", timeout, workers)
                run["pgqueuer"] = p.drain_jobs / took
                if last:
                    self.profiles["drain.pgqueuer"] = top_statements(dsn_pqr)
            try:
                with self.raw_workers(dsn_raw, p.drain_workers) as workers:
                    copy_raw(dsn_raw, p.drain_jobs)
                    took = _wait_empty(
                        dsn_raw, "SELECT count(*) FROM bench_raw.job", timeout, workers
                    )
                    run["raw_skip_locked"] = p.drain_jobs / took
            except BenchError as exc:
                # The ceiling is a reference, not a contender: note a failure, keep the run.
                self.notes.append(f"drain run {r + 1}: raw loop failed: {exc}")
                run["raw_skip_locked"] = math.nan
                with _connect(dsn_raw) as conn:
                    conn.execute("TRUNCATE bench_raw.job")
            log.info("drain run %d: %s", r + 1, {k: round(v) for k, v in run.items()})
            runs.append(run)
        return {
            "unit": "jobs/s",
            "runs": runs,
            "summary": {k: spread([run[k] for run in runs]) for k in runs[0]},
            "ratios": {
                "pgqueue_vs_pgqueuer": spread([run["pgqueue"] / run["pgqueuer"] for run in runs]),
                "pgqueue_vs_raw": spread([run["pgqueue"] / run["raw_skip_locked"] for run in runs]),
            },
        }

    # -- 2. sequential RPC latency -----------------------------------------------------------------

    def _pooled_dsn(self, database: str) -> tuple[str, str]:
        """The poll-only DSN: through PgBouncer (transaction mode) when it starts, else direct."""
        if self.p.use_pgbouncer:
            try:
                return self.bouncer(database).dsn_for(database), "pgbouncer-transaction"
            except BenchError as exc:
                self.notes.append(f"PgBouncer did not start ({exc}); poll-only ran direct")
        return self.pg.dsn_for(database), "direct-with-pooled-flags"

    def rpc_latency(self) -> Figures:
        p = self.p
        dsn = self.pg.fresh_database("bench_rpc")
        pooled_dsn, pooled_path = self._pooled_dsn("bench_rpc")
        # pgqueue_inline runs tasks in the worker process, like the Celery solo worker it is
        # compared with; pgqueue_direct and _poll run them in killable child processes.
        systems = ["pgqueue_direct", "pgqueue_inline", "pgqueue_poll", "celery"]
        runs: list[dict[str, dict[str, float]]] = []
        for r in range(p.runs):
            run: dict[str, dict[str, float]] = {}
            for system in systems:
                samples = self._latency_of(system, dsn, pooled_dsn, profile=r == p.runs - 1)
                run[system] = latency_ms(samples)
                self.samples.setdefault(f"rpc_latency.{system}", []).extend(samples)
            log.info(
                "rpc latency run %d p50 ms: %s",
                r + 1,
                {k: round(v["p50_ms"], 2) for k, v in run.items()},
            )
            runs.append(run)
        summary = {
            system: {
                key: spread([run[system][key] for run in runs])
                for key in ("p50_ms", "p95_ms", "p99_ms")
            }
            for system in systems
        }
        ratio = {
            f"{s}_p50_vs_celery": spread(
                [run[s]["p50_ms"] / run["celery"]["p50_ms"] for run in runs]
            )
            for s in ("pgqueue_direct", "pgqueue_inline", "pgqueue_poll")
        }
        return {
            "unit": "ms",
            "poll_only_path": pooled_path,
            "runs": runs,
            "summary": summary,
            "ratios": ratio,
        }

    def _latency_of(self, system: str, dsn: str, pooled_dsn: str, *, profile: bool) -> list[float]:
        p = self.p
        if system == "celery":
            with self.celery_workers("lat", pool="solo"):
                celery = {"kind": "celery", "redis_url": self.redis.url, "queue": "lat"}
                return callers.sequential(celery, p.rpc_warmup, p.rpc_calls)
        pooled = system == "pgqueue_poll"
        worker_dsn = pooled_dsn if pooled else dsn
        with self.pgqueue_workers(
            worker_dsn,
            1,
            queue=system,
            concurrency=2,
            pooled=pooled,
            poll_interval=p.pooled_poll_interval if pooled else None,
            pool="inline" if system == "pgqueue_inline" else "process",
        ):
            spec: dict[str, Any] = {
                "kind": "pgqueue",
                "dsn": worker_dsn,
                "pooled": pooled,
                "queue": system,
            }
            if profile:
                reset_statements(dsn)
            samples = callers.sequential(spec, p.rpc_warmup, p.rpc_calls)
            if profile:
                self.profiles[f"rpc_latency.{system}"] = top_statements(dsn)
            return samples

    # -- 3. RPC throughput -------------------------------------------------------------------------

    def rpc_throughput(self) -> Figures:
        """8 callers against 2 task processes, in each caller shape, for each like-for-like pair.

        Shapes: ``threads``, the issue's 8 caller threads, in one process sharing one client (a
        threaded web server process); ``processes``, 8 single-threaded caller processes with a
        client each (gunicorn's sync workers). Pairs: tasks in two killable child processes
        of one worker (pgqueue ``--concurrency 2`` vs Celery prefork -c 2), and tasks in the
        worker process (2 x ``--pool inline`` vs 2 Celery solo workers).
        """
        p = self.p
        dsn = self.pg.fresh_database("bench_tput")
        runs: list[dict[str, dict[str, float]]] = []
        for r in range(p.runs):
            last = r == p.runs - 1
            run: dict[str, dict[str, float]] = {}
            # Shaped like the Celery side: one worker with two task processes (prefork -c 2),
            # two single-process workers (two solo workers).
            for system, pool, count in (("pgqueue", "process", 1), ("pgqueue_inline", "inline", 2)):
                with self.pgqueue_workers(dsn, count, queue="tput", concurrency=2, pool=pool):
                    spec = {"kind": "pgqueue", "dsn": dsn, "queue": "tput", "echo": True}
                    for shape in p.caller_shapes:
                        if last:
                            reset_statements(dsn)
                        run[f"{system}.{shape}"] = self._load(spec, system, shape)
                        if last:
                            self.profiles[f"rpc_throughput.{system}.{shape}"] = top_statements(dsn)
            for system, pool, count in (("celery", "prefork", 1), ("celery_solo", "solo", 2)):
                with self.celery_workers("tput", pool=pool, count=count):
                    spec = {
                        "kind": "celery",
                        "redis_url": self.redis.url,
                        "queue": "tput",
                        "echo": True,
                    }
                    for shape in p.caller_shapes:
                        run[f"{system}.{shape}"] = self._load(spec, system, shape)
            log.info(
                "rpc throughput run %d calls/s: %s",
                r + 1,
                {k: round(v["calls_per_s"]) for k, v in run.items()},
            )
            runs.append(run)
        keys = ("calls_per_s", "p50_ms", "p99_ms")
        pairs = {
            f"{a}_vs_{b}.{shape}": (f"{a}.{shape}", f"{b}.{shape}")
            for shape in p.caller_shapes
            for a, b in (("pgqueue", "celery"), ("pgqueue_inline", "celery_solo"))
        }
        return {
            "unit": "calls/s",
            "callers": (
                f"threads: 1 process x {p.callers} threads sharing one client; "
                f"processes: {p.callers} processes x 1 thread; each call echoes a number back "
                "and the caller checks it"
            ),
            "celery_workers": "celery: 1 prefork worker -c 2; celery_solo: 2 solo workers",
            "pgqueue_workers": (
                "pgqueue: 1 pgqueue worker --concurrency 2; "
                "pgqueue_inline: 2 x pgqueue worker --pool inline"
            ),
            "runs": runs,
            "summary": {s: {k: spread([run[s][k] for run in runs]) for k in keys} for s in runs[0]},
            "ratios": {
                name: spread([run[a]["calls_per_s"] / run[b]["calls_per_s"] for run in runs])
                for name, (a, b) in pairs.items()
            },
        }

    def _load(self, spec: dict[str, Any], system: str, shape: str) -> dict[str, float]:
        """``callers`` calling in a loop for ``throughput_seconds``, in the given shape."""
        p = self.p
        processes, threads = (1, p.callers) if shape == "threads" else (p.callers, 1)
        barrier = _CTX.Barrier(processes + 1)
        results: multiprocessing.Queue[list[float] | str] = _CTX.Queue()
        workers = [
            _CTX.Process(
                target=_caller_main,
                args=(spec, i, threads, barrier, p.throughput_seconds, results),
                name=f"bench-caller-{i}",
                daemon=True,
            )
            for i in range(processes)
        ]
        for w in workers:
            w.start()
        try:
            try:
                barrier.wait(timeout=120)
            except threading.BrokenBarrierError:
                try:
                    why = results.get(timeout=10)
                except queue_mod.Empty:
                    why = "no caller reported why"
                raise BenchError(f"{system} ({shape}) callers did not start: {why}") from None
            t0 = time.perf_counter()
            collected: list[list[float]] = []
            for _ in workers:
                got = results.get(timeout=p.throughput_seconds + 60)
                if isinstance(got, str):
                    raise BenchError(f"{system} ({shape}) caller failed: {got}")
                collected.append(got)
            elapsed = time.perf_counter() - t0
        finally:
            for w in workers:
                w.join(timeout=10)
                if w.is_alive():
                    w.kill()
        samples = [s for part in collected for s in part]
        self.samples[f"rpc_throughput.{system}.{shape}"] = samples
        figures = latency_ms(samples)
        figures["calls_per_s"] = len(samples) / elapsed
        figures["window_s"] = elapsed
        return figures

    # -- 4. backlog scaling and churn --------------------------------------------------------------

    def backlog(self) -> Figures:
        p = self.p
        sizes: dict[str, Any] = {}
        for size in p.backlog_sizes:
            dsn = self.pg.fresh_database("bench_backlog")
            t0 = time.perf_counter()
            copy_messages(dsn, size, notify=False)
            load_s = time.perf_counter() - t0
            with _connect(dsn) as conn:
                conn.execute("VACUUM ANALYZE pgqueue.message")
            claim_runs = [latency_ms(claim_latency(dsn, p.claim_samples)) for _ in range(p.runs)]
            plan = explain_claim(dsn)
            drain_runs = []
            for _ in range(p.runs):
                # Each window starts from the full backlog again (the previous one drained some).
                missing = size - _count(dsn, "SELECT count(*) FROM pgqueue.message")
                if missing > 0:
                    copy_messages(dsn, missing, notify=False)
                with self.pgqueue_workers(dsn, 2, concurrency=p.pgqueue_concurrency) as workers:
                    before = _count(dsn, "SELECT count(*) FROM pgqueue.message")
                    t_start = time.perf_counter()
                    # The window ends early when the backlog is gone: a 10k backlog drained
                    # in 1.5 s would otherwise read as 10,000 / 10 s.
                    stop_at = t_start + p.backlog_drain_seconds
                    while time.perf_counter() < stop_at and _count(dsn, ANY_LEFT):
                        time.sleep(0.05)
                    elapsed = time.perf_counter() - t_start
                    after = _count(dsn, "SELECT count(*) FROM pgqueue.message")
                    for w in workers:
                        w.check_alive()
                drain_runs.append((before - after) / elapsed)
            sizes[str(size)] = {
                "rows": size,
                "load_s": load_s,
                "load_rows_per_s": size / load_s,
                "claim_runs": claim_runs,
                "claim_p50_ms": spread([c["p50_ms"] for c in claim_runs]),
                "claim_p99_ms": spread([c["p99_ms"] for c in claim_runs]),
                "drain_runs": drain_runs,
                "drain_jobs_per_s": spread(drain_runs),
                "explain_claim": plan,
            }
            log.info(
                "backlog %d: claim p50 %.3f ms, drain %.0f jobs/s",
                size,
                sizes[str(size)]["claim_p50_ms"]["median"],
                sizes[str(size)]["drain_jobs_per_s"]["median"],
            )
        smallest, largest = str(min(p.backlog_sizes)), str(max(p.backlog_sizes))
        claim_ratio = [
            sizes[largest]["claim_runs"][i]["p50_ms"] / sizes[smallest]["claim_runs"][i]["p50_ms"]
            for i in range(p.runs)
        ]
        return {
            "sizes": sizes,
            "ratios": {f"claim_p50_{largest}_vs_{smallest}": spread(claim_ratio)},
            "churn": self._churn(),
        }

    def _churn(self) -> Figures:
        """Keep a steady backlog flowing for ``churn_seconds``; sizes before/after show bloat."""
        p = self.p
        dsn = self.pg.fresh_database("bench_churn")
        copy_messages(dsn, p.churn_backlog, notify=False)
        with _connect(dsn) as conn:
            conn.execute("VACUUM ANALYZE pgqueue.message")
        before = relation_sizes(dsn)
        claim_before = latency_ms(claim_latency(dsn, p.claim_samples))
        stop = threading.Event()
        produced = [0]
        errors: list[str] = []

        def producer() -> None:
            try:
                with _connect(dsn) as conn:
                    while not stop.is_set():
                        row = conn.execute("SELECT count(*) FROM pgqueue.message").fetchone()
                        missing = p.churn_backlog - int(row[0] if row else 0)
                        if missing > 0:
                            copy_messages(dsn, missing)
                            produced[0] += missing
                        stop.wait(0.1)
            except psycopg.Error as exc:
                errors.append(str(exc))

        with self.pgqueue_workers(dsn, 2, concurrency=p.pgqueue_concurrency) as workers:
            thread = threading.Thread(target=producer, name="bench-churn-producer", daemon=True)
            t0 = time.perf_counter()
            thread.start()
            try:
                while time.perf_counter() - t0 < p.churn_seconds:
                    time.sleep(min(1.0, p.churn_seconds))
                    for w in workers:
                        w.check_alive()
            finally:
                stop.set()
                thread.join(timeout=30)
            elapsed = time.perf_counter() - t0
        if errors:
            raise BenchError(f"churn producer failed: {errors[0]}")
        after = relation_sizes(dsn)
        claim_after = latency_ms(claim_latency(dsn, p.claim_samples))
        return {
            "seconds": elapsed,
            "backlog": p.churn_backlog,
            "messages_through": produced[0],
            "through_per_s": produced[0] / elapsed,
            "before": before,
            "after": after,
            "claim_before": claim_before,
            "claim_after": claim_after,
            "table_growth": (after["table_bytes"] / before["table_bytes"])
            if before["table_bytes"]
            else math.nan,
            "index_growth": (after["index_bytes"] / before["index_bytes"])
            if before["index_bytes"]
            else math.nan,
        }

    # -- 5. fairness -------------------------------------------------------------------------------

    def fairness(self) -> Figures:
        p = self.p
        runs = []
        for _ in range(p.runs):
            dsn = self.pg.fresh_database("bench_fair")
            copy_messages(dsn, p.fairness_big, tenant="big", notify=False)
            with _connect(dsn) as conn:
                conn.execute("VACUUM ANALYZE pgqueue.message")
            with self.pgqueue_workers(dsn, 2, concurrency=p.pgqueue_concurrency) as workers:
                before = _count(dsn, "SELECT count(*) FROM pgqueue.message")
                t0 = time.perf_counter()
                spec = {"kind": "pgqueue", "dsn": dsn, "tenant": "small"}
                samples = callers.sequential(spec, 0, p.fairness_small_calls)
                elapsed = time.perf_counter() - t0
                after = _count(dsn, "SELECT count(*) FROM pgqueue.message")
                for w in workers:
                    w.check_alive()
            big_rate = (before - after) / elapsed if elapsed > 0 else math.nan
            figures = latency_ms(samples)
            figures["big_backlog_at_start"] = float(before)
            figures["big_backlog_at_end"] = float(after)
            figures["big_jobs_per_s"] = big_rate
            # Without tenant keys the small tenant's first call would queue behind all of it.
            figures["fifo_wait_estimate_s"] = before / big_rate if big_rate else math.nan
            self.samples.setdefault("fairness.small_tenant", []).extend(samples)
            runs.append(figures)
            log.info(
                "fairness: small tenant p50 %.2f ms behind %d messages", figures["p50_ms"], before
            )
        keys = ("p50_ms", "p95_ms", "p99_ms", "big_backlog_at_end", "fifo_wait_estimate_s")
        return {
            "unit": "ms",
            "runs": runs,
            "summary": {k: spread([run[k] for run in runs]) for k in keys},
        }

    # -- 6. fleet ----------------------------------------------------------------------------------

    def fleet(self) -> Figures:
        from bench import fleet  # noqa: PLC0415 - fleet imports this module for its helpers

        return fleet.run_fleet(self)

    # -- 7. enqueue in the caller's transaction, 8. AsyncClient --------------------------------

    def tx_enqueue(self) -> Figures:
        return transactional.run_tx_enqueue(self)

    def async_rpc(self) -> Figures:
        return async_rpc.run_async_rpc(self)


def _caller_main(
    spec: dict[str, Any],
    index: int,
    threads: int,
    barrier: Any,
    duration: float,
    results: multiprocessing.Queue[list[float] | str],
) -> None:
    """Body of one spawned throughput caller process: ``threads`` threads share one client."""
    try:
        with callers.caller(spec) as call:
            samples = _call_in_threads(call, index, threads, barrier, duration)
        results.put(samples)
    except Exception as exc:
        with _suppress_queue_errors():
            results.put(f"{type(exc).__name__}: {exc}")
        raise


def _call_in_threads(
    call: callers.Call, index: int, threads: int, barrier: Any, duration: float
) -> list[float]:
    """Each thread warms up with one call (Celery opens a result consumer per thread), then all
    processes meet at ``barrier`` and call for ``duration``. Echo numbers are unique per
    process and thread, so no reply can pass for another call's."""
    warmed = threading.Barrier(threads + 1)
    start = threading.Event()
    window = {"end": 0.0}  # the threads stop at once unless the run starts
    parts: list[list[float]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def body(t: int) -> None:
        token = (index << 32) + t
        try:
            call(token)
            warmed.wait()
            start.wait()
            while time.perf_counter() < window["end"]:
                token += threads
                t0 = time.perf_counter()
                call(token)
                parts[t].append(time.perf_counter() - t0)
        except threading.BrokenBarrierError:
            pass  # another thread failed its warm-up: that failure is reported
        except BaseException as exc:  # reported to the run, which fails
            failures.append(exc)
            warmed.abort()

    pool = [
        threading.Thread(target=body, args=(t,), name=f"bench-call-{t}") for t in range(threads)
    ]
    for thread in pool:
        thread.start()
    try:
        try:
            warmed.wait()
        except threading.BrokenBarrierError:
            barrier.abort()  # a thread failed its warm-up: raised below, after the join
        else:
            barrier.wait(timeout=120)
            window["end"] = time.perf_counter() + duration
    finally:
        start.set()
        for thread in pool:
            thread.join()
    if failures:
        raise failures[0]
    return [s for part in parts for s in part]


@contextmanager
def _suppress_queue_errors() -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError, queue_mod.Full):
        print("bench caller could not report its failure", file=sys.stderr)


def versions(pg: Postgres, redis: Redis | None) -> dict[str, str]:
    """Versions of everything compared, for the JSON."""
    import importlib.metadata as md  # noqa: PLC0415
    import platform  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    out = {"python": platform.python_version(), "postgres": pg.version()}
    for dist in ("pgqueue", "pgqueuer", "celery", "kombu", "redis", "psycopg", "asyncpg", "uvloop"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "absent"
    for binary, flag in (("redis-server", "--version"), ("pgbouncer", "--version")):
        try:
            done = subprocess.run(
                [binary, flag], capture_output=True, text=True, timeout=10, check=False
            )
            out[binary] = done.stdout.strip().splitlines()[0] if done.stdout.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[binary] = "absent"
    # Workers run the working tree: say which core was measured, and whether it was edited.
    repo = Path(__file__).resolve().parents[1]  # bench/ sits at the repository root
    for key, argv in (
        ("core_revision", ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]),
        ("core_edited", ["git", "-C", str(repo), "status", "--porcelain", "--", "worker/pgqueue"]),
    ):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            text = done.stdout.strip()
            out[key] = text if key == "core_revision" else ("yes" if text else "no")
        except (OSError, subprocess.TimeoutExpired):
            out[key] = "unknown"
    out["cpus"] = str(os.cpu_count())
    out["redis_used"] = "yes" if redis is not None else "no"
    return out
