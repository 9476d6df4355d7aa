"""Dispatch: how much the worker claims, which slot takes what, and what each task costs.

A task that has not run here yet, or runs long, goes one at a time to a free slot (nothing waits
behind it). A task measured short is handed to slots several at a time, up to
``slot_backlog_seconds`` of expected work queued per slot; if one of them then runs long, what
queued behind it moves to a free slot. ``--pool inline`` runs the buffer here, a turn at a time.
"""

from __future__ import annotations

import logging
import time

from pgqueue import jobs, metrics, outcomes
from pgqueue.inline import InlineRunner
from pgqueue.slots import Slot
from pgqueue.workerdb import DatabaseLink

# One logger for the whole worker loop, whichever part of it speaks.
log = logging.getLogger("pgqueue.supervisor")

# An inline worker runs buffered jobs for at most this long per loop turn before it writes their
# acks (one commit) and renews leases, so replies are not held behind a long batch.
INLINE_TURN_S = 0.002


class Dispatching(DatabaseLink):
    """Room in the slots, the hand-out of buffered messages, and the run-time estimates."""

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

    def _expected(self, task: str) -> float | None:
        return self._cost.get(task)

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

    def _steal_after(self) -> float:
        return max(5 * self.s.slot_backlog_seconds, 0.05)

    def _requeue_front(self, taken: list[outcomes.Claimed]) -> None:
        """Jobs taken back from a slot before they started go to the front of the buffer, in
        their order (pgqueue.halting takes them back too, for a cancel)."""
        for msg in reversed(taken):
            verdict = outcomes.admit(msg, self.known, self.s.max_attempts)
            if isinstance(verdict, outcomes.Work):
                self.buffer.appendleft((msg, verdict))
            else:  # admitted once already; kept for the decision table's sake
                self._dead_letter(msg, verdict)

    def _unblock(self, slot: Slot, running: outcomes.Claimed, ran: float) -> None:
        """A task expected short runs long: give what queued behind it to a free slot."""
        if not any(s.free for s in self.slots) or not slot.queued():
            return
        self._learn(running.task_name, ran)  # and stop queueing behind this task
        taken = [self._take(m) for m in slot.withdraw()]
        self._requeue_front(taken)
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
