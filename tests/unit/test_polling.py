"""The periodic poll of a worker is a clock that claims made on an event do not reset."""

from __future__ import annotations

import pytest

from pgqueue.settings import WorkerSettings
from pgqueue.supervisor import Worker


def test_claims_on_events_do_not_push_the_periodic_poll_out() -> None:
    worker = Worker(
        WorkerSettings(
            dsn="host=unused",
            tasks=["pgqueue.demo_tasks"],
            poll_interval=0.005,
            poll_jitter=0,
        )
    )
    assert worker.next_poll(100.000) == pytest.approx(100.005)  # periodic: start to start
    # A claim right after a settle (or a NOTIFY) finds nothing: the clock keeps its time, so a
    # request sent just after a reply waits for the next tick, not a whole interval.
    assert worker.next_poll(100.001) == pytest.approx(100.005)
    assert worker.next_poll(100.004) == pytest.approx(100.005)
    assert worker.next_poll(100.005) == pytest.approx(100.010)  # the tick itself moves it on
    assert worker.next_poll(100.050) == pytest.approx(100.055)  # after a gap: from the claim
