"""What a reconcile, a gate sync or a depth sample decided, for the kopf handlers to apply.

A :class:`Result` is data, not effects on the object: status fields to set, condition
:class:`~pgqueue_operator.conditions.Change`\\ s, Events, whether the replicas moved, and a retry.
The handlers turn it into a status patch (:meth:`Result.status_patch`, the one place conditions
are merged into the object's current ones), Events and a ``kopf.TemporaryError``. Pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pgqueue_operator import conditions
from pgqueue_operator.conditions import Change


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to emit about the PgQueueWorker."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Rescale:
    """The autoscaler moved the desired replicas: the Deployment must follow (by a reconcile)."""

    replicas: int


@dataclass
class Result:
    """Decisions about one PgQueueWorker."""

    status: dict[str, Any] = field(default_factory=dict)
    """Status fields to set, other than ``conditions`` (those are :attr:`changes`)."""
    changes: list[Change] = field(default_factory=list)
    """Conditions to set; the ones not named keep their state."""
    events: list[Event] = field(default_factory=list)
    rescale: Rescale | None = None
    retry: str | None = None
    """Set when the work must be retried later (message for the log and the TemporaryError)."""

    def merge(self, later: Result) -> Result:
        """Both results as one: ``later``'s status fields and conditions win, events add up."""
        return Result(
            status={**self.status, **later.status},
            changes=[*self.changes, *later.changes],
            events=[*self.events, *later.events],
            rescale=later.rescale or self.rescale,
            retry=self.retry or later.retry,
        )

    def status_patch(self, body: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
        """The status fragment to write onto ``body``: the fields, and its conditions changed."""
        patch = dict(self.status)
        if self.changes:
            current = (body.get("status") or {}).get("conditions")
            generation = (body.get("metadata") or {}).get("generation")
            patch["conditions"] = conditions.apply(
                current, self.changes, generation=generation, now=now
            )
        return patch

    def applied_to(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` as it will be once this result's status fields are written."""
        return {**body, "status": {**(body.get("status") or {}), **self.status}}
