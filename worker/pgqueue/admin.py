"""Operator-facing verbs over the queue tables: flags, per-queue depth, dead letters, the sweep.

Used by the CLI, the gate and the Kubernetes operator (which imports only the public ``pgqueue``
API). Each function opens its own short connection, so none holds a session between calls.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from pgqueue import db, sqlfiles

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "dead": self.dead,
            "oldest_age": round(self.oldest_age, 3),
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


def get_flag(dsn: str, key: str, *, pooled: bool = False) -> FlagState | None:
    with db.connect(dsn, pooled=pooled) as conn:
        row = conn.execute(sqlfiles.query("flag_get"), {"key": key}).fetchone()
    if row is None:
        return None
    return FlagState(**row)  # type: ignore[arg-type]


def set_flag(
    dsn: str, key: str, *, enabled: bool, value: str = "", source: str = "", pooled: bool = False
) -> FlagState:
    """Write a flag; ``changed`` says whether its value moved (a flip)."""
    with db.connect(dsn, pooled=pooled, autocommit=False) as conn, conn.transaction():
        before = conn.execute(sqlfiles.query("flag_get"), {"key": key}).fetchone()
        row = conn.execute(
            sqlfiles.query("flag_set"),
            {
                "key": key,
                "enabled": enabled,
                "value": value or str(enabled).lower(),
                "source": source,
            },
        ).fetchone()
    assert row is not None
    changed = before is None or before["enabled"] != row["enabled"]
    return FlagState(
        key=str(row["key"]),
        enabled=bool(row["enabled"]),
        value=str(row["value"]),
        updated_at=row["updated_at"],  # type: ignore[arg-type]
        source=str(row["source"]),
        changed=changed,
    )


def queue_stats(dsn: str, *, pooled: bool = False) -> list[QueueStats]:
    with db.connect(dsn, pooled=pooled) as conn:
        rows = conn.execute(sqlfiles.query("queue_stats")).fetchall()
    return [QueueStats(**row) for row in rows]  # type: ignore[arg-type]


def dead_letters(
    dsn: str, *, queue: str | None = None, limit: int = 100, pooled: bool = False
) -> list[DeadLetter]:
    with db.connect(dsn, pooled=pooled) as conn:
        rows = conn.execute(sqlfiles.query("dlq_list"), {"queue": queue, "limit": limit}).fetchall()
    return [DeadLetter(**row) for row in rows]  # type: ignore[arg-type]


def replay_dead_letter(dsn: str, dl_id: int, *, pooled: bool = False) -> int | None:
    """Put a dead letter back on its queue; returns the new msg_id, None if no such dead letter."""
    with db.connect(dsn, pooled=pooled) as conn:
        row = conn.execute(sqlfiles.query("dlq_replay"), {"dl_id": dl_id}).fetchone()
    return None if row is None else int(str(row["msg_id"]))


def purge_dead_letters(dsn: str, *, queue: str | None = None, pooled: bool = False) -> int:
    with db.connect(dsn, pooled=pooled) as conn:
        row = conn.execute(sqlfiles.query("dlq_purge"), {"queue": queue}).fetchone()
    return int(str(row["purged"])) if row else 0


def sweep(
    dsn: str,
    *,
    batch_size: int = 1000,
    dead_letter_retention: float = 7 * 86400.0,
    pooled: bool = False,
) -> SweepReport:
    """Delete expired replies and aged dead letters, one short transaction per batch."""
    totals = {"sweep_results": 0, "sweep_dead_letters": 0}
    with db.connect(dsn, pooled=pooled) as conn:
        for name in totals:
            while True:
                row = conn.execute(
                    sqlfiles.query(name),
                    {"batch_size": batch_size, "retention": dead_letter_retention},
                ).fetchone()
                deleted = int(str(row["deleted"])) if row else 0
                totals[name] += deleted
                if deleted < batch_size:
                    break
    return SweepReport(totals["sweep_results"], totals["sweep_dead_letters"])


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, sort_keys=True)
