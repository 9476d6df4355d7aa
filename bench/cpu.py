"""CPU time of processes from ``/proc/<pid>/stat`` (utime + stime), in clock ticks: what the
fleet scenario charges to Postgres, summed over the postmaster and every child."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_ticks(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime in clock ticks) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    return int(fields[1]), int(fields[11]) + int(fields[12])


def postgres_ticks(postmaster: int) -> dict[int, int]:
    """CPU ticks of the postmaster and each of its children (backends, walwriter, autovacuum…)."""
    out: dict[int, int] = {}
    own = process_ticks(postmaster)
    if own is not None:
        out[postmaster] = own[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        got = process_ticks(int(entry.name))
        if got is not None and got[0] == postmaster:
            out[int(entry.name)] = got[1]
    return out


def ticks_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds used between two samples; a process started meanwhile counts from zero."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / TICK


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
