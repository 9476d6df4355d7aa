"""The settle path: what a finished run writes, kept until it lands, under one error policy.

Every outcome (an ack with its reply, a retry, a dead letter) is queued here as a
:class:`Pending` and written by :meth:`Settler.flush`: all acks in one statement (one commit),
then each retry and dead letter, each fenced by its claim. Errors follow
:mod:`pgqueue.dberrors`, in one loop (no recursion):

- an outage keeps everything not written pending (the leases it holds keep being renewed), and
  the supervisor backs off and reconnects: a finished reply is never dropped for an outage;
- a NOTIFY that fails (payload too long, the NOTIFY queue full) is retried without its NOTIFY:
  the caller's poll is the correctness path and finds the reply;
- a batch with any other error is written row by row, and a row the database refuses is
  settled another way: a reply the database cannot store becomes a failed reply naming why, a
  dead letter whose reason it cannot store keeps a short reason naming the refusal. Only a row
  refused even then is left to its lease, logged at ERROR with its msg_id.

Every text written (errors, reasons) is first made :func:`~pgqueue.outcomes.storable`.

Acks commit asynchronously (``async_acks``, architecture §3.4): the caller has its reply without
waiting for a WAL flush, the one flush a call pays being its claim's. An asynchronous commit may
be lost if Postgres crashes within 3 × ``wal_writer_delay`` of it, so the settler keeps every ack
it wrote until the flush is certain (:meth:`Settler.confirm`: a later statement on the same
session ran after that window, or after a synchronous commit) and writes the uncertain ones again
after an outage (:meth:`Settler.reconnected`). Writing an ack again is harmless: it is fenced by
the claim token (a row already deleted, or re-claimed, is not touched) and its reply is
first-write-wins. Only a Postgres crash together with this worker's death loses an ack; its
message then runs again after its lease, as after a worker crash (§3.6).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from pgqueue import claiming, dberrors, metrics, outcomes
from pgqueue.replies import ReplyStatus
from pgqueue.store import leases

log = logging.getLogger(__name__)

# A stored text naming a refusal is kept short: it must not fail for its size again.
_REFUSAL_BYTES = 2048
# Added to 3 × wal_writer_delay before an asynchronous ack counts as flushed, seconds: the WAL
# writer is a process like any other and may be late on a loaded machine.
FLUSH_MARGIN_S = 1.0


@dataclass
class Pending:
    """A settle write that has not landed yet; retried until it lands or is fenced out."""

    msg: outcomes.Claimed
    action: outcomes.Action
    finished: float  # monotonic
    attempts: int = 0  # outages met so far
    fallback: int = 0  # 0: as decided; 1, 2: a refused row's replacement (see _refused)
    again: bool = False  # an ack written before, written again (its commit may be lost)


class Settler:
    """Holds the pending settles of one worker and writes them."""

    def __init__(
        self,
        *,
        result_ttl: float,
        notify: bool,
        max_error_bytes: int,
        known: frozenset[str],
        async_acks: bool = False,
    ) -> None:
        self.result_ttl = result_ttl
        self.notify = notify
        self.max_error_bytes = max_error_bytes
        self.known = known
        self.async_acks = async_acks
        self.pending: list[Pending] = []
        self.settled = 0
        self.lost = 0
        # Acks committed asynchronously and not yet known flushed, oldest first: (when each
        # group's commit returned, monotonic; the group). Written again after an outage.
        self.unflushed: collections.deque[tuple[float, list[Pending]]] = collections.deque()
        self.again: list[Pending] = []
        self.rewritten = 0  # acks written again that had indeed been lost
        self.flush_window = 3 * 0.2 + FLUSH_MARGIN_S  # PostgreSQL's default wal_writer_delay

    @property
    def unwritten(self) -> bool:
        """Whether a write waits: a pending settle, or an ack to write again."""
        return bool(self.pending or self.again)

    def server_flushes_within(self, wal_writer_delay: float) -> None:
        """The server's ``wal_writer_delay`` (seconds), read at each connect."""
        self.flush_window = 3 * wal_writer_delay + FLUSH_MARGIN_S

    def confirm(self, began: float, *, flushed: bool = False) -> None:
        """A statement that began at ``began`` (monotonic) succeeded on the session the
        unflushed acks were written on, so Postgres did not crash before it: an ack that
        committed ``flush_window`` before it is on disk; with ``flushed`` (the statement itself
        committed synchronously, which flushes all earlier WAL), every ack before it is."""
        horizon = began if flushed else began - self.flush_window
        while self.unflushed and self.unflushed[0][0] <= horizon:
            self.unflushed.popleft()

    def reconnected(self) -> None:
        """The session was lost: the acks not known flushed are written again (see above)."""
        for _, group in self.unflushed:
            self.again += [dataclasses.replace(p, again=True, attempts=0) for p in group]
        self.unflushed.clear()

    def add(self, msg: outcomes.Claimed, action: outcomes.Action) -> None:
        self.pending.append(Pending(msg, action, time.monotonic()))

    def held(self) -> list[outcomes.Claimed]:
        return [p.msg for p in self.pending]

    def flush(self, conn: psycopg.Connection[dict[str, Any]]) -> BaseException | None:
        """Write every pending settle; returns the outage that stopped it (all unwritten kept)."""
        if not self.pending and not self.again:
            return None
        began = time.monotonic()
        batch, self.pending = self.pending, []
        again, self.again = self.again, []
        rewritten_before = self.rewritten
        acks = [p for p in batch if isinstance(p.action, outcomes.Ack)]
        work: collections.deque[tuple[list[Pending], bool]] = collections.deque()
        if again:
            work.append((again, self.notify))
        if acks:
            work.append((acks, self.notify))
        work.extend(([p], self.notify) for p in batch if not isinstance(p.action, outcomes.Ack))
        while work:
            group, notify = work[0]
            try:
                kept = self._write(conn, group, notify)
            except Exception as exc:  # the policy decides, nothing escapes
                kind = dberrors.classify(exc)
                if kind is dberrors.Kind.OUTAGE:
                    self._keep([p for g, _ in work for p in g])
                    return exc
                work.popleft()
                ids = ",".join(str(p.msg.msg_id) for p in group[:20])
                if notify and dberrors.about_notify(exc):
                    log.warning(
                        "NOTIFY refused for msg_ids %s (%s); writing without it, callers poll",
                        ids,
                        dberrors.describe(exc),
                    )
                    work.appendleft((group, False))
                elif len(group) > 1:
                    log.warning(
                        "settle of %d messages refused (%s: %s); writing them one by one",
                        len(group),
                        kind.value,
                        dberrors.describe(exc),
                    )
                    work.extendleft(([p], notify) for p in reversed(group))
                else:
                    replacement = self._refused(group[0], exc)
                    if replacement is not None:
                        work.appendleft(([replacement], notify))
                continue
            work.popleft()
            if self.async_acks and isinstance(group[0].action, outcomes.Ack):
                mine = [p for p in group if p.msg.msg_id in kept]
                self.unflushed.append((time.monotonic(), mine))
            self._landed(group, kept)
        if any(p.attempts for p in batch):
            log.info("database back: pending replies and acks written")
        if again:
            rewritten = self.rewritten - rewritten_before
            log.warning(
                "wrote again %d acks committed just before the connection was lost: %d of them "
                "had been lost with it (their messages were still there)",
                len(again),
                rewritten,
            )
        self.confirm(began)
        return None

    def _keep(self, unwritten: list[Pending]) -> None:
        self.again = [p for p in unwritten if p.again] + self.again
        unwritten = [p for p in unwritten if not p.again]
        self.pending = unwritten + self.pending
        for item in unwritten:
            item.attempts += 1
            if item.attempts == 3 and item.msg.reply_key is not None:
                log.error(
                    "reply not stored yet (database down): reply_key=%s task=%s msg_id=%d; "
                    "kept in memory and retried, the lease decides if this worker dies",
                    item.msg.reply_key[:80],
                    item.msg.task_name[:80],
                    item.msg.msg_id,
                )

    def _text(self, text: str) -> str:
        return outcomes.storable(text, self.max_error_bytes)

    def _write(
        self, conn: psycopg.Connection[dict[str, Any]], group: list[Pending], notify: bool
    ) -> set[int]:
        """One statement for the group; the msg_ids it still held."""
        first = group[0]
        action = first.action
        if isinstance(action, outcomes.Ack):
            acks = [p.action for p in group]
            assert all(isinstance(a, outcomes.Ack) for a in acks)
            rows = leases.ack(
                conn,
                {
                    **claiming.fence([p.msg for p in group]),
                    "statuses": [a.status.value for a in acks],  # type: ignore[union-attr]
                    "results": [a.result_json for a in acks],  # type: ignore[union-attr]
                    "errors": [self._text(a.error) for a in acks],  # type: ignore[union-attr]
                    "result_ttl": self.result_ttl,
                    "notify": notify,
                    "async_commit": self.async_acks,
                },
            )
            return {r["msg_id"] for r in rows}
        fence = {"msg_id": first.msg.msg_id, "claim_token": first.msg.claim_token}
        if isinstance(action, outcomes.Retry):
            row = leases.retry(conn, fence, action.delay)
        else:
            row = leases.dead_letter(
                conn,
                {
                    **fence,
                    "reason": self._text(action.reason),
                    "status": action.status.value,
                    "result_ttl": self.result_ttl,
                    "notify": notify,
                    "max_reply_key_bytes": outcomes.MAX_REPLY_KEY_BYTES,
                },
            )
        return {first.msg.msg_id} if row is not None else set()

    def _refused(self, item: Pending, exc: BaseException) -> Pending | None:
        """The database refused this row: its replacement, or None when none is left to try.

        A reply first becomes a failed reply naming the refusal, then a bare failed reply; a
        dead letter keeps a short reason naming the refusal, then a bare one. A retry has no
        text to blame: it is left to its lease (the next claim counts the attempt).
        """
        msg, action = item.msg, item.action
        why = dberrors.describe(exc)
        log.warning(
            "settle of msg_id=%d task=%s refused by the database: %s",
            msg.msg_id,
            msg.task_name[:80],
            why,
        )
        replacement: outcomes.Action | None = None
        if isinstance(action, outcomes.Ack) and msg.reply_key is not None:
            if item.fallback == 0:
                text = f"reply not stored: the database refused it: {why}"
                replacement = outcomes.Ack(
                    ReplyStatus.FAILED,
                    None,
                    outcomes.storable(text, _REFUSAL_BYTES),
                    "reply_failed",
                )
            elif item.fallback == 1:
                replacement = outcomes.Ack(
                    ReplyStatus.FAILED,
                    None,
                    "reply not stored: the database refused it",
                    "reply_failed",
                )
        elif isinstance(action, outcomes.DeadLetter):
            if item.fallback == 0:
                head = outcomes.storable(action.reason, 512)
                replacement = outcomes.DeadLetter(
                    outcomes.storable(
                        f"{head} (full reason refused by the database: {why})", _REFUSAL_BYTES
                    ),
                    action.status,
                )
            elif item.fallback == 1:
                replacement = outcomes.DeadLetter(
                    "dead-lettered; its reason was refused by the database", action.status
                )
        if replacement is None:
            log.error(
                "settle of msg_id=%d task=%s reply_key=%s refused (%s); the lease decides",
                msg.msg_id,
                msg.task_name[:80],
                (msg.reply_key or "")[:80],
                why,
            )
            return None
        return Pending(
            msg, replacement, item.finished, item.attempts, item.fallback + 1, item.again
        )

    def _landed(self, items: list[Pending], kept: set[int]) -> None:
        """Count what was written; a row that was not ours any more is a lost lease."""
        for item in items:
            msg, action = item.msg, item.action
            if item.again:
                # Counted when first written; a row still there had lost that first commit.
                if msg.msg_id in kept:
                    self.rewritten += 1
                    metrics.ACKS_REWRITTEN.inc()
                continue
            task = outcomes.metric_task(msg.task_name, self.known)
            self.settled += 1
            if msg.msg_id not in kept:
                self.lost += 1
                metrics.LEASE_LOST.inc()
                metrics.TASKS.labels(msg.queue, task, "lost").inc()
                log.warning(
                    "lease lost: msg_id=%d task=%s was re-claimed or removed; result ignored",
                    msg.msg_id,
                    task,
                )
                continue
            if isinstance(action, outcomes.Ack):
                outcome = action.outcome
                if msg.reply_key is not None:
                    metrics.RPC_LATENCY.labels(msg.queue, task).observe(
                        max(0.0, msg.waited) + time.monotonic() - msg.claimed_at
                    )
            elif isinstance(action, outcomes.Retry):
                outcome = "retried"
            else:
                cancelled = action.status is ReplyStatus.CANCELLED
                outcome = "cancelled" if cancelled else "dead_lettered"
            text = action.reason if isinstance(action, outcomes.DeadLetter) else action.error
            if text.startswith("TimeLimitExceeded") and outcome in {"failed", "retried"}:
                outcome = "timed_out"  # one run, one count: the kill is why it failed
            metrics.TASKS.labels(msg.queue, task, outcome).inc()
