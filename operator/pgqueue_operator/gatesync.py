"""Gate sync: the gate ConfigMap's value, copied into each referencing database's flag table.

The ConfigMap is watched through the API (immediate, unlike a mounted volume). :func:`read` is pure:
ConfigMap in, :class:`Reading` out, fail-closed — a missing ConfigMap, a missing key or a value
:func:`pgqueue.parse_flag_value` cannot parse all read as *off*, with a problem that becomes a
Warning event. :func:`write` touches the database only when the row differs, so a periodic resync
is cheap and an Event is emitted per real flip, not per resync.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pgqueue
from pgqueue import admin
from pgqueue_operator.conditions import Change, timestamp
from pgqueue_operator.errors import DatabaseError
from pgqueue_operator.models import GateRef


@dataclass(frozen=True, slots=True)
class Reading:
    """What the gate ConfigMap says, already parsed fail-closed."""

    enabled: bool
    value: str
    source: str
    problem: str = ""
    """Empty when the value parsed; else a CamelCase reason (the Warning's and condition's)."""
    detail: str = ""


def source_of(namespace: str, name: str, resource_version: str) -> str:
    return f"configmap {namespace}/{name}@{resource_version}"


def read(configmap: dict[str, Any] | None, ref: GateRef, namespace: str) -> Reading:
    """Parse the gate from a ConfigMap body (None when it does not exist)."""
    if configmap is None:
        return Reading(
            enabled=False,
            value="",
            source=source_of(namespace, ref.config_map_name, "absent"),
            problem="GateConfigMapNotFound",
            detail=f"ConfigMap {namespace}/{ref.config_map_name} not found; gate treated as off",
        )
    meta = configmap.get("metadata") or {}
    source = source_of(namespace, ref.config_map_name, str(meta.get("resourceVersion", "")))
    data = configmap.get("data") or {}
    if ref.key not in data:
        return Reading(
            enabled=False,
            value="",
            source=source,
            problem="GateKeyNotFound",
            detail=f"ConfigMap {namespace}/{ref.config_map_name} has no key {ref.key!r}; "
            "gate treated as off",
        )
    value = str(data[ref.key])
    parsed = pgqueue.parse_flag_value(value)
    if parsed is None:
        return Reading(
            enabled=False,
            value=value,
            source=source,
            problem="GateValueInvalid",
            detail=f"{ref.key}={value[:64]!r} is neither on nor off; gate treated as off",
        )
    return Reading(enabled=parsed, value=value, source=source)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`write` did: the state now in the database and whether the gate flipped."""

    enabled: bool
    flipped: bool
    written: bool


def write(dsn: str, reading: Reading, *, pooled: bool) -> Outcome:
    """Bring the flag row in step with ``reading``; a no-op when it already is."""
    try:
        current = admin.get_flag(dsn, pgqueue.GATE_FLAG, pooled=pooled)
        if (
            current is not None
            and current.enabled == reading.enabled
            and current.value == (reading.value or str(reading.enabled).lower())
            and current.source == reading.source
        ):
            return Outcome(enabled=current.enabled, flipped=False, written=False)
        state = admin.set_flag(
            dsn,
            pgqueue.GATE_FLAG,
            enabled=reading.enabled,
            value=reading.value,
            source=reading.source,
            pooled=pooled,
        )
    except Exception as exc:  # psycopg's errors, without the DSN in the message
        raise DatabaseError(f"writing the gate flag failed: {type(exc).__name__}") from exc
    flipped = state.changed or (current is not None and current.enabled != state.enabled)
    return Outcome(enabled=state.enabled, flipped=flipped, written=True)


def status_of(reading: Reading, now: dt.datetime) -> dict[str, Any]:
    """``status.gate``."""
    return {
        "enabled": reading.enabled,
        "value": reading.value,
        "state": "on" if reading.enabled else "off",
        "source": reading.source,
        "syncedAt": timestamp(now),
    }


def condition_of(reading: Reading) -> Change:
    """``GateSynced``: True when a parseable value was written; False (fail-closed off) if not."""
    if reading.problem:
        return Change("GateSynced", "False", reading.problem, reading.detail)
    state = "on" if reading.enabled else "off"
    return Change("GateSynced", "True", "Synced", f"gate {state} from {reading.source}")
