"""The inline pool: tasks run in the worker process itself, one at a time (``--pool inline``).

No process hop: the supervisor runs the task between two turns of its loop, so a short call
saves the pipe to a child and back, and the child's process. The price is what a child gives:
a task shares the worker's memory and signal handlers, and its time limit is a timer
(``SIGALRM``) that raises :class:`TimeLimitExceeded` in the task, which stops Python code but
not code stuck in a C call. While a task runs the supervisor neither renews leases nor stamps
its heartbeat, so the limit is at most lease/3 (a renewal is never late enough for a lease to
lapse and a message to run twice) and half the heartbeat staleness (a task interrupted in time
never makes /healthz fail). A worker stuck for good, in code the timer cannot stop, does stop
beating: /healthz fails, the pod is restarted, and the leases bring the messages back.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

from pgqueue import context, outcomes
from pgqueue.jobs import Job, Report, run_one, too_late


class TimeLimitExceeded(BaseException):
    """Raised into an inline task at its limit; a BaseException, so ``except Exception`` in the
    task does not swallow it."""


class InlineRunner:
    """Runs jobs in this process under a timer; must be used from the main thread."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._armed = False
        self._running_limit = limit
        signal.signal(signal.SIGALRM, self._alarm)

    def _alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False  # once: a late alarm never lands outside the run
            raise TimeLimitExceeded(f"interrupted after {self._running_limit:g}s")

    def run(self, job: Job) -> Report:
        """The job's report, as a slot child would send it; its timer is the job's own limit
        (``job.time_limit``, see :func:`pgqueue.jobs.job_for`), at most the runner's."""
        wall = time.monotonic()
        late = too_late(job, wall)
        if late is not None:
            return late
        limit = min(self.limit, job.time_limit or self.limit)
        try:
            try:
                self._armed = True
                self._running_limit = limit
                signal.setitimer(signal.ITIMER_REAL, limit)
                # run_one catches what the task raises, the timer's exception included.
                return run_one(job, wall)
            finally:
                self._armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except TimeLimitExceeded as exc:
            # The alarm came after the task returned, while its result was being encoded (or
            # its context cleared: clear it, whatever the alarm interrupted).
            context.leave()
            return outcomes.RunResult(
                False, None, f"TimeLimitExceeded: {exc}", time.monotonic() - wall, wall
            )
