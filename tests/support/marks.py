"""Reading the side-effect log of tests.support.fault_tasks, and the fault tier's definitions.

Definitions used by every row of the fault matrix (docs/reliability.md):

- **lost**: a message that ends with no outcome: a call whose caller got no reply by its
  deadline, or a message that is neither acked, nor left in the queue to run, nor in the
  dead-letter table with a reason.
- **doubled**: a message settled twice (a second reply or ack landing after the first), or run
  twice when no lease expired (its worker kept renewing). A run repeated because its lease
  expired (a worker frozen or partitioned past its lease) is the lease contract (at-least-once
  runs, one settle) and is reported in its own column.
"""

from __future__ import annotations

import collections
from pathlib import Path


def starts(path: Path) -> collections.Counter[str]:
    """Runs started per key."""
    if not path.exists():
        return collections.Counter()
    lines = path.read_text().splitlines()
    return collections.Counter(line.split()[1] for line in lines if line.startswith("start "))


def ends(path: Path) -> collections.Counter[str]:
    if not path.exists():
        return collections.Counter()
    lines = path.read_text().splitlines()
    return collections.Counter(line.split()[1] for line in lines if line.startswith("end "))


def children(path: Path) -> list[int]:
    """PIDs of the grandchildren f.spawn_and_hang started."""
    if not path.exists():
        return []
    return [
        int(line.split()[0].split(":")[1])
        for line in path.read_text().splitlines()
        if line.startswith("child:")
    ]
