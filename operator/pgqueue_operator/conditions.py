"""Status conditions as the Kubernetes API conventions define them.

A condition is ``{type, status, reason, message, lastTransitionTime, observedGeneration}``;
``lastTransitionTime`` moves only when ``status`` flips, so "since when" stays truthful while the
reason or message is refreshed on every reconcile. The functions are pure: conditions in, new list
out, the clock passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

# The condition types, named here and nowhere else: a ``Change`` of any other type is a type error.
ConditionType = Literal["Ready", "Progressing", "Degraded", "GateSynced", "Paused"]
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
GATE_SYNCED: Final = "GateSynced"
PAUSED: Final = "Paused"
ORDER: tuple[ConditionType, ...] = (READY, PROGRESSING, DEGRADED, GATE_SYNCED, PAUSED)

Status = Literal["True", "False", "Unknown"]


# A plain frozen record, like gatesync.Reading in shape only: no logic to share.
@dataclass(frozen=True, slots=True)
class Change:
    """One condition to set: its type, status, reason and message."""

    type: ConditionType
    status: Status
    reason: str
    message: str = ""


def timestamp(now: dt.datetime) -> str:
    """RFC 3339 in UTC, second precision (what the API server stores)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_bool(flag: bool) -> Status:
    return "True" if flag else "False"


def apply(
    current: Sequence[dict[str, Any]] | None,
    changes: Iterable[Change],
    *,
    generation: int | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """``current`` with ``changes`` applied; conditions not named keep theirs untouched."""
    by_type = {c["type"]: dict(c) for c in current or () if "type" in c}
    for change in changes:
        old = by_type.get(change.type)
        flipped = old is None or old.get("status") != change.status
        new: dict[str, Any] = {
            "type": change.type,
            "status": change.status,
            "reason": change.reason,
            "message": change.message,
            "lastTransitionTime": timestamp(now)
            if flipped or old is None or "lastTransitionTime" not in old
            else old["lastTransitionTime"],
        }
        if generation is not None:
            new["observedGeneration"] = generation
        by_type[change.type] = new
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(by_type.values(), key=lambda c: (rank.get(c["type"], len(ORDER)), c["type"]))


def find(conditions: Sequence[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Sequence[dict[str, Any]] | None, type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == "True"
