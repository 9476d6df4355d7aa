"""A watchdog for an asyncio event loop: how long did the loop keep a ready timer waiting?

A task sleeps 5 ms again and again; each time it wakes late, the lateness is split in two by
the kernel's scheduler statistics of the loop's thread (``/proc/thread-self/schedstat``, the
time the thread was runnable but waiting for a CPU): the part spent waiting for a CPU is the
machine's load (a 2-core box shared by many builds), and the rest is the loop being blocked —
a callback running too long, a blocking system call, a garbage collection, or the GIL held by
another thread. Tests assert on the blocked part and report both.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

TICK = 0.005
_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _run_delay() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU."""
    fields = _SCHEDSTAT.read_text().split()
    return int(fields[1]) / 1e9


class LoopWatch:
    """Use as ``with LoopWatch() as watch:`` inside a coroutine; read ``blocked``/``late``."""

    def __init__(self) -> None:
        self.blocked = 0.0  # worst lateness not explained by waiting for a CPU, seconds
        self.late = 0.0  # worst lateness in wall time, seconds
        self.ticks = 0
        self.worst_tick = -1  # the tick blocked worst (0: the one the watch began in)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before, delay_before = time.perf_counter(), _run_delay()
            await asyncio.sleep(TICK)
            late = time.perf_counter() - before - TICK
            starved = _run_delay() - delay_before
            self.late = max(self.late, late)
            if late - starved > self.blocked:
                self.blocked = late - starved
                self.worst_tick = self.ticks
            self.ticks += 1

    def __enter__(self) -> LoopWatch:
        if not _SCHEDSTAT.exists():
            raise RuntimeError("the loop watchdog needs /proc/thread-self/schedstat (Linux)")
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> str:
        return (
            f"event loop: worst blocked {self.blocked * 1000:.1f} ms, worst wall lateness "
            f"{self.late * 1000:.1f} ms (with CPU waits), {self.ticks} ticks "
            f"(worst at tick {self.worst_tick})"
        )
