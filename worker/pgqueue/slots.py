"""Child-process slots: where tasks run, so a runaway task can be killed at its hard limit.

Each slot is one long-lived process (spawned, not forked, so it never inherits the supervisor's
threads or connections) that imports the task modules once and then runs the jobs it is handed,
one at a time, in order. The supervisor owns every database write; a slot only computes.

A slot may be handed several short jobs at once (its *queue*): it runs them back to back and
sends each result as it finishes, so a no-op does not cost the supervisor two process wake-ups.
Because the supervisor no longer sees each start, the child stamps the job it starts (its
sequence number, msg_id and start time) into shared memory under a per-slot lock. The
supervisor reads the stamp for the time limit; under the same lock it can *withdraw* the jobs
not started yet (the child then skips them), to release them at SIGTERM or hand them to another
slot when the running task turns out long; after a crash or kill the stamp tells the jobs that
started from those that never did.

Bounds: each child leads its own session (process group), so the time limit kills the task's
whole group, grandchildren it spawned included; it dies with the supervisor (a parent-death
signal), so a killed worker leaves no slot running. A child whose task modules fail to import
reports the error and exits; the slot is respawned after a backoff that doubles up to
``RESPAWN_MAX_S``, with one log line per attempt naming the import error.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from pgqueue import outcomes
from pgqueue.jobs import Job, Report, job_for, run_one, too_late
from pgqueue.tasks import import_task_modules

log = logging.getLogger(__name__)

_CTX = multiprocessing.get_context("spawn")

# A slot's shared state: int64 cells written by the child under the lock (start stamps) or by
# the supervisor under it (the withdrawn range).
_MSG, _STARTED_NS, _LAST_SEQ, _SKIP_FROM, _SKIP_TO = range(5)

# A slot whose child cannot import the task modules is respawned after a backoff: the first
# wait, doubled per failure up to the cap.
RESPAWN_FIRST_S = 0.5
RESPAWN_MAX_S = 30.0
_PR_SET_PDEATHSIG = 1


# Reports of short fire-and-forget jobs are sent together, so a batch of no-ops costs the
# supervisor one wake-up, not one per job: held at most this long, and never across a job that
# may be long or wants a reply. A crash loses held reports; those jobs count as begun and their
# messages go back (fire-and-forget is at-least-once), so the window is kept small.
_HOLD_REPORTS_S = 0.002
_HOLD_REPORTS_MAX = 64
_SHORT_JOB_S = 0.001


def _own_group_and_die_with_parent(parent: int) -> None:
    """Lead a new session (so the time limit's killpg reaches what the task spawns) and die
    with the supervisor (which no longer shares our process group to take us down with it)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)  # the supervisor died before the signal was armed


def _slot_main(
    conn: multiprocessing.connection.Connection,
    modules: list[str],
    state: Any,
    lock: Any,
    parent: int,
) -> None:
    # The supervisor decides when a slot stops; a Ctrl-C to the process group must not kill
    # tasks under it (SIGTERM drains gracefully, the supervisor kills what remains).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _own_group_and_die_with_parent(parent)
    try:
        import_task_modules(modules)
    except BaseException as exc:  # reported to the supervisor, which backs off
        conn.send(("import_failed", outcomes.storable(outcomes.error_text(exc), 2000)))
        return
    conn.send("ready")  # imports done: from now on a run's clock measures the task alone
    queue: collections.deque[Job] = collections.deque()
    held: list[tuple[int, Report]] = []
    held_since = 0.0
    while True:
        try:
            while not queue or conn.poll(0):
                if held and not queue:
                    conn.send(held)  # about to block: nothing is held while idle
                    held = []
                jobs = conn.recv()
                if jobs is None:
                    return
                queue.extend(jobs)
        except EOFError:
            return
        job = queue.popleft()
        wall = time.monotonic()
        if held and (
            job.want_reply
            or job.expected >= _SHORT_JOB_S
            or wall - held_since >= _HOLD_REPORTS_S
            or len(held) >= _HOLD_REPORTS_MAX
        ):
            conn.send(held)
            held = []
        with lock:
            withdrawn = state[_SKIP_FROM] <= job.seq <= state[_SKIP_TO]
            if not withdrawn:
                state[_LAST_SEQ] = job.seq
                state[_STARTED_NS] = int(wall * 1e9)
                state[_MSG] = job.msg_id
        if withdrawn:
            continue  # the supervisor took it back before it started
        report: Report = too_late(job, wall) or run_one(job, wall)
        state[_MSG] = 0
        if job.want_reply:
            conn.send([(job.msg_id, report)])  # a caller waits: never held
            continue
        if not held:
            held_since = time.monotonic()
        held.append((job.msg_id, report))


@dataclass(frozen=True, slots=True)
class Handed:
    """A job in a slot's hands: its claim, its place in the slot's order, its expected cost."""

    msg: outcomes.Claimed
    seq: int
    expected: float


@dataclass(frozen=True, slots=True)
class Lost:
    """What a dead (crashed or killed) child leaves behind."""

    reports: list[tuple[outcomes.Claimed, Report]]  # sent before it died
    # Jobs it started without reporting back: the one it was running (with its start), or one
    # whose report died with it.
    started: list[tuple[outcomes.Claimed, float]]
    unstarted: list[outcomes.Claimed]  # handed to it, never started: release them
    exitcode: int | None


class Slot:
    """One child process and the jobs handed to it that have not reported back."""

    def __init__(self, index: int, modules: list[str], time_limit: float) -> None:
        self.index = index
        self._modules = modules
        self.time_limit = time_limit  # the worker's: a message's own limit applies below it
        self.outstanding: dict[int, Handed] = {}  # msg_id → job, in the order handed
        self.expected = 0.0  # seconds of expected work among the outstanding jobs
        self.ready = False
        self._seq = 0
        self.respawn_at: float | None = None  # set while backing off after an import failure
        self._respawn_wait = RESPAWN_FIRST_S
        self._start()

    def _start(self) -> None:
        self.ready = False
        self.outstanding = {}
        self.expected = 0.0
        self._seq = 0
        parent, child = _CTX.Pipe()
        self.conn = parent
        self._state: Any = _CTX.RawArray("q", 5)
        self._state[_SKIP_FROM] = 1
        self._state[_SKIP_TO] = 0  # an empty range: nothing withdrawn
        self._lock: Any = _CTX.Lock()
        self.process: BaseProcess = _CTX.Process(
            target=_slot_main,
            args=(child, self._modules, self._state, self._lock, os.getpid()),
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

    def held(self) -> list[outcomes.Claimed]:
        return [h.msg for h in self.outstanding.values()]

    def mark_ready(self) -> bool:
        """Consume the child's start-up message; False if the child died while starting (it is
        then respawned after a backoff, see respawn_due)."""
        try:
            hello = self.conn.recv()
        except (EOFError, OSError):
            hello = ("import_failed", f"the child exited with code {self.process.exitcode}")
        if hello == "ready":
            self.ready = True
            self._respawn_wait = RESPAWN_FIRST_S
            return True
        why = hello[1] if isinstance(hello, tuple) else repr(hello)
        self.process.join(timeout=5)
        log.error(
            "slot %d could not import the task modules (%s); respawning in %.1fs",
            self.index,
            why,
            self._respawn_wait,
        )
        self.respawn_at = time.monotonic() + self._respawn_wait
        self._respawn_wait = min(self._respawn_wait * 2, RESPAWN_MAX_S)
        return False

    def respawn_due(self, now: float) -> bool:
        return self.respawn_at is not None and now >= self.respawn_at

    def respawn(self) -> None:
        """Start a fresh child after an import failure's backoff."""
        self.respawn_at = None
        self.restart()

    def running(self) -> tuple[outcomes.Claimed, float] | None:
        """The job the child is running now and its monotonic start, if any."""
        msg_id = int(self._state[_MSG])
        started = self._state[_STARTED_NS] / 1e9
        handed = self.outstanding.get(msg_id) if msg_id else None
        return (handed.msg, started) if handed is not None else None

    def queued(self) -> int:
        """Jobs handed and not started yet (as far as the stamp tells)."""
        last = self._state[_LAST_SEQ]
        return sum(1 for h in self.outstanding.values() if h.seq > last)

    def hand(self, items: list[tuple[outcomes.Claimed, outcomes.Work, float]]) -> bool:
        """Queue jobs (claim, work, expected seconds) in the child; False if it had died."""
        jobs = []
        for msg, work, expected in items:
            self._seq += 1
            jobs.append(job_for(self._seq, msg, work, expected, self.time_limit))
        try:
            self.conn.send(jobs)
        except (OSError, ValueError):
            if not self.outstanding:
                self.restart()
            # else the child died with jobs in hand: its sentinel tells the supervisor, which
            # accounts for them (Slot.dead) before starting a fresh child.
            return False
        for job, (msg, _, expected) in zip(jobs, items, strict=True):
            self.outstanding[msg.msg_id] = Handed(msg, job.seq, expected)
            self.expected += expected
        return True

    def withdraw(self) -> list[outcomes.Claimed]:
        """Take back every job the child has not started; it will skip them. [] if unsure."""
        if not self._lock.acquire(timeout=1.0):
            return []  # a child that died holding the lock: its death will account for them
        try:
            last = self._state[_LAST_SEQ]
            taken = [h for h in self.outstanding.values() if h.seq > last]
            if taken:
                self._state[_SKIP_FROM] = last + 1
                self._state[_SKIP_TO] = self._seq
        finally:
            self._lock.release()
        for h in taken:
            self._forget(h.msg.msg_id)
        return [h.msg for h in taken]

    def _forget(self, msg_id: int) -> Handed | None:
        handed = self.outstanding.pop(msg_id, None)
        if handed is not None:
            self.expected = max(0.0, self.expected - handed.expected) if self.outstanding else 0.0
        return handed

    def reports(self) -> list[tuple[outcomes.Claimed, Report]]:
        """Every report the child has sent so far (call when the pipe is readable)."""
        got: list[tuple[outcomes.Claimed, Report]] = []
        with contextlib.suppress(EOFError, OSError):
            while self.conn.poll(0):
                for msg_id, report in self.conn.recv():
                    handed = self._forget(msg_id)
                    if handed is not None:
                        got.append((handed.msg, report))
        return got

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> Lost:
        """Kill the child and its whole process group (what the task spawned dies too), account
        for its jobs, start a fresh one."""
        self._kill_group()
        self.process.join(timeout=5)
        return self.dead()

    def _kill_group(self) -> None:
        pid = self.process.pid
        if pid is None:
            return
        # The child leads its own group (setsid at start); a child killed before it got there
        # is still in ours, and only the child itself must die then.
        try:
            same = os.getpgid(pid) == os.getpgrp()
        except ProcessLookupError:
            same = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if same:
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(pid, signal.SIGKILL)

    def dead(self) -> Lost:
        """The child is gone: what it reported before dying, what it began, what it never did."""
        self.process.join(timeout=1)
        reports = self.reports()
        last = self._state[_LAST_SEQ]
        running = self.running()
        now = time.monotonic()
        started: list[tuple[outcomes.Claimed, float]] = []
        unstarted: list[outcomes.Claimed] = []
        for h in self.outstanding.values():
            if h.seq > last:
                unstarted.append(h.msg)
            elif running is not None and running[0].msg_id == h.msg.msg_id:
                started.append(running)
            else:
                started.append((h.msg, now))
        code = self.process.exitcode
        self.restart()
        return Lost(reports, started, unstarted, code)

    def restart(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self._kill_group()
            self.process.join(timeout=5)
        self._start()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self._kill_group()
            self.process.join(timeout=2)
        self.conn.close()
