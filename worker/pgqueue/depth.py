"""Queue depth without the operator: one sampler per database, and the series it exports.

The operator's depth sampler exports ``pgqueue_queue_depth{queue,state}``,
``pgqueue_queue_oldest_age_seconds{queue}``, ``pgqueue_dead_letter_depth{queue}`` and
``pgqueue_queue_paused{queue}``; this module
exports the same names and labels from ``pgqueue exporter`` or a worker, so dashboards and alerts
work with either source (they aggregate with ``max by (namespace, queue)``, never a sum).

Counting scans the message table, so the cost must not grow with the fleet: a sampler holds a
session advisory lock on its own connection while it samples, and every other sampler on the same
database (exporter replicas, workers with ``PGQUEUE_DEPTH_INTERVAL``) stands by, tries the lock
once per interval on a short connection, and exports no depth series meanwhile. Behind a
transaction pooler a session lock is not ours, so a pooled sampler samples without it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field, ValidationError

from pgqueue import admin, db
from pgqueue.admin import QueueStats
from pgqueue.errors import ConfigurationError
from pgqueue.settings import ConnectionSettings
from pgqueue.store import control, fleet, inspection

log = logging.getLogger("pgqueue.depth")

STATES = ("ready", "in_flight", "delayed", "dead")


class DepthSettings(ConnectionSettings):
    """Depth sampling in a worker, read from the environment only (not a worker option)."""

    depth_interval: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Seconds between queue-depth samples in a worker; 0 (the default) turns sampling off. "
            "Only one process per database samples at a time (an advisory lock)."
        ),
    )


@dataclass(frozen=True, slots=True)
class Sample:
    stats: tuple[QueueStats, ...]
    gate_enabled: bool | None
    taken_at: float
    """Wall clock (``time.time()``) when the sample was read."""
    seconds: float
    """How long the read took."""


class DepthSampler:
    """Samples per-queue depth every ``interval`` seconds while it holds the sampler lock."""

    def __init__(
        self,
        dsn: str,
        *,
        interval: float = 15.0,
        pooled: bool = False,
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.interval = interval
        self.pooled = pooled
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[dict[str, object]] | None = None
        self._guard = threading.Lock()
        self._sample: Sample | None = None
        self._known: set[str] = set()
        self._last_ok: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.samples = 0

    @property
    def sample(self) -> Sample | None:
        """The last sample while this process is the sampler; None on standby or after an error."""
        with self._guard:
            return self._sample

    @property
    def leader(self) -> bool:
        return self.sample is not None

    def healthy(self) -> bool:
        """The database answered (as sampler or standby) within three intervals."""
        last = self._last_ok
        slack = 3 * self.interval + self.connect_timeout
        return last is not None and time.monotonic() - last <= slack

    def tick(self) -> None:
        """One turn: take (or keep) the sampler lock, then sample; on standby, export nothing."""
        try:
            if (self._conn is None or self._conn.closed) and not self._acquire():
                self._publish(None)
                self._last_ok = time.monotonic()
                return
            assert self._conn is not None
            self._publish(self._read(self._conn))
            self._last_ok = time.monotonic()
        except psycopg.Error as exc:
            self.errors += 1
            # One line, no DSN: the message of libpq names host and port at most.
            log.warning("depth sample failed: %s", " ".join(str(exc).split()))
            self._close()
            self._publish(None)

    def _acquire(self) -> bool:
        conn = db.connect(self.dsn, pooled=self.pooled, connect_timeout=self.connect_timeout)
        if not self.pooled:
            row = fleet.depth_sampler_lock(conn)
            if not row or not row["held"]:
                conn.close()
                return False
            log.info("depth sampler: this process samples queue depth every %gs", self.interval)
        self._conn = conn
        return True

    def _read(self, conn: psycopg.Connection[dict[str, object]]) -> Sample:
        started = time.monotonic()
        rows = inspection.queue_stats(conn)
        flag = control.flag(conn, admin.GATE_FLAG)
        stats = tuple(QueueStats(**row) for row in rows)
        return Sample(
            stats=self._with_drained(stats),
            gate_enabled=None if flag is None else bool(flag["enabled"]),
            taken_at=time.time(),
            seconds=time.monotonic() - started,
        )

    def _with_drained(self, stats: tuple[QueueStats, ...]) -> tuple[QueueStats, ...]:
        # A queue that emptied has no rows left; it reads 0 rather than vanishing from a graph.
        seen = {s.queue for s in stats}
        self._known |= seen
        zeros = (QueueStats(q, 0, 0, 0, 0, 0.0) for q in sorted(self._known - seen))
        return tuple(sorted((*stats, *zeros), key=lambda s: s.queue))

    def _publish(self, sample: Sample | None) -> None:
        with self._guard:
            self._sample = sample
            if sample is not None:
                self.samples += 1

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def run(self) -> None:
        """Sample now, then every interval, until :meth:`stop`."""
        while True:
            self.tick()
            if self._stop.wait(self.interval):
                break
        self._close()  # closing the session releases the lock for a standby

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="pgqueue-depth", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class DepthCollector(Collector):
    """The sampler's last sample as Prometheus series, read at scrape time."""

    def __init__(self, sampler: DepthSampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        sample = self.sampler.sample
        yield GaugeMetricFamily(
            "pgqueue_depth_sampler_leader",
            "1 when this process holds the depth sampler lock and exports queue depth, else 0.",
            value=1 if sample is not None else 0,
        )
        yield CounterMetricFamily(
            "pgqueue_depth_sample_errors",
            "Depth samples that failed (database unreachable or the query failed).",
            value=self.sampler.errors,
        )
        if sample is None:
            return
        depth = GaugeMetricFamily(
            "pgqueue_queue_depth",
            "Messages per queue and state (ready, in_flight, delayed, dead) at the last sample.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "pgqueue_queue_oldest_age_seconds",
            "Age of the oldest ready message per queue at the last sample, seconds.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "pgqueue_dead_letter_depth",
            "Dead letters per queue at the last sample.",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "pgqueue_queue_paused",
            "1 when no worker claims from the queue (pgqueue queue pause), else 0, at the last "
            "sample.",
            labels=["queue"],
        )
        for s in sample.stats:
            for state, value in zip(STATES, (s.ready, s.in_flight, s.delayed, s.dead), strict=True):
                depth.add_metric([s.queue, state], value)
            oldest.add_metric([s.queue], s.oldest_age)
            dead.add_metric([s.queue], s.dead)
            paused.add_metric([s.queue], 1 if s.paused else 0)
        yield depth
        yield oldest
        yield dead
        yield paused
        if sample.gate_enabled is not None:
            yield GaugeMetricFamily(
                "pgqueue_gate_enabled",
                "1 when the gate flag in the database is on, 0 when off, at the last sample.",
                value=1 if sample.gate_enabled else 0,
            )
        yield GaugeMetricFamily(
            "pgqueue_depth_sample_timestamp_seconds",
            "Unix time of the last depth sample.",
            value=sample.taken_at,
        )
        yield GaugeMetricFamily(
            "pgqueue_depth_sample_duration_seconds",
            "How long the last depth sample took to read.",
            value=sample.seconds,
        )


def registry_for(sampler: DepthSampler) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DepthCollector(sampler))
    return registry


def start_in_worker() -> CollectorRegistry | None:
    """Start a sampler in a worker when ``PGQUEUE_DEPTH_INTERVAL`` > 0; its series' registry."""
    try:
        settings = DepthSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "depth_interval"
        env = f"PGQUEUE_{field.upper()}"
        raise ConfigurationError(field, f"{env}={first['input']!r}: {first['msg']}") from None
    if not settings.depth_interval:
        return None
    if not settings.dsn:
        log.warning("PGQUEUE_DEPTH_INTERVAL is set but PGQUEUE_DSN is not: depth is not sampled")
        return None
    sampler = DepthSampler(
        settings.dsn,
        interval=settings.depth_interval,
        pooled=settings.pooled,
        connect_timeout=settings.connect_timeout,
    )
    sampler.start()
    return registry_for(sampler)
