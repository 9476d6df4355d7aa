"""The gate: one flag, read at call time, that routes every call to Postgres or to the legacy path.

Reads are cached for a short TTL (one database read per TTL however many threads call), so a flip
reaches every caller within TTL plus one read. It fails closed: any error reading the flag — and a
read that has not answered within ``connect_timeout`` — routes to the fallback, logged once per
outage (not per call, with an INFO when it ends) and counted, so an outage is visible without
flooding logs. ``PGQUEUE_TRANSPORT_ENABLED=false`` forces the fallback without touching the
database at all: the kill-switch for when the database itself is the problem.

Invariants: a caller never waits on the database longer than ``connect_timeout``; while one caller
refreshes the cache the others keep the previous decision, for at most ``connect_timeout``; the
only thing a stored value can turn on is a value that parses as on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.conninfo import make_conninfo

from pgqueue import db, metrics
from pgqueue.admin import GATE_FLAG, parse_flag_value
from pgqueue.errors import ConfigurationError
from pgqueue.store import control

log = logging.getLogger(__name__)

KILL_SWITCH_ENV = "PGQUEUE_TRANSPORT_ENABLED"

Route = Literal["pg", "fallback"]
Reason = Literal["enabled", "disabled", "killswitch", "error"]
Connect = Callable[[], "psycopg.Connection[dict[str, Any]]"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one call goes (``route``) and why (``reason``): the labels of the decision counter."""

    route: Route
    reason: Reason

    @property
    def to_pg(self) -> bool:
        return self.route == "pg"


ENABLED = Decision("pg", "enabled")
DISABLED = Decision("fallback", "disabled")
KILLED = Decision("fallback", "killswitch")
FAILED = Decision("fallback", "error")


class Gate:
    """Thread-safe, cached reader of the ``pg_queue_enabled`` flag.

    ``ttl``: seconds a read is reused (default 1 s; 0 reads on every call). ``connect_timeout``:
    seconds a connect, a read, or a caller waiting for another caller's read may take before the
    gate fails closed (default 2 s). ``pooled``: the DSN points at a transaction pooler (no
    prepared statements). ``connect``: a connection factory replacing the default (tests).
    """

    def __init__(
        self,
        dsn: str,
        ttl: float = 1.0,
        *,
        key: str = GATE_FLAG,
        pooled: bool = False,
        connect_timeout: float = 2.0,
        connect: Connect | None = None,
    ) -> None:
        if ttl < 0:
            raise ValueError(f"ttl: must be ≥ 0 seconds, got {ttl}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout: must be > 0 seconds, got {connect_timeout}")
        self.dsn = dsn
        self.ttl = ttl
        self.key = key
        self.pooled = pooled
        self.connect_timeout = connect_timeout
        self._connect = connect or self._default_connect
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        # (decision, monotonic expiry) as one tuple, so a reader sees a consistent pair.
        self._entry: tuple[Decision, float] | None = None
        self._refresh = threading.Lock()  # held by the one caller reading the flag
        self._read_started = 0.0
        self._read_done = 0.0
        self._state = threading.Lock()  # guards the once-only log state below
        self._in_outage = False
        self._warned_values: set[str] = set()
        self.reads = 0  # database reads attempted (tests and curious operators)
        self._pid = os.getpid()

    # -- deciding --------------------------------------------------------------------------

    def decide(self) -> Decision:
        """Where the next call goes, and why; counted in pgqueue_gate_decisions_total."""
        if self._pid != os.getpid():
            self._after_fork()
        decision = KILLED if self._kill_switch() else self._cached_decision()
        metrics.GATE_DECISIONS.labels(decision.route, decision.reason).inc()
        return decision

    def enabled(self) -> bool:
        return self.decide().to_pg

    def _kill_switch(self) -> bool:
        """Engaged when the env var says off; unset or empty means not set; garbage fails closed."""
        raw = os.environ.get(KILL_SWITCH_ENV, "").strip()
        if not raw:
            return False
        parsed = parse_flag_value(raw)
        if parsed is None:
            self._warn_value(
                f"env:{raw}",
                "gate: %s has the unparseable value %r; the kill-switch is engaged (fallback)",
                KILL_SWITCH_ENV,
                raw,
            )
            return True
        return not parsed

    def _cached_decision(self) -> Decision:
        now = time.monotonic()
        entry = self._entry
        if entry is not None and now < entry[1]:
            return entry[0]
        if self._refresh.acquire(blocking=False):
            try:
                return self._refresh_locked()
            finally:
                self._refresh.release()
        # Another caller is reading the flag. Keep the previous decision (or, on the very first
        # read, wait for that read) — but only for connect_timeout: after that, fail closed.
        started = self._read_started if self._read_started > self._read_done else now
        overdue_at = started + self.connect_timeout
        if now < overdue_at:
            if entry is not None:
                return entry[0]
            if self._refresh.acquire(timeout=overdue_at - now):
                try:
                    return self._refresh_locked()
                finally:
                    self._refresh.release()
        self._outage(f"the read has not answered for {time.monotonic() - started:.1f}s")
        return FAILED

    def _refresh_locked(self) -> Decision:
        entry = self._entry
        if entry is not None and time.monotonic() < entry[1]:
            return entry[0]  # another caller refreshed it while we waited for the lock
        self._read_started = time.monotonic()
        try:
            decision = self._read()
        finally:
            self._read_done = time.monotonic()
        self._entry = (decision, time.monotonic() + self.ttl)
        return decision

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> Decision:
        self.reads += 1
        try:
            if isinstance(self._conn, psycopg.Connection) and db.is_dead(self._conn):
                # Died while idle (a restart, a failover): a fresh one, not a failed read.
                self._drop_connection()
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            with conn.transaction():
                limit = f"{round(self.connect_timeout * 1000)}ms"
                control.gate_read_limits(conn, limit)
                row = control.flag(conn, self.key)
        except (psycopg.Error, OSError, ConfigurationError) as exc:
            self._drop_connection()
            why = db.scrub(" ".join(str(exc).split()), self.dsn)[:200]
            self._outage(f"{type(exc).__name__}: {why}")
            return FAILED
        self._recovered()
        if row is None:
            return DISABLED
        raw = str(row["value"] or "")
        parsed = parse_flag_value(raw) if raw else bool(row["enabled"])
        if parsed is None:
            self._warn_value(
                raw, "gate: flag %r has the unparseable value %r; treated as off", self.key, raw
            )
            return DISABLED
        return ENABLED if parsed else DISABLED

    def _default_connect(self) -> psycopg.Connection[dict[str, Any]]:
        # TCP timeouts so that a silent network (no RST) fails the read instead of hanging it.
        params = db.parse_dsn(self.dsn)  # its errors never show the password
        limit_ms = round(self.connect_timeout * 1000)
        for name, value in (
            ("tcp_user_timeout", limit_ms),
            ("keepalives", 1),
            ("keepalives_idle", max(1, round(self.connect_timeout))),
            ("keepalives_interval", 1),
            ("keepalives_count", 3),
        ):
            params.setdefault(name, value)
        return db.connect(
            make_conninfo("", **params), pooled=self.pooled, connect_timeout=self.connect_timeout
        )

    # -- logging once ----------------------------------------------------------------------

    def _outage(self, why: str) -> None:
        with self._state:
            if self._in_outage:
                return
            self._in_outage = True
        log.warning(
            "gate: cannot read flag %r (%s); routing to the fallback until it can", self.key, why
        )

    def _recovered(self) -> None:
        with self._state:
            if not self._in_outage:
                return
            self._in_outage = False
        log.info("gate: flag %r readable again; routing follows it", self.key)

    def _warn_value(self, seen: str, message: str, *args: object) -> None:
        with self._state:
            if seen in self._warned_values:
                return
            self._warned_values.add(seen)
        log.warning(message, *args)

    # -- lifecycle -------------------------------------------------------------------------

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except (psycopg.Error, OSError):
                log.debug("gate: closing a broken connection failed", exc_info=True)
        self._conn = None

    def _after_fork(self) -> None:
        """In a forked child (gunicorn --preload, Celery prefork): the parent's connection and
        locks are not ours. Forget them without closing (closing would end the parent's session)."""
        self._pid = os.getpid()
        self._conn = None
        self._entry = None
        self._refresh = threading.Lock()
        self._state = threading.Lock()
        self._read_started = self._read_done = 0.0

    def close(self) -> None:
        with self._refresh:
            self._drop_connection()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
