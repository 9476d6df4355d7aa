"""When a polling caller reads its reply row: the wait schedule, and what a client remembers of
how long its recent replies took.

Every poll is a round trip that costs the caller and Postgres CPU. The fixed schedule (a poll at
once, ``poll_flat`` polls ``poll_initial`` apart, then doubling up to ``poll_max``) spends about
``poll_flat + log2(wait / poll_initial)`` polls on a call, so its cost grows with the wait: 8
polls for a 7 ms wait, 14 for 240 ms (a caller the CPU keeps waiting polls less: its naps run
long). With ``poll_adaptive`` a client keeps, per queue and task, a moving average of when its
recent replies were stored (:class:`ReplyTimes`); the first poll then comes at ``LEAD`` of it
and the next ones ``STEP`` of it apart before the doubling, about three polls a call whatever the
wait. No gap ever exceeds ``poll_max``, the cadence that bounds how late a stored reply is seen;
a call with no record yet (the first of its task, a unique call, ``result()``) keeps the fixed
schedule. Architecture §4.
"""

from __future__ import annotations

import threading

# The first poll at this fraction of the typical wait: early enough that a reply a little faster
# than usual waits for no more than a step, late enough to skip the polls bound to find nothing.
LEAD = 0.75
# The flat phase's step, as a fraction of the typical wait: a reply is seen at most this much of
# a call's usual wait after it was stored, ~3 polls when the waits are alike.
STEP = 0.125
# Weight of a new sample in the moving average, above it and below it: the last few calls
# dominate, so the schedule follows a queue that fills or drains within a few calls without
# jumping on one odd reply. A drain is followed faster, since a first poll too late costs each
# call latency where one too early costs it a poll.
WEIGHT_UP = 0.25
WEIGHT_DOWN = 0.5
# Queues x tasks remembered per client; past it the oldest entry goes (a record is a hint).
KEYS = 256


def pause(polls: int, typical: float | None, initial: float, flat: int, cap: float) -> float:
    """Seconds to wait before the next poll of a call that has polled ``polls`` times.

    ``typical``: the wait this client's recent replies of the same queue and task took (None: no
    record, the fixed schedule). Never more than ``cap`` (``poll_max``).
    """
    if typical is None:
        if polls == 0:
            return 0.0
        step = initial
    else:
        if polls == 0:
            return min(LEAD * typical, cap)
        step = STEP * typical
    if polls <= flat:
        return min(step, cap)
    # The exponent is bounded: a call polling for an hour must not build a float overflow.
    return min(step * 2.0 ** min(polls - flat, 64), cap)


def sample(last_empty: float, found: float) -> float:
    """When a reply was stored, as seconds into the wait, from the polls that bracket it: the
    last that found nothing (0 if none did) and the one that found it (each at its start)."""
    return (last_empty + found) / 2


class ReplyTimes:
    """How long this client's recent replies took to be stored, per (queue, task): a moving
    average of :func:`sample`. Shared by the threads of one client, so behind a lock."""

    def __init__(self, floor: float) -> None:
        # No typical wait below poll_initial: a few fast replies never make polls a busy loop.
        self._floor = floor
        self._typical: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def typical(self, key: tuple[str, str]) -> float | None:
        """The typical wait of ``key`` in seconds, or None before its first reply."""
        with self._lock:
            return self._typical.get(key)

    def record(self, key: tuple[str, str], seconds: float) -> None:
        """Add one reply's wait (a :func:`sample`) to the average of ``key``."""
        seconds = max(seconds, self._floor)
        with self._lock:
            old = self._typical.pop(key, None)
            if old is None and len(self._typical) >= KEYS:
                del self._typical[next(iter(self._typical))]
            if old is None:
                self._typical[key] = seconds
            else:
                weight = WEIGHT_UP if seconds > old else WEIGHT_DOWN
                self._typical[key] = old + weight * (seconds - old)
