"""Child-process slots: where tasks run, so a runaway task can be killed at its hard limit.

Each slot is one long-lived process (spawned, not forked, so it never inherits the supervisor's
threads or connections) that imports the task modules once and then runs the jobs it is handed,
one at a time, in order. The supervisor owns every database write; a slot only computes.

A slot may be handed several short jobs at once (its *queue*): it runs them back to back and
sends each result as it finishes, so a no-op does not cost the supervisor two process wake-ups.
Because the supervisor no longer sees each start, the child stamps the job it is running and
when it started into shared memory (``_State``); the supervisor reads it for the time limit and,
after a crash or kill, to tell the job that was running from those that never started.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from pgqueue import outcomes
from pgqueue.tasks import import_task_modules, lookup

_CTX = multiprocessing.get_context("spawn")

# Indexes into a slot's shared state (int64 each).
_MSG, _STARTED_NS, _CANCEL = 0, 1, 2

NOT_STARTED_DEADLINE = "deadline"  # the caller had given up before the job's turn came
NOT_STARTED_CANCELLED = "cancelled"  # shutdown: handed back unstarted


@dataclass(frozen=True, slots=True)
class Job:
    """What the child needs to run one message."""

    msg_id: int
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    want_reply: bool
    deadline: float | None  # monotonic; the job is not started after it


# Child → supervisor: (msg_id, RunResult) for a run, (msg_id, reason) for a job not started.
Report = tuple[int, "outcomes.RunResult | str"]


def _run_one(job: Job) -> outcomes.RunResult:
    started = time.perf_counter()
    wall = time.monotonic()
    try:
        value = lookup(job.task_name).func(*job.args, **job.kwargs)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, Exception):
            traceback.print_exc()
        return outcomes.RunResult(False, None, error, time.perf_counter() - started, wall)
    text, why = outcomes.encode_result(value) if job.want_reply else (None, "")
    ok = text is not None or not job.want_reply
    return outcomes.RunResult(ok, text, why, time.perf_counter() - started, wall)


def _slot_main(conn: multiprocessing.connection.Connection, modules: list[str], state: Any) -> None:
    # The supervisor decides when a slot stops; a Ctrl-C to the process group must not kill
    # tasks under it (SIGTERM drains gracefully, the supervisor kills what remains).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import_task_modules(modules)
    conn.send("ready")  # imports done: from now on a run's clock measures the task alone
    queue: collections.deque[Job] = collections.deque()
    while True:
        try:
            while not queue or conn.poll(0):
                jobs = conn.recv()
                if jobs is None:
                    return
                queue.extend(jobs)
        except EOFError:
            return
        job = queue.popleft()
        if state[_CANCEL]:
            conn.send((job.msg_id, NOT_STARTED_CANCELLED))
            continue
        if job.deadline is not None and time.monotonic() >= job.deadline:
            conn.send((job.msg_id, NOT_STARTED_DEADLINE))
            continue
        # Stamp before running (started first: a reader that sees the id sees its start).
        state[_STARTED_NS] = time.monotonic_ns()
        state[_MSG] = job.msg_id
        run = _run_one(job)
        state[_MSG] = 0
        conn.send((job.msg_id, run))


@dataclass(frozen=True, slots=True)
class Lost:
    """What a dead (crashed or killed) child leaves behind."""

    reports: list[tuple[outcomes.Claimed, outcomes.RunResult | str]]  # sent before it died
    running: outcomes.Claimed | None  # the job it was running, if any
    started: float  # monotonic start of ``running``
    unstarted: list[outcomes.Claimed]  # handed to it, never started: release them
    exitcode: int | None


class Slot:
    """One child process and the jobs handed to it that have not reported back."""

    def __init__(self, index: int, modules: list[str]) -> None:
        self.index = index
        self._modules = modules
        # msg_id → claim, in the order handed over (the child runs them in that order).
        self.outstanding: dict[int, outcomes.Claimed] = {}
        self.expected = 0.0  # seconds of expected work among the outstanding jobs
        self.ready = False
        self._start()

    def _start(self) -> None:
        self.ready = False
        self.outstanding = {}
        self.expected = 0.0
        parent, child = _CTX.Pipe()
        self.conn = parent
        self._state: Any = _CTX.RawArray("q", 3)
        self.process: BaseProcess = _CTX.Process(
            target=_slot_main,
            args=(child, self._modules, self._state),
            name=f"pgqueue-slot-{self.index}",
        )
        self.process.daemon = True
        self.process.start()
        child.close()

    @property
    def busy(self) -> bool:
        return bool(self.outstanding)

    @property
    def free(self) -> bool:
        return self.ready and not self.outstanding

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def mark_ready(self) -> bool:
        """Consume the child's start-up message; False if the child died while starting."""
        try:
            self.ready = self.conn.recv() == "ready"
        except (EOFError, OSError):
            self.restart()
            return False
        return self.ready

    def running(self) -> tuple[int, float] | None:
        """(msg_id, monotonic start) of the job the child is running now, if any."""
        msg_id = int(self._state[_MSG])
        started = self._state[_STARTED_NS] / 1e9
        if msg_id == 0 or msg_id not in self.outstanding:
            return None
        return msg_id, started

    def hand(self, items: list[tuple[outcomes.Claimed, outcomes.Work, float]]) -> bool:
        """Queue jobs (claim, work, expected seconds) in the child; False if it had died."""
        jobs = [
            Job(
                msg.msg_id,
                msg.task_name,
                work.args,
                work.kwargs,
                msg.reply_key is not None,
                msg.claimed_at + msg.deadline_in
                if msg.reply_key is not None and msg.deadline_in is not None
                else None,
            )
            for msg, work, _ in items
        ]
        try:
            self.conn.send(jobs)
        except (OSError, ValueError):
            self.restart()
            return False
        for msg, _, expected in items:
            self.outstanding[msg.msg_id] = msg
            self.expected += expected
        return True

    def cancel_queued(self) -> None:
        """Shutdown: the child hands back every job it has not started yet."""
        self._state[_CANCEL] = 1

    def reports(self) -> list[tuple[outcomes.Claimed, outcomes.RunResult | str]]:
        """Every report the child has sent so far (call when the pipe is readable)."""
        got: list[tuple[outcomes.Claimed, outcomes.RunResult | str]] = []
        with contextlib.suppress(EOFError, OSError):
            while self.conn.poll(0):
                msg_id, report = self.conn.recv()
                msg = self.outstanding.pop(msg_id, None)
                if msg is not None:
                    got.append((msg, report))
        if not self.outstanding:
            self.expected = 0.0
        return got

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> Lost:
        """Kill the child (time limit, shutdown), account for its jobs, start a fresh one."""
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(timeout=5)
        return self.dead()

    def dead(self) -> Lost:
        """The child is gone: what it reported before dying, what it ran, what it never began."""
        reports = self.reports()
        now_running = self.running()
        running = started = None
        if now_running is not None:
            running = self.outstanding.pop(now_running[0])
            started = now_running[1]
        unstarted = list(self.outstanding.values())
        self.process.join(timeout=1)
        code = self.process.exitcode
        self.restart()
        return Lost(reports, running, started or 0.0, unstarted, code)

    def restart(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self._start()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)
        self.conn.close()
