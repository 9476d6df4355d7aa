"""What a worker holds: settings, slots, the claims in hand, its clocks and connections.

:class:`pgqueue.supervisor.Worker` is built of parts, one module per concept, each a class over
this state: :mod:`pgqueue.workerdb` (the connections, LISTEN, the outage back-off),
:mod:`pgqueue.dispatching` (how much to claim, which slot takes what, what runs cost),
:mod:`pgqueue.finishing` (what becomes of a run: settled, dead-lettered, killed, lost),
:mod:`pgqueue.leasing` (renewal, and the end of the grace period) and :mod:`pgqueue.supervisor`
(the loop and the claim). They run on the one loop thread: plain attributes, no locks.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgqueue import claiming, halting, jobs, outcomes, registry, serving, settling, waking
from pgqueue.inline import InlineRunner
from pgqueue.settings import WorkerSettings
from pgqueue.slots import Slot
from pgqueue.tasks import import_task_modules

log = logging.getLogger("pgqueue.supervisor")

# The outage back-off's cap (pgqueue.workerdb): a worker reconnects within this of the server.
RECONNECT_CAP_S = 5.0


@dataclass
class WorkerStats:
    claimed: int = 0
    cursors: dict[str, claiming.Cursor] = field(default_factory=dict)


class WorkerState:
    """The state every part of the worker shares (see the module docstring)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.s = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        slots = 1 if settings.pool == "inline" else settings.concurrency
        self._me = registry.WorkerInfo(self.worker_id, tuple(settings.queues), slots=slots)
        self._next_beat = 0.0  # the registry row's heartbeat (for people watching: web console)
        self._last_beat = float("-inf")
        self._beat_busy = 0  # the busy slots the last beat wrote
        self.known = frozenset(import_task_modules(settings.tasks))
        self.slots: list[Slot] = []
        self.settler = settling.Settler(
            result_ttl=settings.result_ttl,
            notify=settings.notify,
            max_error_bytes=settings.max_error_bytes,
            known=self.known,
            # Behind a pooler the worker cannot tell a server restart (settling: written again).
            async_acks=settings.async_acks and not settings.pooled,
        )
        # Behind a pooler a server restart goes unseen: no reconnect, no claim taken back.
        self._durable = settings.durable_claims or settings.pooled
        # The inline pool's time limit (architecture §3.3): while a task runs the loop neither
        # renews nor beats, nor takes back a claim a crash lost (§3.2).
        self.inline_limit = min(
            settings.task_time_limit, settings.lease / 3, settings.heartbeat_staleness / 2
        )
        if (
            settings.pool == "inline"
            and not self._durable
            and self.inline_limit + RECONNECT_CAP_S > settings.restart_quarantine
        ):
            log.warning(
                "restart_quarantine %gs is shorter than this inline worker's time limit %gs + "
                "%gs to reconnect: after a Postgres crash a call it runs could run again "
                "elsewhere; raise restart_quarantine or set durable_claims",
                settings.restart_quarantine,
                self.inline_limit,
                RECONNECT_CAP_S,
            )
        self.buffer: collections.deque[tuple[outcomes.Claimed, outcomes.Work]] = collections.deque()
        self.stats = WorkerStats()
        self.health = serving.Health(settings.heartbeat_staleness)
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._listen: psycopg.Connection[dict[str, Any]] | None = None
        self._stopping = False
        self._stop_deadline = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._next_claim = 0.0
        self._poll_at = 0.0  # the periodic poll's clock (see next_poll)
        self._next_renew = 0.0
        self._db_retry_at = 0.0
        self._db_backoff = 0.2
        self._db_ok = False  # a write succeeded since the last connect (ready needs it)
        self._queue_turn = 0
        self._withdrawn_all = False
        self._cost: dict[str, float] = {}  # task → smoothed run time, seconds
        self._typical: float | None = None  # smoothed run time over every task
        self._inline: InlineRunner | None = None  # --pool inline: tasks run here
        self._inline_seq = 0
        # Messages this worker re-claimed while a slot still runs them (see _adopt): the newer
        # claim, which their settle and renewals must use.
        self._adopted: dict[int, outcomes.Claimed] = {}
        self.halt_state = halting.State()  # cancels heard, and when to look for abandoned calls
        self.http_port: int | None = None
        # One waiting worker is woken per message (pgqueue.waking); not behind a pooler.
        self._wait_mark: tuple[int, int] | None = None  # (asked, got) of the last claim
        self._waiter = waking.Waiter(
            self.worker_id, tuple(settings.queues), enabled=not settings.pooled
        )

    # Defined by the parts further along (the supervisor and pgqueue.finishing), declared here so
    # each part type-checks on its own.

    def _take(self, msg: outcomes.Claimed) -> outcomes.Claimed:
        raise NotImplementedError

    def _current(self, msg: outcomes.Claimed) -> outcomes.Claimed:
        raise NotImplementedError

    def _release(self, msgs: list[outcomes.Claimed]) -> None:
        raise NotImplementedError

    def _renew(self) -> None:
        """Renew the leases held, taking back claims a crash lost (pgqueue.leasing)."""
        raise NotImplementedError

    def _reported(self, reports: list[tuple[outcomes.Claimed, jobs.Report]]) -> None:
        raise NotImplementedError

    def _dead_letter(self, msg: outcomes.Claimed, verdict: outcomes.DeadLetter) -> None:
        raise NotImplementedError

    def _cancels_heard(self, payloads: list[str]) -> None:
        """Cancel NOTIFYs arrived (pgqueue.halting, called by the supervisor)."""
        raise NotImplementedError

    def _leases_lost(self, msg_ids: list[int]) -> None:
        """A renewal found these rows re-claimed or gone (pgqueue.halting, by the supervisor)."""
        raise NotImplementedError
