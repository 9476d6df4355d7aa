"""What becomes of a run: settled, dead-lettered, killed at its time limit, or lost with its slot.

Each outcome is decided by :mod:`pgqueue.outcomes` and queued on the
:class:`~pgqueue.settling.Settler`, which the loop flushes (architecture §3.4–§3.8).
"""

from __future__ import annotations

import logging
import time

from pgqueue import jobs, limits, metrics, outcomes
from pgqueue.dispatching import Dispatching
from pgqueue.slots import Lost, Slot

# One logger for the whole worker loop, whichever part of it speaks.
log = logging.getLogger("pgqueue.supervisor")


class Finishing(Dispatching):
    """Reports from the pools turned into settle actions, and their flush."""

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
        if not self.settler.unwritten or self._conn is None:
            return
        outage = self.settler.flush(self._conn)
        if outage is not None:
            self._db_down("settle", outage)
        else:
            self._db_up()
