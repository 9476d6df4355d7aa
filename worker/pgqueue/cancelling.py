"""Cancellation, the caller's side (architecture §3.12): ``client.cancel(msg_id | reply_key)``,
``pgqueue cancel``.

A cancel is one statement (``pgqueue.cancel`` in the schema, migration 0010), pooler-safe. It moves
the message to the dead-letter table with a reason starting ``cancelled`` (so ``pgqueue dlq list``
shows it and ``dlq replay`` can run it again), and gives a waiting caller a reply with the status
``cancelled`` and its NOTIFY at once: ``call()`` returns ``kind="cancelled"`` then, not at its
timeout. A message a worker holds is cancelled the same way; the worker hears of it on the channel
``pgqueue_cancel`` (or at its next lease renewal, which finds the row gone) and kills the run's
process group (:mod:`pgqueue.halting`). Because the row is gone, nothing the run would still write
(an ack, a reply, a retry) can land: every worker write is fenced by the claim (architecture §3.2).

Outcomes a caller can tell apart (:class:`Cancellation`): ``cancelled`` (``state`` ``waiting``:
it never runs, or ``running``: its run is killed), ``already_done`` (``state`` ``finished``,
``dead_lettered`` or ``cancelled``: nothing changed) and, raised as
:class:`~pgqueue.errors.UnknownMessage`, an id or key pgqueue does not know.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import arguments, outcomes, store
from pgqueue.errors import CancelError, ConfigurationError, UnknownMessage
from pgqueue.store import control

Row = dict[str, Any] | None
Conn = psycopg.Connection[dict[str, Any]]
AsyncConn = psycopg.AsyncConnection[dict[str, Any]]

# Workers LISTEN here; the payload is the msg_id of a cancelled message some worker held.
CHANNEL = "pgqueue_cancel"

# How long the reply of a cancelled call waits for its caller (a submit's may collect it later).
RESULT_TTL = 3600.0

Outcome = Literal["cancelled", "already_done"]


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What a cancel did.

    ``outcome``: ``cancelled`` or ``already_done``. ``state``: for ``cancelled``, ``waiting`` (it
    will never run) or ``running`` (a worker held it: its run is killed within lease/3 + 1 s);
    for ``already_done``, ``finished``, ``dead_lettered`` or ``cancelled``. ``detail`` says it in
    words (the dead-letter reason when there is one).
    """

    outcome: Outcome
    state: str
    msg_id: int | None
    queue: str | None
    task: str | None
    reply_key: str | None
    claimed_by: str | None
    detail: str

    @property
    def cancelled(self) -> bool:
        """Whether this cancel stopped the message (False: it was already done)."""
        return self.outcome == "cancelled"

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "state": self.state,
            "msg_id": self.msg_id,
            "queue": self.queue,
            "task": self.task,
            "reply_key": self.reply_key,
            "claimed_by": self.claimed_by,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        what = f"msg_id {self.msg_id}" if self.msg_id is not None else f"reply key {self.reply_key}"
        if self.task:
            what += f" ({self.task} on queue {self.queue})"
        if self.outcome == "cancelled":
            if self.state == "running":
                return f"{what} cancelled while running on {self.claimed_by}: its run is killed"
            return f"{what} cancelled while waiting: it will never run"
        return f"{what} already done ({self.state}): {self.detail}"


def target_of(target: object) -> tuple[int | None, str | None]:
    """(msg_id, reply key) of what a cancel names: an int is a msg_id, a str a reply key (a
    string of digits is a msg_id too, as the CLI takes it). Errors name the argument."""
    if isinstance(target, int) and not isinstance(target, bool):
        if target < 1:
            raise ConfigurationError("target", f"a msg_id is ≥ 1, got {target}")
        return target, None
    if isinstance(target, str) and target.isascii() and target.isdigit() and len(target) <= 19:
        return target_of(int(target))
    if isinstance(target, str):
        return None, arguments.check_reply_key(target)
    raise ConfigurationError(
        "target", f"must be a msg_id (int) or a reply key (str), got {type(target).__name__}"
    )


def described(target: object) -> str:
    """The target as an error names it."""
    msg_id, key = target_of(target)
    return f"msg_id {msg_id}" if msg_id is not None else f"reply key {key}"


def who() -> str:
    """Who cancels, recorded in the reason: this process (the CLI passes its user@host)."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def params(target: object, by: str | None = None) -> dict[str, Any]:
    """The parameters of the named query ``cancel``, the target checked."""
    msg_id, key = target_of(target)
    return {
        "msg_id": msg_id,
        "reply_key": key,
        "by": outcomes.storable(who() if by is None else by, 200),
        "result_ttl": RESULT_TTL,
        "max_reply_key_bytes": outcomes.MAX_REPLY_KEY_BYTES,
    }


def from_row(row: dict[str, Any] | None, target: object) -> Cancellation:
    """The cancel's answer; an unknown message raises :class:`UnknownMessage` naming it."""
    if row is None or row["outcome"] == "unknown":
        detail = "no such message" if row is None else str(row["detail"])
        raise UnknownMessage(described(target), detail)
    outcome: Outcome = "cancelled" if row["outcome"] == "cancelled" else "already_done"
    return Cancellation(
        outcome=outcome,
        state=str(row["state"]),
        msg_id=row["msg_id"],
        queue=row["queue"],
        task=row["task_name"],
        reply_key=row["reply_key"],
        claimed_by=row["claimed_by"],
        detail=str(row["detail"]),
    )


def cancel(conn: Conn, target: object, *, by: str | None = None) -> Cancellation:
    """Cancel on a connection of the caller's (autocommit, or the caller commits)."""
    row = store.one(conn, control.cancel(params(target, by)))
    return from_row(row, target)


# Twinned by on_async_pool below (the asyncio client's); a change to one is a change to both.
def on_pool(
    run: Callable[[Callable[[Conn], Row]], Row],
    scrub: Callable[[str], str],
    target: object,
    by: str | None,
) -> Cancellation:
    """A client's cancel: ``run`` runs the statement on one of its pooled connections."""
    statement = control.cancel(params(target, by))
    try:
        row = run(lambda conn: store.one(conn, statement))
    except (psycopg.Error, PoolTimeout) as exc:
        raise CancelError(scrub(f"cancel of {target!r:.80} failed: {exc}")) from None
    return from_row(row, target)


# The asyncio twin of on_pool, line for line: psycopg's async API needs its own awaiting body.
async def on_async_pool(
    run: Callable[[Callable[[AsyncConn], Awaitable[Row]]], Awaitable[Row]],
    scrub: Callable[[str], str],
    target: object,
    by: str | None,
) -> Cancellation:
    """The asyncio client's cancel, as :func:`on_pool`."""
    statement = control.cancel(params(target, by))
    try:
        row = await run(lambda conn: store.aone(conn, statement))
    except (psycopg.Error, PoolTimeout) as exc:
        raise CancelError(scrub(f"cancel of {target!r:.80} failed: {exc}")) from None
    return from_row(row, target)
