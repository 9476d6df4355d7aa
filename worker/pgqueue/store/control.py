"""Statements that steer the queue: a cancel, a queue's pause, the gate's flag, and which of a
worker's held messages a cancel removed.

:mod:`pgqueue.cancelling`, :mod:`pgqueue.pausing`, :mod:`pgqueue.gating`, :mod:`pgqueue.admin`
and :mod:`pgqueue.halting` decide what to do and what an answer means; these only say it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgqueue import sqlfiles
from pgqueue.store import Conn, Row, Statement

# -- cancel (architecture §3.12) ----------------------------------------------------------------


def cancel(params: Mapping[str, Any]) -> Statement:
    """Cancel one message (``cancel``; parameters from :func:`pgqueue.cancelling.params`): one
    row, the outcome. A statement, for both clients run it."""
    return sqlfiles.query("cancel"), params


def held_gone(conn: Conn, msg_ids: list[int]) -> list[Row]:
    """Of these held msg_ids, those whose row no longer exists (``held_gone``)."""
    return conn.execute(sqlfiles.query("held_gone"), {"msg_ids": msg_ids}).fetchall()


# -- pausing a queue ---------------------------------------------------------------------------


def pause_lock(conn: Conn, queue: str) -> None:
    """Take the queue's pause lock, against its claims in flight (``queue_pause_lock``); inside
    the caller's transaction."""
    conn.execute(sqlfiles.query("queue_pause_lock"), {"queue": queue})


def pause(conn: Conn, queue: str, paused_by: str, reason: str) -> Row | None:
    """Pause the queue; its new pause row, None if it was paused already (``queue_pause``)."""
    params = {"queue": queue, "paused_by": paused_by, "reason": reason}
    return conn.execute(sqlfiles.query("queue_pause"), params).fetchone()


def pause_of(conn: Conn, queue: str) -> Row | None:
    """The queue's pause row, None if it is not paused (``queue_pause_get``)."""
    return conn.execute(sqlfiles.query("queue_pause_get"), {"queue": queue}).fetchone()


def resume(conn: Conn, queue: str) -> Row | None:
    """Resume the queue (and wake its idle workers); the pause it ended, None if it was not
    paused (``queue_resume``)."""
    return conn.execute(sqlfiles.query("queue_resume"), {"queue": queue}).fetchone()


def pauses(conn: Conn) -> list[Row]:
    """Every paused queue's pause row, by name (``queue_pauses``)."""
    return conn.execute(sqlfiles.query("queue_pauses")).fetchall()


# -- flags (the gate's) ------------------------------------------------------------------------


def flag(conn: Conn, key: str) -> Row | None:
    """The flag's row, None if it was never set (``flag_get``)."""
    return conn.execute(sqlfiles.query("flag_get"), {"key": key}).fetchone()


def set_flag(conn: Conn, key: str, *, enabled: bool, value: str, source: str) -> Row | None:
    """Write the flag; its row as written (``flag_set``)."""
    params = {"key": key, "enabled": enabled, "value": value, "source": source}
    return conn.execute(sqlfiles.query("flag_set"), params).fetchone()


def gate_read_limits(conn: Conn, timeout: str) -> None:
    """Bound the gate's read, in its transaction (``gate_read_limits``; ``timeout`` as Postgres
    spells it, e.g. ``"2000ms"``)."""
    conn.execute(sqlfiles.query("gate_read_limits"), {"timeout": timeout})
