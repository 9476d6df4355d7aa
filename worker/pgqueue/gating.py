"""The gate: one flag, read at call time, that routes every call to Postgres or to the legacy path.

Reads are cached for a short TTL (one database read per TTL however many threads call), so a flip
reaches every caller within TTL plus one read. It fails closed: any error reading the flag routes
to the fallback, logged once per outage (not per call) and counted, so an outage is visible
without flooding logs. ``PGQUEUE_TRANSPORT_ENABLED=false`` forces the fallback without touching
the database at all: the kill-switch for when the database itself is the problem.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from pgqueue import db, metrics, sqlfiles
from pgqueue.admin import GATE_FLAG, parse_flag_value

log = logging.getLogger(__name__)

KILL_SWITCH_ENV = "PGQUEUE_TRANSPORT_ENABLED"

Route = Literal["pg", "fallback"]
Reason = Literal["enabled", "disabled", "killswitch", "error"]


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: Reason

    @property
    def to_pg(self) -> bool:
        return self.route == "pg"


ENABLED = Decision("pg", "enabled")
DISABLED = Decision("fallback", "disabled")
KILLED = Decision("fallback", "killswitch")
FAILED = Decision("fallback", "error")


def kill_switch_engaged() -> bool:
    """True when the env kill-switch forces the fallback (any spelling of off)."""
    raw = os.environ.get(KILL_SWITCH_ENV)
    return raw is not None and parse_flag_value(raw) is False


class Gate:
    """Thread-safe, cached reader of the ``pg_queue_enabled`` flag."""

    def __init__(
        self,
        dsn: str,
        ttl: float = 1.0,
        *,
        key: str = GATE_FLAG,
        pooled: bool = False,
        connect_timeout: float = 2.0,
    ) -> None:
        if ttl < 0:
            raise ValueError(f"ttl: must be ≥ 0 seconds, got {ttl}")
        self.dsn = dsn
        self.ttl = ttl
        self.key = key
        self.pooled = pooled
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._cached: Decision | None = None
        self._expires = 0.0
        self._refresh = threading.Lock()
        self._in_outage = False
        self._warned_values: set[str] = set()
        self.reads = 0  # database reads made (tests and curious operators)

    def decide(self) -> Decision:
        """Where the next call goes, and why; counted in pgqueue_gate_decisions_total."""
        decision = KILLED if kill_switch_engaged() else self._cached_decision()
        metrics.GATE_DECISIONS.labels(decision.route, decision.reason).inc()
        return decision

    def enabled(self) -> bool:
        return self.decide().to_pg

    def _cached_decision(self) -> Decision:
        cached = self._cached
        if cached is not None and time.monotonic() < self._expires:
            return cached
        # One caller refreshes; the others keep using the previous decision meanwhile.
        if not self._refresh.acquire(blocking=cached is None):
            return cached if cached is not None else FAILED
        try:
            if self._cached is not None and time.monotonic() < self._expires:
                return self._cached
            decision = self._read()
            self._cached = decision
            self._expires = time.monotonic() + self.ttl
            return decision
        finally:
            self._refresh.release()

    def _read(self) -> Decision:
        self.reads += 1
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(
                    self.dsn, pooled=self.pooled, connect_timeout=self.connect_timeout
                )
            row = self._conn.execute(sqlfiles.query("flag_get"), {"key": self.key}).fetchone()
        except psycopg.Error as exc:
            self._drop_connection()
            if not self._in_outage:
                self._in_outage = True
                log.warning(
                    "gate: cannot read flag %r (%s: %s); routing to the fallback until it can",
                    self.key,
                    type(exc).__name__,
                    " ".join(str(exc).split())[:200],
                )
            return FAILED
        if self._in_outage:
            self._in_outage = False
            log.info("gate: flag %r readable again; routing follows it", self.key)
        if row is None:
            return DISABLED
        raw = str(row["value"] or "")
        parsed = parse_flag_value(raw) if raw else bool(row["enabled"])
        if parsed is None:
            if raw not in self._warned_values:
                self._warned_values.add(raw)
                log.warning(
                    "gate: flag %r has the unparseable value %r; treated as off", self.key, raw
                )
            return DISABLED
        return ENABLED if parsed else DISABLED

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                log.debug("gate: closing a broken connection failed", exc_info=True)
        self._conn = None

    def close(self) -> None:
        with self._refresh:
            self._drop_connection()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
