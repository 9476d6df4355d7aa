"""Per-message limits: what a message's headers ask for, read against the worker's ceiling.

A producer puts per-task options in the payload's ``headers`` (:mod:`pgqueue.producing`):
``time_limit`` (seconds > 0), ``max_attempts`` (an integer ≥ 1), ``retry_backoff`` (seconds
> 0), ``cancel_on_timeout`` (a boolean); a missing key means the worker's setting. The worker's
own limits stay the ceiling: a message may ask for less time or fewer attempts than the worker
allows, never more. The retry
backoff is the message's own base, and the worker's ``retry_backoff_max`` still caps each delay.

A header a producer got wrong (another client, a hand-written row, an old version) must not cost
the message: the bad option is ignored, the worker's setting applies, and the caller of
:func:`requested` gets the problem to log once with the msg_id. The message still runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requested:
    """The options a message asks for (``None``: the worker's setting), each already valid."""

    time_limit: float | None = None
    max_attempts: int | None = None
    retry_backoff: float | None = None
    # Stop the run when its caller's deadline passes (pgqueue.cancelling), not run to completion.
    cancel_on_timeout: bool = False


DEFAULT = Requested()

_SHOWN = 80


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _seconds_of(headers: dict[str, object], name: str, problems: list[str]) -> float | None:
    """A header of seconds; its problem said when it is not one."""
    seconds = _seconds(headers[name])
    if seconds is None:
        problems.append(
            f"{name}: must be a finite number of seconds > 0, got {_shown(headers[name])}"
        )
    return seconds


def requested(payload: object) -> tuple[Requested, list[str]]:
    """The options a payload's headers ask for, and a problem for each one ignored.

    A payload that is not an object is the drop branches' business (it is dead-lettered as
    malformed), so it asks for nothing here and reports no problem.
    """
    if not isinstance(payload, dict):
        return DEFAULT, []
    headers = payload.get("headers")
    if not headers:
        return DEFAULT, []  # the common case: no per-task options
    if not isinstance(headers, dict):
        return DEFAULT, [f"headers: must be an object, got {_shown(headers)}"]
    problems: list[str] = []
    time_limit = retry_backoff = None
    max_attempts = None
    if "time_limit" in headers:
        time_limit = _seconds_of(headers, "time_limit", problems)
    if "max_attempts" in headers:
        value = headers["max_attempts"]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            max_attempts = value
        else:
            problems.append(f"max_attempts: must be an integer ≥ 1, got {_shown(value)}")
    if "retry_backoff" in headers:
        retry_backoff = _seconds_of(headers, "retry_backoff", problems)
    cancel = False
    if "cancel_on_timeout" in headers:
        value = headers["cancel_on_timeout"]
        if isinstance(value, bool):
            cancel = value
        else:
            problems.append(f"cancel_on_timeout: must be true or false, got {_shown(value)}")
    if time_limit is None and max_attempts is None and retry_backoff is None and not cancel:
        return DEFAULT, problems
    return Requested(time_limit, max_attempts, retry_backoff, cancel), problems


def time_limit(asked: Requested, ceiling: float) -> float:
    """A run's hard limit, seconds: the message's, at most the worker's."""
    return ceiling if asked.time_limit is None else min(asked.time_limit, ceiling)


def max_attempts(asked: Requested, ceiling: int) -> int:
    """The attempts a message gets: the message's, at most the worker's."""
    return ceiling if asked.max_attempts is None else min(asked.max_attempts, ceiling)


def retry_backoff(asked: Requested, default: float) -> float:
    """The first retry delay, seconds: the message's, else the worker's (``retry_backoff_max``
    caps every delay either way, see :func:`pgqueue.outcomes.backoff`)."""
    return default if asked.retry_backoff is None else asked.retry_backoff
