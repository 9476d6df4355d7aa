"""Keeps the queue tables vacuumed while traffic churns through them (``--vacuum-interval``).

Every message is inserted, claimed (updated) and deleted within seconds, every reply inserted
and deleted: under steady traffic the tables fill with dead rows, and the claim walks their
index entries. Autovacuum visits a database once per ``autovacuum_naptime`` (a minute by
default) and pauses as it goes, which is slower than the churn; measured at ~8,000 messages/s
for two minutes, the message table grew from 1.7 to 185 MB and a claim from 1.1 to 12 ms. A
plain ``VACUUM`` of these tables every few seconds keeps them at tens of MB and the claim flat,
and costs a fraction of a second each time (benchmarks, scenario 4).

The vacuum runs on its own thread and connection, so the supervisor loop never waits for it,
and with ``SKIP_LOCKED``, so workers that start one at the same moment do not queue behind each
other; a worker skips its turn when any worker (or autovacuum) vacuumed within the interval.
``VACUUM`` needs the table's owner (or the MAINTAIN privilege): without it Postgres only warns,
and the thread says so once and stops, leaving the tables to autovacuum.
"""

from __future__ import annotations

import logging
import random
import threading

import psycopg

from pgqueue import db, metrics
from pgqueue.store import fleet

log = logging.getLogger(__name__)

TABLES = ("pgqueue.message", "pgqueue.result")


class Vacuumer:
    """A daemon thread that vacuums the queue tables every ``interval`` seconds."""

    def __init__(self, dsn: str, interval: float, *, pooled: bool, connect_timeout: float) -> None:
        self.interval = interval
        self.runs = 0
        self._dsn = dsn
        self._pooled = pooled
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._refused: list[str] = []
        self._thread = threading.Thread(target=self._run, name="pgqueue-vacuum", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        # Spread the fleet: workers started together do not all look at the same moment.
        if self._stop.wait(self.interval * random.uniform(0.5, 1.0)):  # noqa: S311 - not crypto
            return
        while True:
            try:
                self._once()
            except psycopg.Error as exc:
                # The database is away or refused: the supervisor reports outages; try next turn.
                metrics.DB_ERRORS.labels("vacuum").inc()
                log.debug("vacuum skipped: %s", type(exc).__name__)
            if self._refused:
                log.warning(
                    "not vacuuming the queue tables: %s; autovacuum alone keeps them (run "
                    "pgqueue worker as the tables' owner, or grant MAINTAIN, to let it help)",
                    self._refused[0],
                )
                return
            if self._stop.wait(self.interval):
                return

    def _once(self) -> None:
        with db.connect(
            self._dsn, pooled=self._pooled, connect_timeout=self._connect_timeout
        ) as conn:
            conn.add_notice_handler(self._notice)
            row = fleet.vacuum_due(conn, self.interval)
            if row is None or not row["due"]:
                return
            conn.execute(f"VACUUM (SKIP_LOCKED) {', '.join(TABLES)}")
            self.runs += 1
            metrics.VACUUMS.inc()

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        # Without ownership VACUUM is not an error, only a WARNING per table ("permission
        # denied to vacuum ..., skipping it"). A table another VACUUM holds is a WARNING too
        # (SKIP_LOCKED: "lock not available", SQLSTATE 55P03): that one is just a skipped turn.
        message = diag.message_primary or ""
        if diag.sqlstate != "55P03" and ("permission denied" in message or "owner" in message):
            self._refused.append(message)
