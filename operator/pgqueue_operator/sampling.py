"""The depth sampler and the autoscaler's decision.

:func:`summarise` turns the core's per-queue stats into status entries and the backlog (ready plus
in flight, over the queues this fleet consumes); :func:`decide` is the autoscaler: desired replicas
= ceil(backlog / targetBacklogPerReplica) clamped to min..max, up at once, down only after the
backlog has wanted fewer replicas for ``scaleDownDelaySeconds`` without interruption. Both are pure;
the clock and the previous state come in as arguments and the state goes out in ``status``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pgqueue_operator.models import Autoscaling


class Stats(Protocol):
    """What the sampler needs of ``pgqueue.QueueStats``."""

    @property
    def queue(self) -> str: ...
    @property
    def ready(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def delayed(self) -> int: ...
    @property
    def dead(self) -> int: ...
    @property
    def oldest_age(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Depth:
    queue: str
    ready: int
    in_flight: int
    delayed: int
    dead: int
    oldest_age_seconds: float

    def as_status(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ready": self.ready,
            "inFlight": self.in_flight,
            "delayed": self.delayed,
            "dead": self.dead,
            "oldestAgeSeconds": round(self.oldest_age_seconds, 3),
        }


def summarise(stats: Iterable[Stats], queues: Sequence[str]) -> list[Depth]:
    """One entry per consumed queue, in spec order; a queue with no rows reads as zeros."""
    by_queue = {s.queue: s for s in stats}
    out = []
    for queue in queues:
        s = by_queue.get(queue)
        if s is None:
            out.append(Depth(queue, 0, 0, 0, 0, 0.0))
        else:
            out.append(
                Depth(queue, s.ready, s.in_flight, s.delayed, s.dead, float(s.oldest_age or 0.0))
            )
    return out


def backlog(depths: Iterable[Depth]) -> int:
    """Work that needs a slot now or is holding one: ready plus in flight."""
    return sum(d.ready + d.in_flight for d in depths)


@dataclass(frozen=True, slots=True)
class ScaleState:
    """The autoscaler's memory, kept in ``status.autoscaling``."""

    desired: int
    below_since: dt.datetime | None = None
    last_scale_time: dt.datetime | None = None

    def as_status(self) -> dict[str, Any]:
        # Millisecond precision: the scale-down delay is measured from these, and a delay of a
        # few seconds must not be cut short by truncation to whole seconds.
        return {
            "desiredReplicas": self.desired,
            "belowSince": _precise(self.below_since) if self.below_since else None,
            "lastScaleTime": _precise(self.last_scale_time) if self.last_scale_time else None,
        }

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> ScaleState | None:
        if not status or status.get("desiredReplicas") is None:
            return None
        return cls(
            desired=int(status["desiredReplicas"]),
            below_since=_parse_time(status.get("belowSince")),
            last_scale_time=_parse_time(status.get("lastScaleTime")),
        )


def _precise(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: Any) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def wanted(policy: Autoscaling, backlog_now: int) -> int:
    """ceil(backlog / target), clamped to min..max."""
    raw = math.ceil(backlog_now / policy.target_backlog_per_replica)
    return max(policy.min_replicas, min(policy.max_replicas, raw))


def decide(
    policy: Autoscaling, backlog_now: int, previous: ScaleState | None, now: dt.datetime
) -> ScaleState:
    """The next replicas: up at once, down after the delay, always within min..max."""
    want = wanted(policy, backlog_now)
    if previous is None:
        return ScaleState(want, None, now)
    current = previous.desired
    if current > policy.max_replicas or current < policy.min_replicas:
        # The bounds moved under us: obey them at once (a spec change, not a load change).
        return ScaleState(max(policy.min_replicas, min(policy.max_replicas, current)), None, now)
    if want > current:
        return ScaleState(want, None, now)
    if want == current:
        return ScaleState(current, None, previous.last_scale_time)
    since = previous.below_since or now
    if (now - since).total_seconds() >= policy.scale_down_delay_seconds:
        return ScaleState(want, None, now)
    return ScaleState(current, since, previous.last_scale_time)
