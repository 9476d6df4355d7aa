"""Operator-facing verbs over the queue tables: flags, per-queue depth, dead letters, the sweep.

Used by the CLI, the gate and the Kubernetes operator (which imports only the public ``pgqueue``
API). Each function opens its own short connection, so none holds a session between calls.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgqueue import db, registry, store
from pgqueue.store import cleanup, control, inspection

GATE_FLAG = "pg_queue_enabled"

_TRUE = {"true", "on", "yes", "1", "enabled", "enable"}
_FALSE = {"false", "off", "no", "0", "disabled", "disable", ""}


def parse_flag_value(text: str) -> bool | None:
    """Parse a flag value as users write it in a ConfigMap; None when it is neither on nor off."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


@dataclass(frozen=True, slots=True)
class FlagState:
    key: str
    enabled: bool
    value: str
    updated_at: dt.datetime
    source: str
    changed: bool = False


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    ready: int
    in_flight: int
    delayed: int
    dead: int
    oldest_age: float
    paused: bool = False
    """No worker claims from the queue (:meth:`pgqueue.Client.pause_queue`)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "dead": self.dead,
            "oldest_age": round(self.oldest_age, 3),
            "paused": self.paused,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dl_id: int
    msg_id: int
    queue: str
    task_name: str
    reply_key: str | None
    priority: int
    tenant: str
    enqueued_at: dt.datetime
    read_ct: int
    reason: str
    failed_at: dt.datetime
    payload: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "dl_id": self.dl_id,
            "msg_id": self.msg_id,
            "queue": self.queue,
            "task": self.task_name,
            "reply_key": self.reply_key,
            "priority": self.priority,
            "tenant": self.tenant,
            "enqueued_at": self.enqueued_at.isoformat(),
            "read_ct": self.read_ct,
            "reason": self.reason,
            "failed_at": self.failed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SweepReport:
    results_deleted: int
    dead_letters_deleted: int
    orphans_dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "results_deleted": self.results_deleted,
            "dead_letters_deleted": self.dead_letters_deleted,
            "orphans_dead_lettered": self.orphans_dead_lettered,
        }


MESSAGE_STATES = ("ready", "delayed", "in_flight", "all")
PURGE_STATES = ("ready", "delayed", "all")
PURGE_RESULT_TTL = 3600.0  # a purged call's failed reply waits this long for its caller


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One message as ``pgqueue queue show`` lists it; times are seconds from now."""

    msg_id: int
    task_name: str
    tenant: str
    priority: int
    read_ct: int
    claimed_by: str | None
    is_call: bool
    state: str
    enqueued_at: dt.datetime
    age: float
    visible_in: float
    deadline_in: float | None
    payload: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "msg_id": self.msg_id,
            "task": self.task_name,
            "tenant": self.tenant,
            "priority": self.priority,
            "state": self.state,
            "call": self.is_call,
            "attempts": self.read_ct,
            "claimed_by": self.claimed_by,
            "enqueued_at": self.enqueued_at.isoformat(),
            "age": round(self.age, 3),
            "visible_in": round(self.visible_in, 3),
            "deadline_in": None if self.deadline_in is None else round(self.deadline_in, 3),
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class PurgeReport:
    purged: int
    callers_told: int

    def as_dict(self) -> dict[str, int]:
        return {"purged": self.purged, "callers_told": self.callers_told}


def get_flag(
    dsn: str, key: str, *, pooled: bool = False, connect_timeout: float = 5.0
) -> FlagState | None:
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        row = control.flag(conn, key)
    if row is None:
        return None
    return FlagState(**row)


def set_flag(
    dsn: str,
    key: str,
    *,
    enabled: bool,
    value: str = "",
    source: str = "",
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> FlagState:
    """Write a flag; ``changed`` says whether its value moved (a flip)."""
    with (
        db.connect(dsn, pooled=pooled, autocommit=False, connect_timeout=connect_timeout) as conn,
        conn.transaction(),
    ):
        before = control.flag(conn, key)
        row = control.set_flag(
            conn, key, enabled=enabled, value=value or str(enabled).lower(), source=source
        )
    assert row is not None
    changed = before is None or before["enabled"] != row["enabled"]
    return FlagState(
        key=str(row["key"]),
        enabled=bool(row["enabled"]),
        value=str(row["value"]),
        updated_at=row["updated_at"],
        source=str(row["source"]),
        changed=changed,
    )


def queue_stats(
    dsn: str, *, pooled: bool = False, connect_timeout: float = 5.0
) -> list[QueueStats]:
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        rows = inspection.queue_stats(conn)
    return [QueueStats(**row) for row in rows]


def workers(
    dsn: str, *, pooled: bool = False, connect_timeout: float = 5.0
) -> list[registry.WorkerRow]:
    """The worker registry: one row per worker process with its busy slots and heartbeat age
    (the operator's pod deletion costs are read from it; stale rows included)."""
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        return registry.workers(conn)


def dead_letters(
    dsn: str,
    *,
    queue: str | None = None,
    limit: int = 100,
    reason_prefix: str | None = None,
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> list[DeadLetter]:
    """Dead letters, oldest first; ``reason_prefix="cancelled"`` lists the cancelled messages."""
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        rows = cleanup.dead_letters(conn, queue, limit, reason_prefix)
    return [DeadLetter(**row) for row in rows]


def replay_dead_letter(
    dsn: str, dl_id: int, *, pooled: bool = False, connect_timeout: float = 5.0
) -> int | None:
    """Put a dead letter back on its queue; returns the new msg_id, None if no such dead letter."""
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        row = cleanup.replay(conn, dl_id)
    return None if row is None else int(str(row["msg_id"]))


def purge_dead_letters(
    dsn: str, *, queue: str | None = None, pooled: bool = False, connect_timeout: float = 5.0
) -> int:
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        row = cleanup.purge_dead_letters(conn, queue)
    return int(str(row["purged"])) if row else 0


def sweep(
    dsn: str,
    *,
    batch_size: int = 1000,
    dead_letter_retention: float = 7 * 86400.0,
    orphan_margin: float = 300.0,
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> SweepReport:
    """Dead-letter orphaned calls, then delete expired replies and aged dead letters.

    One short transaction per batch of ``batch_size`` rows, each batch one statement (pooler-safe).
    An orphan is a call whose caller's deadline passed more than ``orphan_margin`` seconds ago and
    that no worker holds; it goes to the dead-letter table (kept for the retention like any other).
    """
    steps: dict[str, Callable[[store.Conn], store.Row | None]] = {
        "orphans": lambda conn: cleanup.sweep_orphans(conn, batch_size, orphan_margin),
        "results": lambda conn: cleanup.sweep_results(conn, batch_size),
        "dead_letters": lambda conn: cleanup.sweep_dead_letters(
            conn, batch_size, dead_letter_retention
        ),
    }
    totals = dict.fromkeys(steps, 0)
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        for name, step in steps.items():
            while True:
                row = step(conn)
                deleted = int(str(row["deleted"])) if row else 0
                totals[name] += deleted
                if deleted < batch_size:
                    break
    return SweepReport(
        results_deleted=totals["results"],
        dead_letters_deleted=totals["dead_letters"],
        orphans_dead_lettered=totals["orphans"],
    )


def queue_messages(
    dsn: str,
    queue: str,
    *,
    task: str | None = None,
    tenant: str | None = None,
    state: str = "all",
    after: int = 0,
    limit: int = 50,
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> tuple[list[QueueMessage], int | None]:
    """One page of a queue's messages after msg_id ``after``, and the cursor of the next page."""
    if state not in MESSAGE_STATES:
        raise ValueError(f"state must be one of {', '.join(MESSAGE_STATES)}, got {state!r}")
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        # One more than asked says whether there is a next page.
        rows = inspection.queue_page(
            conn, queue, task=task, tenant=tenant, state=state, after=after, limit=limit + 1
        )
    page = [QueueMessage(**row) for row in rows[:limit]]
    return page, (page[-1].msg_id if len(rows) > limit and page else None)


def count_purgeable(
    dsn: str,
    queue: str,
    *,
    task: str | None = None,
    tenant: str | None = None,
    state: str = "all",
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> int:
    """How many messages :func:`purge_queue` would move now."""
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        row = cleanup.purgeable(
            conn, cleanup.Selection(queue=queue, task=task, tenant=tenant, state=state)
        )
    return int(str(row["n"])) if row else 0


def purge_queue(
    dsn: str,
    queue: str,
    *,
    task: str | None = None,
    tenant: str | None = None,
    state: str = "all",
    source: str = "",
    batch_size: int = 1000,
    pooled: bool = False,
    connect_timeout: float = 5.0,
) -> PurgeReport:
    """Move a queue's waiting messages to the dead-letter table (reason ``purged ...``).

    Messages a worker holds are left to finish. A purged call's caller gets a failed reply with
    the same reason at once. One short transaction per batch, so the queue keeps flowing.
    """
    if state not in PURGE_STATES:
        raise ValueError(f"state must be one of {', '.join(PURGE_STATES)}, got {state!r}")
    reason = f"purged from queue {queue!r}" + (f" by {source}" if source else "")
    selection = cleanup.Selection(queue=queue, task=task, tenant=tenant, state=state)
    purged = told = 0
    with db.connect(dsn, pooled=pooled, connect_timeout=connect_timeout) as conn:
        while True:
            row = cleanup.purge(
                conn, selection, reason=reason, batch_size=batch_size, result_ttl=PURGE_RESULT_TTL
            )
            batch = int(str(row["purged"])) if row else 0
            purged += batch
            told += int(str(row["callers"])) if row else 0
            if batch < batch_size:
                break
    return PurgeReport(purged=purged, callers_told=told)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, sort_keys=True)
