"""The log file of a process the dev tools start: appended to while it runs, read back (its tail)
for the message of a failure."""

from __future__ import annotations

from pathlib import Path
from typing import IO


def tail(path: Path, log: IO[bytes] | None, chars: int) -> str:
    """The last ``chars`` of ``path``, with what ``log`` (its open handle, if any) still buffers."""
    if log is not None:
        log.flush()
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def close(log: IO[bytes] | None) -> None:
    if log is not None:
        log.close()
