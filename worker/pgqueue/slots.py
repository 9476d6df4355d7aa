"""Child-process slots: where tasks run, so a runaway task can be killed at its hard limit.

Each slot is one long-lived process (spawned, not forked, so it never inherits the supervisor's
threads or connections) that imports the task modules once and then runs one task at a time
from its pipe. The supervisor owns every database write; a slot only computes.
"""

from __future__ import annotations

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


def _slot_main(conn: multiprocessing.connection.Connection, modules: list[str]) -> None:
    # The supervisor decides when a slot stops; a Ctrl-C to the process group must not kill
    # tasks under it (SIGTERM drains gracefully, the supervisor kills what remains).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import_task_modules(modules)
    conn.send("ready")  # imports done: from now on a run's clock measures the task alone
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        task_name, args, kwargs, want_reply = job
        started = time.perf_counter()
        try:
            value = lookup(task_name).func(*args, **kwargs)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            run = outcomes.RunResult(False, None, error, time.perf_counter() - started)
            if not isinstance(exc, Exception):
                traceback.print_exc()
        else:
            text, why = outcomes.encode_result(value) if want_reply else (None, "")
            ok = text is not None or not want_reply
            run = outcomes.RunResult(ok, text, why, time.perf_counter() - started)
        conn.send(run)


@dataclass
class Running:
    """A task running in a slot, with the claim that fences its writes."""

    msg: outcomes.Claimed
    started: float  # monotonic
    kill_at: float  # monotonic


class Slot:
    """One child process and the task it runs, if any."""

    def __init__(self, index: int, modules: list[str]) -> None:
        self.index = index
        self._modules = modules
        self.running: Running | None = None
        self.ready = False
        self._start()

    def _start(self) -> None:
        self.ready = False
        parent, child = _CTX.Pipe()
        self.conn = parent
        self.process: BaseProcess = _CTX.Process(
            target=_slot_main, args=(child, self._modules), name=f"pgqueue-slot-{self.index}"
        )
        self.process.daemon = True
        self.process.start()
        child.close()

    @property
    def busy(self) -> bool:
        return self.running is not None

    @property
    def free(self) -> bool:
        return self.ready and self.running is None

    def mark_ready(self) -> bool:
        """Consume the child's start-up message; False if the child died while starting."""
        try:
            self.ready = self.conn.recv() == "ready"
        except (EOFError, OSError):
            self.restart()
            return False
        return self.ready

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def run(self, msg: outcomes.Claimed, work: outcomes.Work, time_limit: float) -> bool:
        """Hand a task to the child; False (and a fresh child) if the idle child had died."""
        now = time.monotonic()
        try:
            self.conn.send((msg.task_name, work.args, work.kwargs, msg.reply_key is not None))
        except (OSError, ValueError):
            self.restart()
            return False
        self.running = Running(msg, now, now + time_limit)
        return True

    def collect(self) -> tuple[Running, outcomes.RunResult]:
        """The finished run (call when the pipe is readable or the process died)."""
        assert self.running is not None
        running, self.running = self.running, None
        try:
            result: Any = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1)
            code = self.process.exitcode
            self.restart()
            return running, outcomes.RunResult(
                False,
                None,
                f"WorkerLost: the task's child process died (exit code {code})",
                time.monotonic() - running.started,
            )
        return running, result

    def kill(self, reason: str) -> tuple[Running, outcomes.RunResult]:
        """Kill the child (time limit, shutdown) and start a fresh one."""
        assert self.running is not None
        running, self.running = self.running, None
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(timeout=5)
        self.restart()
        return running, outcomes.RunResult(False, None, reason, time.monotonic() - running.started)

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
