"""The scheduler thread of ``pgqueue worker``: enqueues the ticks of periodic schedules.

Every worker runs one (``--periodic``, on by default) for the schedules of the task modules it
imported; there is no leader. Each scheduler computes the same ticks and fires each with the
named query ``periodic_fire``, which inserts the (schedule, tick) row and the message in one
statement: the row's primary key lets exactly one of any number of racing schedulers insert, and
the message goes in with it or not at all, so a worker killed at any point leaves either both or
neither (then another worker fires the tick). Clock skew between workers moves when a tick is
enqueued, never how often.

Decisions (which ticks, per grace and catch-up policy) are ``periodic.plan()``'s; the
clock is injectable for the tests. The thread has its own connection (the supervisor loop never
waits for it), reconnects with a backoff after an outage, and prunes tick rows older than
``TICK_RETENTION`` every ``PRUNE_EVERY``, keeping the latest of each schedule.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgqueue import db, metrics
from pgqueue.errors import ConfigurationError
from pgqueue.periodic import Schedule, configured, plan, schedules
from pgqueue.settings import WorkerSettings
from pgqueue.store import fleet
from pgqueue.tasks import registered

log = logging.getLogger(__name__)

TICK_RETENTION = 86400.0  # seconds a tick row is kept (the latest of a schedule: always)
PRUNE_EVERY = 300.0  # seconds between prunes by one scheduler
PRUNE_BATCH = 1000
MAX_SLEEP = 30.0  # the scheduler looks at least this often (a clock jump, a new day)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """A daemon thread firing the ticks of ``schedules`` until :meth:`stop`."""

    def __init__(
        self,
        dsn: str,
        schedules: list[Schedule],
        *,
        worker_id: str,
        pooled: bool = False,
        connect_timeout: float = 5.0,
        clock: Clock = utc_now,
    ) -> None:
        self.schedules = schedules
        self.fired = 0  # ticks this scheduler enqueued (lost races not counted)
        self._dsn = dsn
        self._worker_id = worker_id
        self._pooled = pooled
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._cursors: dict[str, datetime] = {}
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._next_prune = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgqueue-periodic", daemon=True)

    def start(self) -> None:
        log.info(
            "periodic: %d schedules (%s)",
            len(self.schedules),
            ", ".join(f"{s.key} {s.expression!r} {s.tz}" for s in self.schedules),
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (if started) and close the connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                wait = self.turn()
                backoff = 0.5
            except psycopg.errors.UndefinedTable:
                metrics.DB_ERRORS.labels("periodic").inc()
                log.error(
                    "periodic: the table pgqueue.periodic_tick is missing (schema older than "
                    "0008): run `pgqueue migrate`; no schedule fires until then"
                )
                self._close()
                wait = MAX_SLEEP
            except psycopg.Error as exc:
                metrics.DB_ERRORS.labels("periodic").inc()
                log.warning("periodic: database unavailable (%s); retrying", type(exc).__name__)
                self._close()
                wait = backoff
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug must not silently end scheduling for the worker's lifetime.
                log.exception("periodic: scheduler turn failed; retrying")
                self._close()
                wait = backoff
                backoff = min(backoff * 2, 5.0)
            self._stop.wait(wait)

    def turn(self) -> float:
        """Fire what is due now; returns the seconds until the next tick (capped)."""
        conn = self._connection()
        now = self._clock()
        if not self._cursors:
            self._cursors = self._starting_cursors(conn, now)
        soonest = MAX_SLEEP
        for schedule in self.schedules:
            decided = plan(schedule, self._cursors[schedule.key], now)
            if decided.missed is not None:
                first, last = decided.missed
                log.warning(
                    "periodic: %s missed its ticks from %s to %s (catch_up=%s: %s)",
                    schedule.key,
                    first.isoformat(),
                    last.isoformat(),
                    schedule.catch_up,
                    "firing them" if not decided.dropped else "some dropped",
                )
            for tick in decided.fire:
                self._fire(conn, schedule, tick)
            self._cursors[schedule.key] = decided.cursor
            upcoming = schedule.cron.next_after(decided.cursor)
            if upcoming is not None:
                soonest = min(soonest, (upcoming - self._clock()).total_seconds())
        if time.monotonic() >= self._next_prune:
            self._prune(conn, now - timedelta(seconds=TICK_RETENTION))
        return max(0.0, soonest)

    def _starting_cursors(
        self, conn: psycopg.Connection[dict[str, Any]], now: datetime
    ) -> dict[str, datetime]:
        """The last tick fired of each schedule; now for one never fired (no backfill)."""
        rows = fleet.last_ticks(conn, [s.key for s in self.schedules])
        last = {r["schedule"]: r["tick_at"] for r in rows}
        return {s.key: last.get(s.key, now) for s in self.schedules}

    def _fire(
        self, conn: psycopg.Connection[dict[str, Any]], schedule: Schedule, tick: datetime
    ) -> None:
        row = fleet.fire(
            conn,
            {
                "schedule": schedule.key,
                "tick_at": tick,
                "task_name": schedule.task,
                "queue": schedule.queue,
                "cron": schedule.expression,
                "tz": schedule.tz,
                "worker_id": self._worker_id,
                "payload": schedule.payload(tick),
                "priority": schedule.priority,
            },
        )
        if row is not None:
            self.fired += 1
            metrics.PERIODIC_FIRED.labels(schedule.key).inc()
            log.debug("periodic: %s tick %s → msg %s", schedule.key, tick, row["msg_id"])

    def _prune(self, conn: psycopg.Connection[dict[str, Any]], cutoff: datetime) -> None:
        self._next_prune = time.monotonic() + PRUNE_EVERY
        while not self._stop.is_set():
            row = fleet.prune_ticks(conn, cutoff, PRUNE_BATCH)
            if row is None or row["deleted"] < PRUNE_BATCH:
                return

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(
                self._dsn, pooled=self._pooled, connect_timeout=self._connect_timeout
            )
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


def for_worker(settings: WorkerSettings, worker_id: str) -> Scheduler | None:
    """The started scheduler of a worker, or None (periodic off, or no schedules at all).

    Raises ConfigurationError naming the entry when a configured schedule (``--schedules``)
    names a task the worker's modules do not register, or reuses another schedule's key.
    """
    decorated = schedules()
    extra = configured(settings.schedules, registered())
    clash = sorted(set(decorated) & {s.key for s in extra})
    if clash:
        raise ConfigurationError(
            "schedules", f"{clash[0]!r} is already a @periodic schedule; give this one a key"
        )
    found = [*decorated.values(), *extra]
    if not settings.periodic or not found:
        return None
    scheduler = Scheduler(
        settings.dsn,
        found,
        worker_id=worker_id,
        pooled=settings.pooled,
        connect_timeout=settings.connect_timeout,
    )
    scheduler.start()
    return scheduler


def last_ticks(
    dsn: str, *, pooled: bool = False, connect_timeout: float = 5.0
) -> dict[str, dict[str, Any]]:
    """The latest tick row of every schedule ever fired, by schedule key."""
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        rows = fleet.every_last_tick(conn)
    return {str(r["schedule"]): dict(r) for r in rows}
