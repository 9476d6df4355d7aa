"""The worker's database connections: connect, LISTEN for enqueues, back off through an outage.

Every connect renews the leases at once: a Postgres crash may have lost claims (they commit
asynchronously), and the restart quarantine gives their worker only so long to take them back.

An outage (:mod:`pgqueue.dberrors`, Kind.OUTAGE) closes both connections and keeps every pending
write; the loop reconnects after a doubling back-off (0.2 s up to 5 s). Readiness needs a write
that succeeded since the last connect, not only a connection: a read-only database connects, then
refuses every claim.
"""

from __future__ import annotations

import contextlib
import logging
import time

import psycopg

from pgqueue import db, dberrors, metrics, registry
from pgqueue.cancelling import CHANNEL as CANCEL_CHANNEL
from pgqueue.store import leases
from pgqueue.workerstate import RECONNECT_CAP_S, WorkerState

# One logger for the whole worker loop, whichever part of it speaks.
log = logging.getLogger("pgqueue.supervisor")

ENQUEUE_CHANNEL = "pgqueue_enqueue"


class DatabaseLink(WorkerState):
    """The worker's two connections (writes; LISTEN) and the outage back-off."""

    def _ensure_db(self, now: float) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        if now < self._db_retry_at:
            return
        try:
            self._conn = db.connect(
                self.s.dsn,
                pooled=self.s.pooled,
                connect_timeout=self.s.connect_timeout,
                settings=self.s,
            )
            if not self.s.pooled:
                self._listen = db.connect(
                    self.s.dsn, connect_timeout=self.s.connect_timeout, settings=self.s
                )
                self._waiter.listen(self._listen, self._conn)
                self._listen.execute(f"LISTEN {ENQUEUE_CHANNEL}")
                self._listen.execute(f"LISTEN {CANCEL_CHANNEL}")  # pgqueue.halting
            self._next_claim = now
            log.info("connected to %s", db.redact(self.s.dsn))
            registry.register(self._conn, self._me)
            if self.settler.async_acks:
                self.settler.server_flushes_within(leases.wal_writer_delay(self._conn))
        except psycopg.Error as exc:
            self._db_down("connect", exc)
            return
        # Before anything else is written: the claims a crash lost come back to this worker
        # while the restart quarantine keeps them from the others (pgqueue.leasing).
        self._renew()

    def _db_up(self) -> None:
        """A write succeeded: the database is usable again."""
        if not self._db_ok:
            self._db_ok = True
            self._db_backoff = 0.2

    def _failed(self, op: str, exc: Exception, message: str, *args: object) -> bool:
        """The error policy at a worker statement (architecture §9). True: an outage, the link
        is down and reconnecting; False: counted and logged (``message`` ends with a %s for the
        error), and the caller schedules its own retry."""
        if dberrors.classify(exc) is dberrors.Kind.OUTAGE:
            self._db_down(op, exc)
            return True
        metrics.DB_ERRORS.labels(op).inc()
        log.error(message, *args, dberrors.describe(exc))
        return False

    def _db_down(self, op: str, exc: BaseException) -> None:
        """An outage (dberrors.Kind.OUTAGE): keep what is pending, back off, reconnect."""
        metrics.DB_ERRORS.labels(op).inc()
        # The acks this session committed asynchronously may have died with the server.
        self.settler.reconnected()
        if self._conn is not None or self._db_backoff <= 0.2:
            log.warning(
                "database unavailable during %s (%s); retrying in %.1fs",
                op,
                dberrors.describe(exc),
                self._db_backoff,
            )
        self._db_ok = False
        self._close_db()
        self._db_retry_at = time.monotonic() + self._db_backoff
        self._db_backoff = min(self._db_backoff * 2, RECONNECT_CAP_S)
        self.health.ready = False

    def _close_db(self) -> None:
        for conn in (self._conn, self._listen):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
        self._conn = None
        self._listen = None
        self._waiter.disconnected()

    def _drain_notifies(self) -> None:
        assert self._listen is not None
        cancels: list[str] = []
        try:
            for note in self._listen.notifies(timeout=0):
                if note.channel == CANCEL_CHANNEL:
                    cancels.append(note.payload)
                elif note.payload in self.s.queues:
                    self._next_claim = time.monotonic()
                    self._waiter.heard(note.channel)
        except Exception as exc:  # the policy: an outage, or a wake-up missed
            if dberrors.classify(exc) is dberrors.Kind.OUTAGE:
                self._db_down("listen", exc)
            else:
                log.warning("LISTEN socket: %s; polling meanwhile", dberrors.describe(exc))
        self._cancels_heard(cancels)
