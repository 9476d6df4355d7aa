"""The autoscaler's decision, and the replicas a PgQueueWorker runs.

:func:`decide`: desired replicas = ceil(backlog / targetBacklogPerReplica) clamped to min..max, up
at once, down only after the backlog has wanted fewer replicas for ``scaleDownDelaySeconds``
without interruption. :func:`effective_replicas` is what the Deployment gets. Pure: the clock and
the previous state come in as arguments and the state goes out in ``status.autoscaling``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgqueue_operator.models import Autoscaling, PgQueueWorkerSpec


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


def effective_replicas(spec: PgQueueWorkerSpec, status: Mapping[str, Any]) -> int:
    """0 when paused; the autoscaler's choice when autoscaling; else ``spec.replicas``."""
    if spec.paused:
        return 0
    if spec.autoscaling is not None:
        state = ScaleState.from_status(status.get("autoscaling"))
        if state is None:
            return spec.autoscaling.min_replicas
        low, high = spec.autoscaling.min_replicas, spec.autoscaling.max_replicas
        return max(low, min(high, state.desired))
    return spec.replicas
