"""Pausing and resuming a queue: no worker claims from a paused queue until it is resumed.

A pause is a row of ``pgqueue.queue_pause`` (who, when, why), shared by every consumer of the
queue, and the claim itself (``pgqueue.claim``, architecture §3.1) returns nothing from a paused
queue, so there is no window between a check and a claim. A pause takes an advisory lock
exclusively against the claim's shared one: it returns once the claims of the queue that were in
flight have committed, and every later claim sees it. Running tasks finish and settle; enqueues
still succeed; calls wait like any unclaimed call (their caller times out at its deadline).
Resuming deletes the row and NOTIFYs the queue's enqueue channel, so idle workers drain it at
once. Both are idempotent: pausing a paused queue keeps the first pause's who, when and why.
A queue with no messages (yet) may be paused: the pause waits for its first message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import db
from pgqueue.errors import ConfigurationError, PgQueueError
from pgqueue.settings import check_queue_name
from pgqueue.store import control

log = logging.getLogger(__name__)

REASON_MAX = 500  # characters of a pause's reason
BY_MAX = 200  # characters of who paused

Conn = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueuePause:
    """A queue's pause state after a pause or resume (or as listed)."""

    queue: str
    paused: bool
    """Whether the queue is paused now."""
    changed: bool
    """False when the queue already was in that state (the call changed nothing)."""
    paused_at: dt.datetime | None = None
    """When the pause began (for a resume: when the pause it ended began); None if none."""
    paused_by: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "paused": self.paused,
            "changed": self.changed,
            "paused_at": None if self.paused_at is None else self.paused_at.isoformat(),
            "paused_by": self.paused_by,
            "reason": self.reason,
        }

    def _since_by_why(self) -> tuple[str, str, str]:
        at = self.paused_at
        since = "" if at is None else at.strftime(" since %Y-%m-%d %H:%M:%S %Z")
        by = f" by {self.paused_by}" if self.paused_by else ""
        why = f" ({self.reason})" if self.reason else ""
        return since, by, why

    def standing(self) -> str:
        """One line on a queue's state, for listings (``queue show``)."""
        since, by, why = self._since_by_why()
        if not self.paused:
            return f"queue {self.queue} is not paused"
        return f"queue {self.queue} is paused{since}{by}{why}: no worker claims from it"

    def describe(self) -> str:
        """One line for a person: what happened, or why nothing did."""
        since, by, why = self._since_by_why()
        if self.paused and self.changed:
            return f"queue {self.queue} paused: workers claim nothing more from it{why}"
        if self.paused:
            return f"queue {self.queue} was already paused{since}{by}{why}; nothing changed"
        if self.changed:
            return f"queue {self.queue} resumed (paused{since}{by}{why}): workers drain it again"
        return f"queue {self.queue} was not paused; nothing changed"


def user_at_host() -> str:
    """``user@host`` of this process, as pauses, flags and purges record who made them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container running as a bare uid)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def who(kind: str = "client") -> str:
    """``<kind> user@host pid N`` of this process, recorded with a pause that names no one."""
    return f"{kind} {user_at_host()} pid {os.getpid()}"


def check_queue(queue: object) -> str:
    if not isinstance(queue, str):
        raise ConfigurationError("queue", f"must be a string, got {type(queue).__name__}")
    try:
        return check_queue_name(queue)
    except ValueError as exc:
        raise ConfigurationError("queue", str(exc)) from None


def _check_text(field: str, value: object, most: int) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > most:
        raise ConfigurationError(field, f"at most {most} characters, got {len(value)}")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise ConfigurationError(field, "must be one line without control characters")
    return value


def check_reason(reason: object) -> str:
    return _check_text("reason", reason, REASON_MAX)


def _from_row(row: dict[str, Any], *, paused: bool, changed: bool) -> QueuePause:
    return QueuePause(
        queue=str(row["queue"]),
        paused=paused,
        changed=changed,
        paused_at=row["paused_at"],
        paused_by=str(row["paused_by"]),
        reason=str(row["reason"]),
    )


def pause(conn: Conn, queue: str, *, by: str, reason: str = "") -> QueuePause:
    """Pause ``queue`` on ``conn`` (in a transaction of its own); idempotent.

    Returns once no claim of the queue is in flight: from then on no worker claims from it.
    """
    queue = check_queue(queue)
    by = _check_text("by", by, BY_MAX)
    reason = check_reason(reason)
    with conn.transaction():
        control.pause_lock(conn, queue)
        row = control.pause(conn, queue, by, reason)
        changed = row is not None
        if row is None:
            row = control.pause_of(conn, queue)
    assert row is not None  # inserted, or already there: we hold the lock every pauser takes
    state = _from_row(row, paused=True, changed=changed)
    if changed:
        log.info("queue %s paused by %s%s", queue, by, f" ({reason})" if reason else "")
    return state


def resume(conn: Conn, queue: str, *, by: str) -> QueuePause:
    """Resume ``queue`` on ``conn``; idempotent. Idle workers are woken to drain it at once."""
    queue = check_queue(queue)
    by = _check_text("by", by, BY_MAX)
    with conn.transaction():
        # The pausers' lock: a pause that found the queue paused reads the row it met.
        control.pause_lock(conn, queue)
        row = control.resume(conn, queue)
    if row is None:
        return QueuePause(queue=queue, paused=False, changed=False)
    log.info("queue %s resumed by %s (paused by %s)", queue, by, row["paused_by"])
    return _from_row(row, paused=False, changed=True)


def paused_queues(conn: Conn) -> list[QueuePause]:
    """Every paused queue, by name."""
    return [_from_row(r, paused=True, changed=False) for r in control.pauses(conn)]


# -- on a short connection of their own (the CLI, the web console, scripts) -------------------


def pause_queue(
    dsn: str,
    queue: str,
    *,
    by: str,
    reason: str = "",
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> QueuePause:
    # Checked before connecting too: bad input never costs a round trip.
    check_queue(queue)
    check_reason(reason)
    _check_text("by", by, BY_MAX)
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        return pause(conn, queue, by=by, reason=reason)


def resume_queue(
    dsn: str, queue: str, *, by: str, pooled: bool = False, connect_timeout: float = 5.0
) -> QueuePause:
    check_queue(queue)
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        return resume(conn, queue, by=by)


def pause_of(
    dsn: str, queue: str, *, pooled: bool = False, connect_timeout: float = 5.0
) -> QueuePause | None:
    """The pause of ``queue``, or None when it is not paused."""
    check_queue(queue)
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        row = control.pause_of(conn, queue)
    return None if row is None else _from_row(row, paused=True, changed=False)


def warn_if_paused(
    dsn: str, queues: list[str], *, pooled: bool = False, connect_timeout: float = 5.0
) -> list[QueuePause]:
    """Log a warning for each of a starting worker's ``queues`` that is paused, so that an idle
    worker says why. Best effort: a database it cannot reach yet is the supervisor's to report."""
    try:
        found = [p for p in list_paused(dsn, pooled=pooled, connect_timeout=connect_timeout)
                 if p.queue in queues]  # fmt: skip
    except psycopg.Error as exc:
        log.debug("could not read paused queues at start: %s", db.scrub(str(exc), dsn))
        return []
    for pause in found:
        log.warning("%s until `pgqueue queue resume %s`", pause.standing(), pause.queue)
    return found


def list_paused(
    dsn: str, *, pooled: bool = False, connect_timeout: float = 5.0
) -> list[QueuePause]:
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        return paused_queues(conn)


def through(
    run: Callable[[Callable[[Conn], T], float | None, str], T],
    scrub: Callable[[str], str],
    what: str,
    op: Callable[[Conn], T],
) -> T:
    """``op`` on a client's pool (its ``_run``); a database error is a PgQueueError without the
    DSN's secrets."""
    try:
        return run(op, None, what)
    except (psycopg.Error, PoolTimeout) as exc:
        raise PgQueueError(scrub(f"{what} failed: {exc}")) from None


async def in_thread(
    dsn: str, what: str, op: Callable[..., QueuePause], *args: Any, **kwargs: Any
) -> QueuePause:
    """A short-connection verb (:func:`pause_queue`, :func:`resume_queue`) off the event loop."""
    try:
        return await asyncio.to_thread(op, dsn, *args, **kwargs)
    except (psycopg.Error, PoolTimeout) as exc:
        raise PgQueueError(db.scrub(f"{what} failed: {exc}", dsn)) from None
