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

How much to claim follows what the tasks cost (:mod:`pgqueue.dispatching`): one claim, one pipe
write and one ack then cover many short messages, which is what a drain of short tasks is bound
by. The worker's parts, one module per concept, share :class:`pgqueue.workerstate.WorkerState`;
this module keeps the loop, its sleep and the claim.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection
import os
import random
import signal
import time
from types import FrameType
from typing import Any

from pgqueue import (
    claiming,
    db,
    halting,
    metrics,
    outcomes,
    registry,
    serving,
)
from pgqueue.dispatching import INLINE_TURN_S
from pgqueue.inline import InlineRunner
from pgqueue.leasing import Leasing
from pgqueue.maintenance import Vacuumer
from pgqueue.slots import Slot
from pgqueue.ticking import for_worker as start_periodic
from pgqueue.workerdb import ENQUEUE_CHANNEL
from pgqueue.workerstate import WorkerStats

log = logging.getLogger(__name__)

# How often the worker's row in the registry (pgqueue.worker) is refreshed, seconds: for people
# watching (the web console's Workers page calls a row stale after a few missed beats).
REGISTRY_BEAT_S = 5.0
# The least time between two beats when a worker turns busy (see _loop), seconds.
BUSY_BEAT_S = 0.5

__all__ = ["ENQUEUE_CHANNEL", "INLINE_TURN_S", "REGISTRY_BEAT_S", "Worker", "WorkerStats"]


class Worker(Leasing):
    """``pgqueue worker``: run until SIGTERM/SIGINT, then drain."""

    # -- cancellation (pgqueue.halting) -------------------------------------------------------

    def _cancels_heard(self, payloads: list[str]) -> None:
        halting.heard(self, payloads)

    def _leases_lost(self, msg_ids: list[int]) -> None:
        halting.after_renewal(self, msg_ids)

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
            self._inline = InlineRunner(self.inline_limit)
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
            # A worker that turns busy beats at once (at most every BUSY_BEAT_S): the operator's
            # pod-deletion-cost reads the row, and a row saying "idle" for up to a whole beat would
            # let a scale-in pick this pod while it runs a task.
            turned_busy = (
                bool(busy) and not self._beat_busy and now >= self._last_beat + BUSY_BEAT_S
            )
            if (now >= self._next_beat or turned_busy) and self._conn is not None and self._db_ok:
                self._next_beat = now + REGISTRY_BEAT_S
                self._last_beat = now
                self._beat_busy = len(busy)
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
            if self._stopping and not busy and not self.settler.unwritten:
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
            halting.stop_unwanted(self, now)  # cancelled, or abandoned with cancel_on_timeout
            if not self._stopping and now >= self._next_claim:
                self._claim_and_dispatch()
            self._sleep()
            self._flush()
            self._mark_waiting()

    def _sleep(self) -> None:
        now = time.monotonic()
        wake_at = [self._next_renew, now + 1.0]
        if not self._stopping:
            wake_at.append(self._next_claim)
        else:
            wake_at.append(self._stop_deadline)
        if self.settler.unwritten or self._conn is None:
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

    # -- claim -------------------------------------------------------------------------------

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
            self._next_claim = self.next_poll(began)
            self._start_buffered()
            return
        self._waiter.claiming()
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
        self._next_claim = began if full else self.next_poll(began)
        # Marked waiting (or not) after the next flush: before it, the mark's round trip would
        # delay the reply of what this claim started. Until it lands, an enqueue that finds no
        # waiting worker NOTIFYs the shared channel, which this worker hears: nothing is missed.
        self._wait_mark = (wanted, len(claimed))

    def _mark_waiting(self) -> None:
        """The last claim's consequence for pgqueue.waking (see _claim_and_dispatch)."""
        mark, self._wait_mark = self._wait_mark, None
        if mark is None or self._conn is None or self._stopping:
            return
        outage = self._waiter.after_claim(self._conn, *mark)
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

    def next_poll(self, began: float) -> float:
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

    def _claim(self, queue: str, limit: int) -> list[outcomes.Claimed] | None:
        """One claim statement; None when it failed (an outage, or a claim error backed off)."""
        assert self._conn is not None
        cursor = self.stats.cursors.setdefault(queue, claiming.Cursor())
        began = time.monotonic()
        try:
            got = claiming.claim(
                self._conn,
                queue,
                limit,
                lease=self.s.lease,
                worker_id=self.worker_id,
                cursor=cursor,
                durable=self._durable,
                quarantine=self.s.restart_quarantine,
            )
        except Exception as exc:  # the policy decides; the loop never dies here
            if not self._failed("claim", exc, "claim on queue %s failed: %s", queue):
                self._next_claim = time.monotonic() + max(self.s.poll_interval, 1.0)
            return None
        self._db_up()
        # A claim that holds a call committed synchronously: every ack before it is on disk.
        self.settler.confirm(began, flushed=self._durable and claiming.holds_call(got))
        return got

    def _release(self, msgs: list[outcomes.Claimed]) -> None:
        """Make claimed messages visible again at once, without counting an attempt."""
        msgs = [self._take(m) for m in msgs]
        if msgs and self._conn is not None:
            outage = claiming.release(self._conn, msgs)
            if outage is not None:
                self._db_down("release", outage)
