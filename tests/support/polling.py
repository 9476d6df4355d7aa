"""Waiting on the Kubernetes API, which offers no event for most of what a test awaits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(
    what: str,
    check: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.05,
    *,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy and return that, or fail at the deadline
    naming ``what`` and, with ``explain``, what was there instead (a timeout that only says
    "timed out" leaves the next reader to guess). ``interval`` is the poll of a deadline loop,
    not a stand-in for an event."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; instead: {explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{seen}")
        time.sleep(interval)
