"""Deadlines on the operator's database calls: a stuck call never holds a handler past them."""

from __future__ import annotations

import threading
import time

import pytest

from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.errors import DatabaseError


def test_a_call_that_answers_returns_its_value_and_its_errors() -> None:
    deadlines = Deadlines(timeout=30)
    assert deadlines.run("k", "reading", lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        deadlines.run("k", "reading", lambda: 1 // 0)
    assert deadlines.run("k", "reading", lambda: "again") == "again"


def test_a_stuck_call_is_abandoned_at_the_deadline_and_not_stacked() -> None:
    deadlines = Deadlines(timeout=0.5)
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(DatabaseError, match=r"reading queue depth: no answer within 0.5 s"):
        deadlines.run("w", "reading queue depth", release.wait)
    assert time.monotonic() - t0 < 10  # bounded by the deadline, not by the stuck call

    # While the first call is still stuck, the next one for the same key fails at once...
    t1 = time.monotonic()
    with pytest.raises(DatabaseError, match="previous attempt has not returned"):
        deadlines.run("w", "reading queue depth", lambda: 1)
    assert time.monotonic() - t1 < 0.5
    # ...another key is not held up by it...
    assert deadlines.run("other", "writing the gate flag", lambda: 2) == 2
    # ...and once the stuck call returns, the key is usable again.
    release.set()
    deadline = time.monotonic() + 30
    while True:
        try:
            assert deadlines.run("w", "reading queue depth", lambda: 3) == 3
            break
        except DatabaseError:
            assert time.monotonic() < deadline, "the released call never finished"
            time.sleep(0.01)  # poll interval of a deadline loop
