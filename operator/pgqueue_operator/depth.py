"""Queue depth as the operator reports it: per-queue entries and the backlog.

:func:`summarise` turns the core's per-queue stats into status entries (one per queue the fleet
consumes, in spec order) and :func:`backlog` sums what the autoscaler scales on: ready plus in
flight, and :func:`paused` names the consumed queues no worker claims from
(``pgqueue queue pause``), for ``status.pausedQueues`` and its printer column. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Stats(Protocol):
    """What the sampler needs of ``pgqueue.QueueStats``."""

    # Properties on purpose (as deletioncost.Heartbeat): a frozen row fits no settable attribute.
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
    @property
    def paused(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Depth:
    queue: str
    ready: int
    in_flight: int
    delayed: int
    dead: int
    oldest_age_seconds: float
    paused: bool = False

    def as_status(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ready": self.ready,
            "inFlight": self.in_flight,
            "delayed": self.delayed,
            "dead": self.dead,
            "oldestAgeSeconds": round(self.oldest_age_seconds, 3),
            "paused": self.paused,
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
            age = float(s.oldest_age or 0.0)
            out.append(Depth(queue, s.ready, s.in_flight, s.delayed, s.dead, age, bool(s.paused)))
    return out


def paused(depths: Iterable[Depth]) -> str:
    """The paused queues among ``depths``, comma-separated in spec order; "" when none."""
    return ",".join(d.queue for d in depths if d.paused)


def backlog(depths: Iterable[Depth]) -> int:
    """Work that needs a slot now or is holding one: ready plus in flight. A paused queue's ready
    messages need no slot until it is resumed, so the autoscaler does not scale up for them."""
    return sum((0 if d.paused else d.ready) + d.in_flight for d in depths)
