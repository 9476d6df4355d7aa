"""The worker supervisor: claims, dispatches to child-process slots, renews leases, settles.

One single-threaded loop owns every database write, so the rules of architecture §3 live in one
place: claim what the slots can start soon, renew the leases of what it holds every lease/3, kill a
task at its hard limit, and settle each run fenced by its claim (msg_id, claim_token). It sleeps in
one ``wait`` on the slots' pipes, the LISTEN socket and a signal pipe, so a finished task, a new
message or SIGTERM each wake it at once. The claim itself lives in :mod:`pgqueue.claiming`, the
settle path in :mod:`pgqueue.settling`; both follow the one error policy of :mod:`pgqueue.dberrors`:
an outage keeps every pending write, backs off and reconnects (leases decide what another worker may
take over meanwhile), a row the database refuses is settled alone, and nothing a task returns or
raises can stop this loop.

How much to claim follows what the tasks cost. A task that has not run here yet, or runs long,
goes one at a time to a free slot (nothing waits behind it). A task measured short is handed to
slots several at a time, up to ``slot_backlog_seconds`` of expected work queued per slot: one
claim, one pipe write and one ack then cover many messages, which is what a drain of short tasks
is bound by.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing.connection
import os
import random
import signal
import socket
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg

from pgqueue import (
    claiming,
    db,
    dberrors,
    jobs,
    limits,
    metrics,
    outcomes,
    registry,
    serving,
    settling,
    sqlfiles,
    waking,
)
from pgqueue.inline import InlineRunner
from pgqueue.maintenance import Vacuumer
from pgqueue.settings import WorkerSettings
from pgqueue.slots import Lost, Slot
from pgqueue.tasks import import_task_modules
from pgqueue.ticking import for_worker as start_periodic

log = logging.getLogger(__name__)

ENQUEUE_CHANNEL = "pgqueue_enqueue"

# An inline worker runs buffered jobs for at most this long per loop turn before it writes their
# acks (one commit) and renews leases, so replies are not held behind a long batch.
INLINE_TURN_S = 0.002

# How often the worker's row in the registry (pgqueue.worker) is refreshed, seconds: for people
# watching (the web console's Workers page calls a row stale after a few missed beats).
REGISTRY_BEAT_S = 5.0


@dataclass
class WorkerStats:
    claimed: int = 0
    cursors: dict[str, claiming.Cursor] = field(default_factory=dict)


class Worker:
    """``pgqueue worker``: run until SIGTERM/SIGINT, then drain."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.s = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        slots = 1 if settings.pool == "inline" else settings.concurrency
        self._me = registry.WorkerInfo(self.worker_id, tuple(settings.queues), slots=slots)
        self._next_beat = 0.0  # the registry row's heartbeat (for people watching: web console)
        self.known = frozenset(import_task_modules(settings.tasks))
        self.slots: list[Slot] = []
        self.settler = settling.Settler(
            result_ttl=settings.result_ttl,
            notify=settings.notify,
            max_error_bytes=settings.max_error_bytes,
            known=self.known,
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
        self._poll_at = 0.0  # the periodic poll's clock (see _next_poll)
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
        self.http_port: int | None = None
        # One waiting worker is woken per message (pgqueue.waking); not behind a pooler.
        self._waiter = waking.Waiter(
            self.worker_id, tuple(settings.queues), enabled=not settings.pooled
        )

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        if not self._stopping:
            log.info(
                "received %s: no new claims; running tasks get up to %.0fs",
                signal.Signals(signum).name,
                self.s.shutdown_grace,
            )
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.s.shutdown_grace
            self.health.ready = False
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        if self.s.metrics_port:
            server = serving.serve(self.health, self.s.metrics_host, self.s.metrics_port)
            self.http_port = server.server_address[1]
        if self.s.pool == "inline":
            limit = min(self.s.task_time_limit, self.s.lease / 3, self.s.heartbeat_staleness / 2)
            self._inline = InlineRunner(limit)
        else:
            self.slots = [
                Slot(i, self.s.tasks, self.s.task_time_limit) for i in range(self.s.concurrency)
            ]
        metrics.SLOTS.set(len(self.slots) or 1)
        log.info(
            "worker %s: queues=%s pool=%s slots=%d tasks=%d lease=%.0fs time_limit=%gs db=%s",
            self.worker_id,
            ",".join(self.s.queues),
            self.s.pool,
            len(self.slots) or 1,
            len(self.known),
            self.s.lease,
            self._inline.limit if self._inline else self.s.task_time_limit,
            db.redact(self.s.dsn),
        )
        vacuumer = None
        if self.s.vacuum_interval > 0:
            vacuumer = Vacuumer(
                self.s.dsn,
                self.s.vacuum_interval,
                pooled=self.s.pooled,
                connect_timeout=self.s.connect_timeout,
            )
            vacuumer.start()
        scheduler = start_periodic(self.s, self.worker_id)  # None: no @periodic schedules
        try:
            self._loop()
        finally:
            if vacuumer is not None:
                vacuumer.stop()
            if scheduler is not None:
                scheduler.stop()
            for slot in self.slots:
                slot.stop()
            if self._conn is not None and not self._conn.closed:
                registry.deregister(self._conn, self.worker_id)
            self._close_db()
            log.info(
                "worker %s stopped: %d claimed, %d settled, %d leases lost",
                self.worker_id,
                self.stats.claimed,
                self.settler.settled,
                self.settler.lost,
            )

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            self.health.beat()
            busy = [s for s in self.slots if s.busy]
            metrics.BUSY_SLOTS.set(len(busy))
            if now >= self._next_beat and self._conn is not None and self._db_ok:
                self._next_beat = now + REGISTRY_BEAT_S
                registry.beat(self._conn, self._me, len(busy))
            # Ready = connected and writing (a read-only database connects, then refuses every
            # claim), taking work, and a slot has imported the tasks.
            self.health.ready = (
                self._conn is not None
                and self._db_ok
                and not self._stopping
                and (self._inline is not None or any(s.ready for s in self.slots))
            )
            if self._stopping and not self._withdrawn_all:
                # Claimed but not started, here or queued in a slot: visible at once (§3.11).
                self._withdrawn_all = True
                self._waiter.stop(self._conn)
                unstarted = [msg for msg, _ in self.buffer]
                self.buffer.clear()
                for slot in self.slots:
                    unstarted += slot.withdraw()
                self._release(unstarted)
                busy = [s for s in self.slots if s.busy]
            if self._stopping and not busy and not self.settler.pending:
                return
            if self._stopping and now >= self._stop_deadline:
                self._abandon(busy)
                return
            self._ensure_db(now)
            for slot in self.slots:
                if slot.respawn_due(now):
                    slot.respawn()
            self._flush()
            if now >= self._next_renew:
                self._renew()
            for slot in busy:
                running = slot.running()
                if running is not None and now >= running[1] + self._limit(running[0]):
                    self._time_limit(slot, running[0].msg_id)
                elif running is not None and now >= running[1] + self._steal_after():
                    self._unblock(slot, running[0], now - running[1])
            if not self._stopping and now >= self._next_claim:
                self._claim_and_dispatch()
            self._sleep()
            self._flush()

    def _sleep(self) -> None:
        now = time.monotonic()
        wake_at = [self._next_renew, now + 1.0]
        if not self._stopping:
            wake_at.append(self._next_claim)
        else:
            wake_at.append(self._stop_deadline)
        if self.settler.pending or self._conn is None:
            wake_at.append(self._db_retry_at)
        for slot in self.slots:
            if slot.respawn_at is not None:
                wake_at.append(slot.respawn_at)
            if slot.busy:
                running = slot.running()
                # Nothing started yet: whatever starts next cannot hit its limit before this.
                if running is None:
                    wake_at.append(now + min(self._limit(m) for m in slot.held()))
                    started = now
                else:
                    started = running[1]
                    wake_at.append(started + self._limit(running[0]))
                if running is not None and started + self._steal_after() > now:
                    wake_at.append(started + self._steal_after())
        timeout = max(0.0, min(wake_at) - now)
        watched: list[Any] = [self._wake_r]
        by_conn: dict[Any, Slot] = {}
        for slot in self.slots:
            if (slot.busy or not slot.ready) and slot.respawn_at is None:
                watched += [slot.conn, slot.process.sentinel]
                by_conn[slot.conn] = slot
                by_conn[slot.process.sentinel] = slot
        if self._listen is not None:
            watched.append(self._listen.fileno())
        ready = multiprocessing.connection.wait(watched, timeout)
        done: set[int] = set()
        for item in ready:
            if item == self._wake_r:
                os.read(self._wake_r, 1024)
            elif self._listen is not None and item == self._listen.fileno():
                self._drain_notifies()
            else:
                slot = by_conn[item]
                if slot.index in done:
                    continue
                done.add(slot.index)
                if not slot.ready:
                    if slot.mark_ready():
                        self._next_claim = min(self._next_claim, time.monotonic())
                elif slot.busy:
                    self._reported(slot.reports())
                    if not slot.alive():
                        self._lost(slot.dead(), culprit=None)

    # -- database connection ---------------------------------------------------------------

    def _ensure_db(self, now: float) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        if now < self._db_retry_at:
            return
        try:
            self._conn = db.connect(
                self.s.dsn,
                pooled=self.s.pooled,
                connect_timeout=self.s.connect_timeout,
                settings=self.s,
            )
            if not self.s.pooled:
                self._listen = db.connect(
                    self.s.dsn, connect_timeout=self.s.connect_timeout, settings=self.s
                )
                self._waiter.listen(self._listen, self._conn)
                self._listen.execute(f"LISTEN {ENQUEUE_CHANNEL}")
            self._next_claim = now
            log.info("connected to %s", db.redact(self.s.dsn))
            registry.register(self._conn, self._me)
        except psycopg.Error as exc:
            self._db_down("connect", exc)

    def _db_up(self) -> None:
        """A write succeeded: the database is usable again."""
        if not self._db_ok:
            self._db_ok = True
            self._db_backoff = 0.2

    def _db_down(self, op: str, exc: BaseException) -> None:
        """An outage (dberrors.Kind.OUTAGE): keep what is pending, back off, reconnect."""
        metrics.DB_ERRORS.labels(op).inc()
        if self._conn is not None or self._db_backoff <= 0.2:
            log.warning(
                "database unavailable during %s (%s); retrying in %.1fs",
                op,
                dberrors.describe(exc),
                self._db_backoff,
            )
        self._db_ok = False
        self._close_db()
        self._db_retry_at = time.monotonic() + self._db_backoff
        self._db_backoff = min(self._db_backoff * 2, 5.0)
        self.health.ready = False

    def _close_db(self) -> None:
        for conn in (self._conn, self._listen):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
        self._conn = None
        self._listen = None
        self._waiter.disconnected()

    def _drain_notifies(self) -> None:
        assert self._listen is not None
        try:
            for note in self._listen.notifies(timeout=0):
                if note.payload in self.s.queues:
                    self._next_claim = time.monotonic()
                    self._waiter.heard(note.channel)
        except Exception as exc:  # the policy: an outage, or a wake-up missed
            if dberrors.classify(exc) is dberrors.Kind.OUTAGE:
                self._db_down("listen", exc)
            else:
                log.warning("LISTEN socket: %s; polling meanwhile", dberrors.describe(exc))

    # -- claim and dispatch ------------------------------------------------------------------

    def _room(self) -> tuple[int, int]:
        """(messages the slots can take now, what they take when all are idle)."""
        window, most = self.s.slot_backlog_seconds, self.s.slot_backlog_max
        typical = self._typical
        batching = typical is not None and most > 1 and 0 < typical <= window
        if self._inline is not None:
            # One runner: a window's worth of short tasks per claim, else one at a time.
            n = max(1, min(most, int(window / max(typical or 0.0, 1e-4)))) if batching else 1
            return n, n
        room = full = 0
        for slot in self.slots:
            if not slot.ready:
                continue
            if not batching:
                room += 0 if slot.outstanding else 1
                full += 1
                continue
            assert typical is not None
            fits = int((window - slot.expected) / max(typical, 1e-4))
            room += max(1 if not slot.outstanding else 0, min(most - len(slot.outstanding), fits))
            full += max(1, min(most, int(window / max(typical, 1e-4))))
        return room, full

    def _claim_and_dispatch(self) -> None:
        room, full = self._room()
        wanted = room + self.s.prefetch - len(self.buffer)
        if self.s.batch_size:
            wanted = min(wanted, self.s.batch_size)
        if not any(s.free for s in self.slots) and room < full // 2:
            wanted -= room  # every slot has work queued: claim for them when half is back
        if wanted <= 0 or self._conn is None:
            self._next_claim = time.monotonic() + self.s.poll_interval
            self._start_buffered()
            return
        began = time.monotonic()
        if self._waiter.holds_off(began, self._poll_at):
            # Waiting for a wake-up (pgqueue.waking): an enqueue will take our row.
            self._next_claim = self._next_poll(began)
            self._start_buffered()
            return
        claimed: list[outcomes.Claimed] = []
        queues = self.s.queues
        for i in range(len(queues)):
            queue = queues[(self._queue_turn + i) % len(queues)]
            got = self._claim(queue, wanted - len(claimed))
            if got is None:
                self._start_buffered()
                return
            claimed += got
            if len(claimed) >= wanted:
                break
        self._queue_turn = (self._queue_turn + 1) % len(queues)
        self.stats.claimed += len(claimed)
        for msg in claimed:
            if msg.ignored:
                log.warning(
                    "msg_id=%d task=%s: per-task options ignored, the worker's settings apply: %s",
                    msg.msg_id,
                    outcomes.metric_task(msg.task_name, self.known),
                    "; ".join(msg.ignored),
                )
            if self._adopt(msg):
                continue
            verdict = outcomes.admit(msg, self.known, self.s.max_attempts)
            if isinstance(verdict, outcomes.DeadLetter):
                self._dead_letter(msg, verdict)
            else:
                self.buffer.append((msg, verdict))
        self._start_buffered()
        # A full batch means more is waiting: claim again as soon as a slot frees up.
        full = len(claimed) >= wanted
        self._next_claim = began if full else self._next_poll(began)
        if self._conn is not None:
            outage = self._waiter.after_claim(self._conn, wanted, len(claimed))
            if outage is not None:
                self._db_down("wait", outage)

    def _adopt(self, msg: outcomes.Claimed) -> bool:
        """A claim returned a message this worker still holds: its own lease ran out (the
        database was out of reach for longer than a lease) and nobody else took it meanwhile.
        Keep the run it has, or the result it is waiting to write, under the new claim instead
        of running the task a second time."""
        held: outcomes.Claimed | None = None
        for item in self.settler.pending:
            if item.msg.msg_id == msg.msg_id:
                held, item.msg = item.msg, msg
        for i, (queued, work) in enumerate(self.buffer):
            if queued.msg_id == msg.msg_id:
                held = queued
                self.buffer[i] = (msg, work)
        if held is None and any(msg.msg_id in s.outstanding for s in self.slots):
            held = self._adopted.get(msg.msg_id, msg)
            self._adopted[msg.msg_id] = msg
        if held is None:
            return False
        log.info(
            "msg_id=%d re-claimed by this worker after its lease ran out: kept the run it has",
            msg.msg_id,
        )
        return True

    def _current(self, msg: outcomes.Claimed) -> outcomes.Claimed:
        """The newest claim of a message a slot holds (see _adopt)."""
        return self._adopted.get(msg.msg_id, msg)

    def _take(self, msg: outcomes.Claimed) -> outcomes.Claimed:
        """The newest claim of a message leaving this worker's hands."""
        return self._adopted.pop(msg.msg_id, msg)

    def _next_poll(self, began: float) -> float:
        """When the periodic poll comes next: a clock of poll_interval, start to start.

        Claims made on an event (a task settled, a NOTIFY, a slot got ready) do not reset it.
        They did: a caller that sends its next request just after its reply (a request handler
        making calls in a row) then always found the worker's clock freshly restarted by the
        reply's own settle, and waited most of an interval behind a pooler (no NOTIFY there).
        Start to start, not after the last claim returned: through a pooler the claim's round
        trip is a good part of a short interval.
        """
        if self._poll_at <= began:
            self._poll_at = began + self.s.poll_interval * (
                1.0 + random.uniform(-self.s.poll_jitter, self.s.poll_jitter)  # noqa: S311
            )
        return self._poll_at

    def _expected(self, task: str) -> float | None:
        return self._cost.get(task)

    def _start_buffered(self) -> None:
        """Hand buffered messages to slots, in claim order, as far as the slots have room."""
        if self._inline is not None:
            self._run_inline(self._inline)
            return
        window, most = self.s.slot_backlog_seconds, self.s.slot_backlog_max
        plan: dict[int, list[tuple[outcomes.Claimed, outcomes.Work, float]]] = {}
        count = {s.index: len(s.outstanding) for s in self.slots}
        work_s = {s.index: s.expected for s in self.slots}
        ready = [s for s in self.slots if s.ready]
        while self.buffer:
            msg, work = self.buffer[0]
            expected = self._expected(msg.task_name)
            target = next((s for s in ready if count[s.index] == 0), None)
            if target is None and expected is not None and 0 < expected <= window:
                fitting = [
                    s
                    for s in ready
                    if count[s.index] < most and work_s[s.index] + expected <= window
                ]
                target = min(fitting, key=lambda s: work_s[s.index], default=None)
            if target is None:
                break  # claim order is kept: nothing overtakes the head of the buffer
            self.buffer.popleft()
            plan.setdefault(target.index, []).append((msg, work, expected or 0.0))
            count[target.index] += 1
            work_s[target.index] += expected or 0.0
        for slot in ready:
            items = plan.get(slot.index)
            if items and not slot.hand(items):
                log.warning(
                    "slot %d had died; %d messages handed back",
                    slot.index,
                    len(items),
                )
                self._release([msg for msg, _, _ in items])

    def _run_inline(self, runner: InlineRunner) -> None:
        """Run buffered messages here, in claim order, for one turn (INLINE_TURN_S)."""
        turn_ends = time.monotonic() + INLINE_TURN_S
        metrics.BUSY_SLOTS.set(1 if self.buffer else 0)  # the one "slot" is this process
        while self.buffer and not self._stopping:
            msg, work = self.buffer.popleft()
            self._inline_seq += 1
            expected = self._expected(msg.task_name) or 0.0
            report = runner.run(jobs.job_for(self._inline_seq, msg, work, expected, runner.limit))
            self._reported([(msg, report)])
            if self.buffer and time.monotonic() >= turn_ends:
                # The loop writes the acks and renews, then comes straight back for the rest.
                self._next_claim = time.monotonic()
                return

    def _claim(self, queue: str, limit: int) -> list[outcomes.Claimed] | None:
        """One claim statement; None when it failed (an outage, or a claim error backed off)."""
        assert self._conn is not None
        cursor = self.stats.cursors.setdefault(queue, claiming.Cursor())
        try:
            got = claiming.claim(
                self._conn,
                queue,
                limit,
                lease=self.s.lease,
                worker_id=self.worker_id,
                cursor=cursor,
                durable=self.s.durable_claims,
            )
        except Exception as exc:  # the policy decides; the loop never dies here
            if dberrors.classify(exc) is dberrors.Kind.OUTAGE:
                self._db_down("claim", exc)
            else:
                metrics.DB_ERRORS.labels("claim").inc()
                log.error("claim on queue %s failed: %s", queue, dberrors.describe(exc))
                self._next_claim = time.monotonic() + max(self.s.poll_interval, 1.0)
            return None
        self._db_up()
        return got

    def _release(self, msgs: list[outcomes.Claimed]) -> None:
        """Make claimed messages visible again at once, without counting an attempt."""
        msgs = [self._take(m) for m in msgs]
        if msgs and self._conn is not None:
            outage = claiming.release(self._conn, msgs)
            if outage is not None:
                self._db_down("release", outage)

    # -- settling ----------------------------------------------------------------------------

    def _steal_after(self) -> float:
        return max(5 * self.s.slot_backlog_seconds, 0.05)

    def _unblock(self, slot: Slot, running: outcomes.Claimed, ran: float) -> None:
        """A task expected short runs long: give what queued behind it to a free slot."""
        if not any(s.free for s in self.slots) or not slot.queued():
            return
        self._learn(running.task_name, ran)  # and stop queueing behind this task
        taken = [self._take(m) for m in slot.withdraw()]
        for msg in reversed(taken):
            verdict = outcomes.admit(msg, self.known, self.s.max_attempts)
            if isinstance(verdict, outcomes.Work):
                self.buffer.appendleft((msg, verdict))
            else:  # admitted once already; kept for the decision table's sake
                self._dead_letter(msg, verdict)
        if taken:
            log.info(
                "msg_id=%d task=%s runs %.3fs, longer than measured: %d queued behind it "
                "moved to other slots",
                running.msg_id,
                running.task_name,
                ran,
                len(taken),
            )
            self._start_buffered()

    def _reported(self, reports: list[tuple[outcomes.Claimed, jobs.Report]]) -> None:
        for msg, report in reports:
            if isinstance(report, jobs.NotStarted):
                self._dead_letter(msg, outcomes.deadline_passed(report.late_by))
            else:
                self._settle(msg, report)

    def _dead_letter(self, msg: outcomes.Claimed, verdict: outcomes.DeadLetter) -> None:
        """Queue the move to the dead-letter table (written by the next flush)."""
        msg = self._take(msg)
        log.warning(
            "dead-lettering msg_id=%d task=%s: %s",
            msg.msg_id,
            outcomes.metric_task(msg.task_name, self.known),
            verdict.reason[:500],
        )
        self.settler.add(msg, verdict)

    def _limit(self, msg: outcomes.Claimed) -> float:
        """A run's hard limit in a slot: the message's own, at most the worker's."""
        return limits.time_limit(msg.requested, self.s.task_time_limit)

    def _time_limit(self, slot: Slot, culprit: int) -> None:
        self._lost(slot.kill(), culprit=culprit)

    def _lost(self, lost: Lost, culprit: int | None) -> None:
        """Account for a dead slot's jobs: what it began fails, what it never began goes back."""
        self._reported(lost.reports)
        release = list(lost.unstarted)
        now = time.monotonic()
        for msg, started in lost.started:
            if culprit is None:
                error = f"WorkerLost: the task's child process died (exit code {lost.exitcode})"
            elif msg.msg_id == culprit:
                error = f"TimeLimitExceeded: killed after {self._limit(msg):g}s"
            else:
                # The culprit finished as it was killed; a job just begun was not at fault.
                release.append(msg)
                continue
            self._settle(msg, outcomes.RunResult(False, None, error, now - started, started))
        self._release(release)

    def _learn(self, task: str, took: float) -> None:
        """Smoothed run time: quick to rise (a slow run stops batching), slow to fall."""
        for key, old in ((task, self._cost.get(task)), ("", self._typical)):
            new = (
                took if old is None else (old + took) / 2 if took > old else old * 0.9 + took * 0.1
            )
            if key:
                self._cost[key] = new
            else:
                self._typical = new

    def _settle(self, msg: outcomes.Claimed, run: outcomes.RunResult) -> None:
        msg = self._take(msg)
        task = outcomes.metric_task(msg.task_name, self.known)
        metrics.TASK_DURATION.labels(msg.queue, task).observe(run.duration)
        waited = msg.waited + (max(0.0, run.started - msg.claimed_at) if run.started else 0.0)
        metrics.QUEUE_WAIT.labels(msg.queue).observe(max(0.0, waited))
        self._learn(msg.task_name, run.duration)
        action = outcomes.settle(
            msg,
            run,
            max_attempts=self.s.max_attempts,
            max_result_bytes=self.s.max_result_bytes,
            retry_backoff=self.s.retry_backoff,
            retry_backoff_max=self.s.retry_backoff_max,
            max_error_bytes=self.s.max_error_bytes,
        )
        if not run.ok:
            log.info(
                "task failed: msg_id=%d task=%s attempt=%d: %s",
                msg.msg_id,
                task,
                msg.read_ct,
                outcomes.storable(run.error, 2000),
            )
        self.settler.add(msg, action)
        self._waiter.settled(run.duration, self.s.slot_backlog_seconds)
        self._next_claim = min(self._next_claim, time.monotonic())

    def _flush(self) -> None:
        """Write every settled outcome (see pgqueue.settling); an outage backs off."""
        if not self.settler.pending or self._conn is None:
            return
        outage = self.settler.flush(self._conn)
        if outage is not None:
            self._db_down("settle", outage)
        else:
            self._db_up()

    # -- leases ------------------------------------------------------------------------------

    def _held(self) -> list[outcomes.Claimed]:
        held = [self._current(m) for s in self.slots for m in s.held()]
        return held + [m for m, _ in self.buffer] + self.settler.held()

    def _renew(self) -> None:
        self._next_renew = time.monotonic() + self.s.lease / 3
        held = self._held()
        if not held or self._conn is None:
            return
        try:
            rows = self._conn.execute(
                sqlfiles.query("renew"), {"lease": self.s.lease, **claiming.fence(held)}
            ).fetchall()
        except Exception as exc:  # the policy decides; the loop never dies here
            if dberrors.classify(exc) is dberrors.Kind.OUTAGE:
                self._db_down("renew", exc)
            else:
                metrics.DB_ERRORS.labels("renew").inc()
                log.error("lease renewal failed: %s; retried next turn", dberrors.describe(exc))
                self._next_renew = time.monotonic() + 1.0
            return
        self._db_up()
        metrics.LEASE_RENEWALS.inc(len(rows))
        kept = {r["msg_id"] for r in rows}
        for m in held:
            if m.msg_id not in kept:
                metrics.LEASE_LOST.inc()
                log.warning(
                    "lease lost at renewal: msg_id=%d task=%s (re-claimed or removed)",
                    m.msg_id,
                    m.task_name,
                )

    def _abandon(self, busy: list[Slot]) -> None:
        """Grace period over: kill what still runs and hand it back at once (not an attempt)."""
        released: list[outcomes.Claimed] = []
        for slot in busy:
            lost = slot.kill()
            self._reported(lost.reports)
            released += lost.unstarted + [msg for msg, _ in lost.started]
        self._release(released)
        self._flush()
        log.warning(
            "grace period over: %d running tasks killed and released to other workers",
            len(released),
        )
