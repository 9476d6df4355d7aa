"""The worker supervisor: claims, dispatches to child-process slots, renews leases, settles.

One single-threaded loop owns every database write, so the rules of DESIGN §3 live in one place:
claim what the slots can start soon, renew the leases of what it holds every lease/3, kill a task
at its hard limit, and settle each run fenced by (msg_id, read_ct). It sleeps in one ``wait`` on
the slots' pipes, the LISTEN socket and a signal pipe, so a finished task, a new message or
SIGTERM each wake it at once. Database outages are survived: pending writes are kept and
retried, leases decide what another worker may take over meanwhile.

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
import signal
import socket
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg

from pgqueue import db, metrics, outcomes, serving, sqlfiles
from pgqueue.inline import InlineRunner
from pgqueue.maintenance import Vacuumer
from pgqueue.replies import ReplyStatus
from pgqueue.settings import WorkerSettings
from pgqueue.slots import Lost, Slot, job_for
from pgqueue.tasks import import_task_modules
from pgqueue.ticking import for_worker as start_periodic

log = logging.getLogger(__name__)

ENQUEUE_CHANNEL = "pgqueue_enqueue"

# An inline worker runs buffered jobs for at most this long per loop turn before it writes their
# acks (one commit) and renews leases, so replies are not held behind a long batch.
INLINE_TURN_S = 0.002


@dataclass
class _Pending:
    """A settle write that could not reach the database yet; retried until it lands or is fenced."""

    msg: outcomes.Claimed
    action: outcomes.Action
    finished: float  # monotonic
    attempts: int = 0

    @property
    def claimed(self) -> float:
        return self.msg.claimed_at


TENANT_SPAN = 64  # tenants one claim considers; more rotate through successive claims


def claim_params(
    queue: str, limit: int, lease: float, worker_id: str, tenant_cursor: str = ""
) -> dict[str, Any]:
    """Parameters of the named query ``claim`` (the benchmark times the statement with them)."""
    return {
        "queue": queue,
        "limit": limit,
        # Over-fetched: SKIP LOCKED applies after, and concurrent claimers see the same rows.
        # Twice the limit (plus a few for small claims): the candidate list is what a big claim
        # pays for (a claim of 256 on a 60k backlog: 16 ms of server time with 4× + 4, 8 ms
        # with 2× + 4), and a claimer that meets locked rows claims again when its work settles.
        "candidates": limit * 2 + 16,
        "lease": lease,
        "worker_id": worker_id,
        "tenant_cursor": tenant_cursor,
        "tenant_span": TENANT_SPAN,
        # Shuffles tenants whose rows tie, so a one-row claim does not always favour the same.
        "salt": os.urandom(4).hex(),
    }


@dataclass
class _Cursor:
    tenant: str = ""


@dataclass
class WorkerStats:
    claimed: int = 0
    settled: int = 0
    lost: int = 0
    cursors: dict[str, _Cursor] = field(default_factory=dict)


class Worker:
    """``pgqueue worker``: run until SIGTERM/SIGINT, then drain."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.s = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.known = frozenset(import_task_modules(settings.tasks))
        self.slots: list[Slot] = []
        self.pending: list[_Pending] = []
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
        self._queue_turn = 0
        self._withdrawn_all = False
        self._cost: dict[str, float] = {}  # task → smoothed run time, seconds
        self._typical: float | None = None  # smoothed run time over every task
        self._inline: InlineRunner | None = None  # --pool inline: tasks run here
        self._inline_seq = 0
        self.http_port: int | None = None

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
            self.slots = [Slot(i, self.s.tasks) for i in range(self.s.concurrency)]
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
            self._close_db()
            log.info(
                "worker %s stopped: %d claimed, %d settled, %d leases lost",
                self.worker_id,
                self.stats.claimed,
                self.stats.settled,
                self.stats.lost,
            )

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            self.health.beat()
            busy = [s for s in self.slots if s.busy]
            metrics.BUSY_SLOTS.set(len(busy))
            # Ready = connected, taking work, and a slot has imported the tasks.
            self.health.ready = (
                self._conn is not None
                and not self._stopping
                and (self._inline is not None or any(s.ready for s in self.slots))
            )
            if self._stopping and not self._withdrawn_all:
                # Claimed but not started, here or queued in a slot: visible at once (§3.11).
                self._withdrawn_all = True
                unstarted = [msg for msg, _ in self.buffer]
                self.buffer.clear()
                for slot in self.slots:
                    unstarted += slot.withdraw()
                self._release(unstarted)
                busy = [s for s in self.slots if s.busy]
            if self._stopping and not busy and not self.pending:
                return
            if self._stopping and now >= self._stop_deadline:
                self._abandon(busy)
                return
            self._ensure_db(now)
            self._flush()
            if now >= self._next_renew:
                self._renew()
            for slot in busy:
                running = slot.running()
                if running is not None and now >= running[1] + self.s.task_time_limit:
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
        if self.pending or self._conn is None:
            wake_at.append(self._db_retry_at)
        for slot in self.slots:
            if slot.busy:
                running = slot.running()
                # Nothing started yet: whatever starts next cannot hit its limit before this.
                started = running[1] if running is not None else now
                wake_at.append(started + self.s.task_time_limit)
                if running is not None and started + self._steal_after() > now:
                    wake_at.append(started + self._steal_after())
        timeout = max(0.0, min(wake_at) - now)
        watched: list[Any] = [self._wake_r]
        by_conn: dict[Any, Slot] = {}
        for slot in self.slots:
            if slot.busy or not slot.ready:
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
                self.s.dsn, pooled=self.s.pooled, connect_timeout=self.s.connect_timeout
            )
            if not self.s.pooled:
                self._listen = db.connect(self.s.dsn, connect_timeout=self.s.connect_timeout)
                self._listen.execute(f"LISTEN {ENQUEUE_CHANNEL}")
            self._db_backoff = 0.2
            self._next_claim = now
            self.health.ready = not self._stopping
            log.info("connected to %s", db.redact(self.s.dsn))
        except psycopg.Error as exc:
            self._db_down("connect", exc)

    def _db_down(self, op: str, exc: BaseException) -> None:
        metrics.DB_ERRORS.labels(op).inc()
        if self._conn is not None or self._db_backoff <= 0.2:
            log.warning("database unavailable during %s (%s); retrying", op, type(exc).__name__)
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

    def _drain_notifies(self) -> None:
        assert self._listen is not None
        try:
            for note in self._listen.notifies(timeout=0):
                if note.payload in self.s.queues:
                    self._next_claim = time.monotonic()
        except psycopg.Error as exc:
            self._db_down("listen", exc)

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
        claimed: list[outcomes.Claimed] = []
        queues = self.s.queues
        for i in range(len(queues)):
            queue = queues[(self._queue_turn + i) % len(queues)]
            got = self._claim(queue, wanted - len(claimed))
            if got is None:
                return
            claimed += got
            if len(claimed) >= wanted:
                break
        self._queue_turn = (self._queue_turn + 1) % len(queues)
        self.stats.claimed += len(claimed)
        for msg in claimed:
            verdict = outcomes.admit(msg, self.known, self.s.max_attempts)
            if isinstance(verdict, outcomes.DeadLetter):
                self._dead_letter(msg, verdict)
            else:
                self.buffer.append((msg, verdict))
        self._start_buffered()
        # A full batch means more is waiting: claim again as soon as a slot frees up.
        full = len(claimed) >= wanted
        self._next_claim = began if full else self._next_poll(began)

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
            self._poll_at = began + self.s.poll_interval
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
            report = runner.run(job_for(self._inline_seq, msg, work, expected))
            self._reported([(msg, report)])
            if self.buffer and time.monotonic() >= turn_ends:
                # The loop writes the acks and renews, then comes straight back for the rest.
                self._next_claim = time.monotonic()
                return

    def _claim(self, queue: str, limit: int) -> list[outcomes.Claimed] | None:
        assert self._conn is not None
        cursor = self.stats.cursors.setdefault(queue, _Cursor())
        params = claim_params(queue, limit, self.s.lease, self.worker_id, cursor.tenant)
        try:
            rows = self._conn.execute(sqlfiles.query("claim"), params).fetchall()
        except psycopg.OperationalError as exc:
            self._db_down("claim", exc)
            return None
        now = time.monotonic()
        if rows and rows[0]["walked"] >= TENANT_SPAN:
            cursor.tenant = str(rows[0]["last_tenant"])
        else:
            cursor.tenant = ""
        return [
            outcomes.Claimed(
                msg_id=r["msg_id"],
                queue=r["queue"],
                task_name=r["task_name"],
                payload=r["payload"],
                reply_key=r["reply_key"],
                priority=r["priority"],
                tenant=r["tenant"],
                read_ct=r["read_ct"],
                waited=r["waited"],
                deadline_in=r["deadline_in"],
                claimed_at=now,
            )
            for r in rows
        ]

    def _release(self, msgs: list[outcomes.Claimed]) -> None:
        """Make claimed messages visible again at once, without counting an attempt."""
        if not msgs or self._conn is None:
            return
        try:
            self._conn.execute(
                sqlfiles.query("release"),
                {"msg_ids": [m.msg_id for m in msgs], "read_cts": [m.read_ct for m in msgs]},
            )
        except psycopg.Error as exc:
            log.warning("could not release %d messages (%s); their leases will", len(msgs), exc)

    # -- settling ----------------------------------------------------------------------------

    def _steal_after(self) -> float:
        return max(5 * self.s.slot_backlog_seconds, 0.05)

    def _unblock(self, slot: Slot, running: outcomes.Claimed, ran: float) -> None:
        """A task expected short runs long: give what queued behind it to a free slot."""
        if not any(s.free for s in self.slots) or not slot.queued():
            return
        self._learn(running.task_name, ran)  # and stop queueing behind this task
        taken = slot.withdraw()
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

    def _reported(self, reports: list[tuple[outcomes.Claimed, outcomes.RunResult | str]]) -> None:
        for msg, report in reports:
            if isinstance(report, outcomes.RunResult):
                self._settle(msg, report)
            else:
                self._dead_letter(
                    msg,
                    outcomes.DeadLetter(
                        "deadline passed: the caller stopped waiting before the task could start"
                    ),
                )

    def _dead_letter(self, msg: outcomes.Claimed, verdict: outcomes.DeadLetter) -> None:
        """Queue the move to the dead-letter table (written by the next flush)."""
        log.warning(
            "dead-lettering msg_id=%d task=%s: %s", msg.msg_id, msg.task_name, verdict.reason
        )
        self.pending.append(_Pending(msg, verdict, time.monotonic()))

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
                error = f"TimeLimitExceeded: killed after {self.s.task_time_limit:g}s"
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
        metrics.TASK_DURATION.labels(msg.queue, msg.task_name).observe(run.duration)
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
        )
        if not run.ok:
            log.info(
                "task failed: msg_id=%d task=%s attempt=%d: %s",
                msg.msg_id,
                msg.task_name,
                msg.read_ct,
                run.error,
            )
        self.pending.append(_Pending(msg, action, time.monotonic()))
        self._next_claim = min(self._next_claim, time.monotonic())

    def _flush(self) -> None:
        """Write every settled outcome: all acks in one statement (one commit), then the rest."""
        if not self.pending or self._conn is None:
            return
        batch, self.pending = self.pending, []
        acks = [p for p in batch if isinstance(p.action, outcomes.Ack)]
        others = [p for p in batch if not isinstance(p.action, outcomes.Ack)]
        try:
            if acks:
                self._write_acks(acks)
                acks = []
            while others:
                self._write_other(others[0])
                others.pop(0)
        except psycopg.OperationalError as exc:
            self.pending = acks + others + self.pending
            self._db_down("settle", exc)
            for item in acks + others:
                item.attempts += 1
                if item.attempts == 3 and item.msg.reply_key is not None:
                    log.error(
                        "reply not stored yet (database down): reply_key=%s task=%s msg_id=%d; "
                        "kept in memory and retried, the lease decides if this worker dies",
                        item.msg.reply_key,
                        item.msg.task_name,
                        item.msg.msg_id,
                    )
            return
        if any(p.attempts for p in batch):
            log.info("database back: pending replies and acks written")

    def _write_acks(self, items: list[_Pending]) -> None:
        assert self._conn is not None
        params = {
            "msg_ids": [p.msg.msg_id for p in items],
            "read_cts": [p.msg.read_ct for p in items],
            "statuses": [p.action.status.value for p in items],  # type: ignore[union-attr]
            "results": [p.action.result_json for p in items],  # type: ignore[union-attr]
            "errors": [p.action.error for p in items],  # type: ignore[union-attr]
            "result_ttl": self.s.result_ttl,
            "notify": self.s.notify,
        }
        try:
            rows = self._conn.execute(sqlfiles.query("ack"), params).fetchall()
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            if len(items) > 1:
                # One reply spoils the batch: write them one by one to find it.
                for item in items:
                    self._write_acks([item])
                return
            self._reply_refused(items[0], exc)
            return
        self._landed(items, {r["msg_id"] for r in rows})

    def _reply_refused(self, item: _Pending, exc: psycopg.Error) -> None:
        """The database refused a reply (§3.8): tell the caller why, in a second transaction."""
        action = item.action
        if isinstance(action, outcomes.Ack) and action.result_json is not None:
            log.warning("reply of msg_id=%d refused by the database: %s", item.msg.msg_id, exc)
            fallback = outcomes.Ack(
                ReplyStatus.FAILED,
                None,
                f"reply not stored: the database refused it: {type(exc).__name__}: {exc}",
                "reply_failed",
            )
            self._write_acks([_Pending(item.msg, fallback, item.finished)])
        else:
            log.error("settle of msg_id=%d refused: %s; the lease decides", item.msg.msg_id, exc)

    def _write_other(self, item: _Pending) -> None:
        assert self._conn is not None
        fence = {"msg_id": item.msg.msg_id, "read_ct": item.msg.read_ct}
        action = item.action
        if isinstance(action, outcomes.Retry):
            row = self._conn.execute(
                sqlfiles.query("retry"), {**fence, "delay": action.delay}
            ).fetchone()
        else:
            assert isinstance(action, outcomes.DeadLetter)
            row = self._conn.execute(
                sqlfiles.query("dead_letter"),
                {
                    **fence,
                    "reason": action.reason,
                    "result_ttl": self.s.result_ttl,
                    "notify": self.s.notify,
                },
            ).fetchone()
        self._landed([item], {item.msg.msg_id} if row is not None else set())

    def _landed(self, items: list[_Pending], kept: set[int]) -> None:
        """Count what was written; a row that was not ours any more is a lost lease."""
        for item in items:
            msg, action = item.msg, item.action
            self.stats.settled += 1
            if msg.msg_id not in kept:
                self.stats.lost += 1
                metrics.LEASE_LOST.inc()
                metrics.TASKS.labels(msg.queue, msg.task_name, "lost").inc()
                log.warning(
                    "lease lost: msg_id=%d task=%s was re-claimed or removed; result ignored",
                    msg.msg_id,
                    msg.task_name,
                )
                continue
            if isinstance(action, outcomes.Ack):
                outcome = action.outcome
                if msg.reply_key is not None:
                    metrics.RPC_LATENCY.labels(msg.queue, msg.task_name).observe(
                        max(0.0, msg.waited) + time.monotonic() - item.claimed
                    )
            else:
                outcome = "retried" if isinstance(action, outcomes.Retry) else "dead_lettered"
            text = action.reason if isinstance(action, outcomes.DeadLetter) else action.error
            if text.startswith("TimeLimitExceeded") and outcome in {"failed", "retried"}:
                outcome = "timed_out"  # one run, one count: the kill is why it failed
            metrics.TASKS.labels(msg.queue, msg.task_name, outcome).inc()

    # -- leases ------------------------------------------------------------------------------

    def _held(self) -> list[outcomes.Claimed]:
        held = [m for s in self.slots for m in s.held()]
        return held + [m for m, _ in self.buffer] + [p.msg for p in self.pending]

    def _renew(self) -> None:
        self._next_renew = time.monotonic() + self.s.lease / 3
        held = self._held()
        if not held or self._conn is None:
            return
        try:
            rows = self._conn.execute(
                sqlfiles.query("renew"),
                {
                    "lease": self.s.lease,
                    "msg_ids": [m.msg_id for m in held],
                    "read_cts": [m.read_ct for m in held],
                },
            ).fetchall()
        except psycopg.OperationalError as exc:
            self._db_down("renew", exc)
            return
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
