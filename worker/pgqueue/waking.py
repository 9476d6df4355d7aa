"""How a worker waits for work: one waiting worker is woken per message (architecture §3.1).

A worker whose claim came back short (its queues looked empty and it has room) marks itself
waiting (``wait_for_work``, table ``pgqueue.waiting_worker``, migration 0012) and stops claiming
on its own: an enqueue takes as many waiting workers as it has messages (``pgqueue.wake``, the
most recently idle first) and NOTIFYs each one's own channel, so a message costs about one claim
statement however many workers idle. A worker that is not waiting (busy) claims again as its
tasks settle, and so does one whose short claim found work and that has heard of more since
(a loaded fleet: ``Waiter.claimed``). An enqueue that finds fewer waiting workers than
messages NOTIFYs the shared channel once, which every worker hears: that covers a worker
marking itself waiting at that very moment (its claim could not see the uncommitted message,
the enqueue cannot see its uncommitted row), so the race loses no wake-up.

What can still go unannounced costs a poll (``poll_interval``, jittered by ``poll_jitter`` so
that an idle fleet does not poll in step), never a message: a row whose worker died (its
wake-up goes nowhere, and the row is no longer waiting), a message that becomes visible without
an enqueue (a delay or a retry backoff running out, a lease expiring; a worker that settles a
long task claims at once, as before). A worker behind a transaction pooler cannot LISTEN and
never waits here: it polls, as before.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import dberrors
from pgqueue.store import fleet

log = logging.getLogger(__name__)


def channel_of(worker_id: str) -> str:
    """The worker's own wake-up channel (a short hash: any worker id makes a valid name)."""
    return "pgqueue_wake_" + hashlib.sha256(worker_id.encode()).hexdigest()[:24]


@dataclass
class Waiter:
    """One worker's waiting state; every method is a no-op for a worker that cannot LISTEN.

    ``waiting``: this worker's row says it waits (as far as it knows), so an enqueue will wake
    it, and it need not claim on its own before its next poll. ``due``: claim at the next turn
    whatever ``waiting`` says (a wake-up arrived, or a long task settled).
    """

    worker_id: str
    queues: tuple[str, ...]
    enabled: bool
    channel: str = ""
    waiting: bool = False
    due: bool = False
    wakeups: int = 0  # wake-ups received on the worker's own channel (tests, debugging)

    def __post_init__(self) -> None:
        self.channel = channel_of(self.worker_id)

    def listen(
        self,
        listen: psycopg.Connection[dict[str, Any]],
        conn: psycopg.Connection[dict[str, Any]],
    ) -> None:
        """A fresh connection: LISTEN on the worker's channel, drop rows of past sessions."""
        if not self.enabled:
            return
        listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        fleet.forget_waiting(conn, self.worker_id)
        self.waiting = False
        self.due = True

    def disconnected(self) -> None:
        # The row may outlive the session: the next connect deletes it.
        self.waiting = False

    def heard(self, channel: str) -> None:
        """A notification on the LISTEN socket: the caller claims at once."""
        if channel == self.channel:
            self.wakeups += 1
            self.waiting = False  # the enqueue that woke us took our row
        self.due = True

    def settled(self, took: float, short: float) -> None:
        """A task settled after ``took`` seconds. After a long one (over ``short``, the slot
        batching window) claim again as before: against a task that long the claim costs
        nothing, and it finds at once what became visible without an enqueue (an expired
        lease, a retry's backoff). After a short one only a wake-up or a poll claims: that
        post-settle claim was the empty one an idle fleet of many workers paid per message."""
        if took > short:
            self.due = True

    def holds_off(self, now: float, poll_at: float) -> bool:
        """Whether to skip a claim now: we wait, nothing woke us, and no poll is due."""
        if not self.enabled or not self.waiting or self.due:
            return False
        return now < poll_at

    def after_claim(
        self, conn: psycopg.Connection[dict[str, Any]], asked: int, got: int
    ) -> BaseException | None:
        """:meth:`claimed` under the one error policy; returns the outage, if any.

        Whatever went wrong, a poll covers it: the worker no longer counts itself as waiting.
        """
        try:
            self.claimed(conn, asked, got)
        except Exception as exc:  # the policy decides; the worker's loop never dies here
            self.waiting = False
            if dberrors.classify(exc) is dberrors.Kind.OUTAGE:
                return exc
            # Refused (a role without rights on pgqueue.waiting_worker, which migration 0012
            # granted to the roles that could enqueue then): this worker stops waiting here,
            # claims after every task and hears the shared NOTIFY, as before 0012.
            self.enabled = False
            log.warning(
                "could not mark this worker as waiting (%s); it claims after every task "
                "instead: grant it SELECT, INSERT, UPDATE, DELETE on pgqueue.waiting_worker",
                dberrors.describe(exc),
            )
        return None

    def claiming(self) -> None:
        """A claim starts: what was due is served by it. (Not at :meth:`claimed`, which the
        worker runs later, after its next flush: a wake-up heard in between stays due.)"""
        self.due = False

    def claimed(self, conn: psycopg.Connection[dict[str, Any]], asked: int, got: int) -> None:
        """After a claim: a short one marks the worker waiting, a full one (no room left now;
        it claims again when a task settles) takes the mark back.

        A short claim that found work, after which a wake-up was already heard, writes no
        mark: the worker claims again at once and that claim decides. Under load this is the
        steady state (nobody waits, so every enqueue NOTIFYs the shared channel and each worker
        claims again as it hears one), and it saves a mark and a targeted wake-up per message.
        An empty claim always marks: otherwise idle workers that all heard one shared NOTIFY
        would go on claiming together on every next one (the herd this module ends).
        """
        if not self.enabled:
            return
        if got >= asked:
            if self.waiting:
                self.waiting = False
                fleet.stop_waiting(conn, self.worker_id)
        elif not self.waiting and not (self.due and got > 0):
            fleet.wait_for_work(conn, self.worker_id, self.channel, list(self.queues))
            self.waiting = True

    def stop(self, conn: psycopg.Connection[dict[str, Any]] | None) -> None:
        """Stopping: no enqueue may wake this worker any more (best effort: a lost mark costs
        the one message that takes it a poll)."""
        if not self.enabled or conn is None or conn.closed:
            return
        self.waiting = False
        try:
            fleet.stop_waiting(conn, self.worker_id)
        except Exception as exc:  # the policy: whatever it was, a poll covers it
            log.debug("could not leave the waiting workers: %s", dberrors.describe(exc))
