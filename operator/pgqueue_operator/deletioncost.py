"""Which worker pods a scale-in should remove first: ``pod-deletion-cost`` from the heartbeats.

When a ReplicaSet shrinks, the controller removes the Ready pods with the lowest
``controller.kubernetes.io/pod-deletion-cost`` first (after pods that are unscheduled, pending or
not Ready). :func:`plan` gives each worker pod a cost from the worker registry (one row per worker
process, ``worker_id`` = the pod's name through the downward API, ``host`` = its hostname):

- idle (a fresh heartbeat, no slot busy) → ``0``: removed first;
- unknown (no row yet, or a heartbeat older than :data:`STALE_AFTER`) → ``1``: it may be running
  a task we cannot see, so it is never taken for idle;
- busy with *n* running tasks → ``1 + n``: the fewest running tasks are interrupted.

Only changed values become patches, so a steady fleet costs no API writes. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

STALE_AFTER = 15.0
"""Seconds without a heartbeat before a worker's busy count is no longer believed: three of the
worker's 5-second registry beats (the web console calls a worker stale only after 30 s)."""

IDLE = 0
UNKNOWN = 1


class Heartbeat(Protocol):
    """What the costs need of a worker registry row (``pgqueue.registry.WorkerRow``)."""

    # Properties on purpose (as depth.Stats): a frozen row fits no settable attribute.
    @property
    def worker_id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def busy(self) -> int: ...
    @property
    def heartbeat_age(self) -> float: ...


@dataclass(frozen=True, slots=True)
class CostPatch:
    """Set the deletion cost of one pod (``previous`` is what it carried: None when unset)."""

    pod: str
    cost: int
    previous: str | None

    def annotations(self) -> dict[str, str]:
        return {ANNOTATION: str(self.cost)}


def cost_of(rows: Sequence[Heartbeat], stale_after: float = STALE_AFTER) -> int:
    """The cost of one pod from its registry rows (usually one; several workers in a pod add up).

    Busy slots reported by a fresh row count even when another row of the pod is stale; a pod
    whose every row is stale, or that has none, is unknown.
    """
    fresh = [r for r in rows if r.heartbeat_age <= stale_after]
    busy = sum(max(0, r.busy) for r in fresh)
    if busy:
        return UNKNOWN + busy
    if not fresh or len(fresh) < len(rows):
        return UNKNOWN
    return IDLE


def _hostname(pod: Mapping[str, Any]) -> str:
    # What socket.gethostname() answers inside the pod: spec.hostname, else the pod's name
    # (the kubelet truncates it to 63 characters).
    spec = pod.get("spec") or {}
    return str(spec.get("hostname") or pod["metadata"]["name"])[:63]


def rows_of(pod: Mapping[str, Any], heartbeats: Iterable[Heartbeat]) -> list[Heartbeat]:
    """The registry rows a pod wrote: its name as the worker id, else its hostname as the host."""
    name = pod["metadata"]["name"]
    hostname = _hostname(pod)
    rows = list(heartbeats)
    by_id = [r for r in rows if r.worker_id == name]
    return by_id or [r for r in rows if r.host == hostname]


def plan(
    pods: Iterable[Mapping[str, Any]],
    heartbeats: Iterable[Heartbeat],
    stale_after: float = STALE_AFTER,
) -> list[CostPatch]:
    """The patches that bring each live pod's annotation to its cost, in pod-name order.

    Pods already being deleted are left alone: the ReplicaSet no longer counts them.
    """
    rows = list(heartbeats)
    patches = []
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        cost = cost_of(rows_of(pod, rows), stale_after)
        previous = (meta.get("annotations") or {}).get(ANNOTATION)
        if previous != str(cost):
            patches.append(CostPatch(str(meta["name"]), cost, previous))
    return patches
