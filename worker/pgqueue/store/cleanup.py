"""Statements that clear things away: dead letters listed, replayed and purged, a queue's
waiting messages purged, and the sweep of expired replies, aged dead letters and orphaned calls.

:mod:`pgqueue.admin` loops over the batched ones (one short transaction per batch, so the queue
keeps flowing) and says what they did.
"""

from __future__ import annotations

from typing import TypedDict

from pgqueue import sqlfiles
from pgqueue.store import Conn, Row

# -- dead letters ------------------------------------------------------------------------------


def dead_letters(conn: Conn, queue: str | None, limit: int, reason_prefix: str | None) -> list[Row]:
    """Dead letters, oldest first (``dlq_list``; the fields of
    :class:`pgqueue.admin.DeadLetter`)."""
    params = {"queue": queue, "limit": limit, "reason_prefix": reason_prefix}
    return conn.execute(sqlfiles.query("dlq_list"), params).fetchall()


def replay(conn: Conn, dl_id: int) -> Row | None:
    """Put a dead letter back on its queue; its new ``msg_id``, None if there was no such dead
    letter (``dlq_replay``)."""
    return conn.execute(sqlfiles.query("dlq_replay"), {"dl_id": dl_id}).fetchone()


def purge_dead_letters(conn: Conn, queue: str | None) -> Row | None:
    """Delete the dead letters (of one queue, or all); how many, as ``purged`` (``dlq_purge``)."""
    return conn.execute(sqlfiles.query("dlq_purge"), {"queue": queue}).fetchone()


# -- purging a queue ---------------------------------------------------------------------------


class Selection(TypedDict):
    """Which of a queue's waiting messages a purge takes (``task``, ``tenant``: None, any)."""

    queue: str
    task: str | None
    tenant: str | None
    state: str


def purgeable(conn: Conn, selection: Selection) -> Row | None:
    """How many waiting messages a purge would move now, as ``n`` (``queue_purge_count``)."""
    return conn.execute(sqlfiles.query("queue_purge_count"), selection).fetchone()


def purge(
    conn: Conn, selection: Selection, *, reason: str, batch_size: int, result_ttl: float
) -> Row | None:
    """Move one batch of the selected messages to the dead-letter table, a failed reply to each
    waiting caller; ``purged`` and ``callers`` (``queue_purge``)."""
    params = {**selection, "reason": reason, "batch_size": batch_size, "result_ttl": result_ttl}
    return conn.execute(sqlfiles.query("queue_purge"), params).fetchone()


# -- the sweep: one batch each, ``deleted`` counts it -------------------------------------------


def sweep_orphans(conn: Conn, batch_size: int, margin: float) -> Row | None:
    """Dead-letter calls whose caller's deadline passed ``margin`` seconds ago and that no
    worker holds (``sweep_orphans``)."""
    params = {"batch_size": batch_size, "margin": margin}
    return conn.execute(sqlfiles.query("sweep_orphans"), params).fetchone()


def sweep_results(conn: Conn, batch_size: int) -> Row | None:
    """Delete expired replies (``sweep_results``)."""
    return conn.execute(sqlfiles.query("sweep_results"), {"batch_size": batch_size}).fetchone()


def sweep_dead_letters(conn: Conn, batch_size: int, retention: float) -> Row | None:
    """Delete dead letters older than ``retention`` seconds (``sweep_dead_letters``)."""
    params = {"batch_size": batch_size, "retention": retention}
    return conn.execute(sqlfiles.query("sweep_dead_letters"), params).fetchone()
