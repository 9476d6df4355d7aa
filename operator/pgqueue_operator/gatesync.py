"""Gate sync: the gate ConfigMap's value, copied into each referencing database's flag table.

The ConfigMap is watched through the API (immediate, unlike a mounted volume). :func:`read` is pure:
ConfigMap in, :class:`Reading` out, fail-closed — a missing ConfigMap, a missing key or a value
:func:`pgqueue.parse_flag_value` cannot parse all read as *off*, with a problem that becomes a
Warning event. :func:`write` touches the database only when the row differs, so a periodic resync
is cheap and an Event is emitted per real flip, not per resync. :class:`GateSync` does one sync of
one PgQueueWorker over the reads of :class:`~pgqueue_operator.verbs.KubeVerbs` and returns its
decisions (``status.gate``, the ``GateSynced`` condition, Events); its database call runs under
:class:`~pgqueue_operator.bounding.Deadlines`, so a hung Postgres delays it by the deadline at most.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pgqueue
from pgqueue import admin
from pgqueue_operator import conditions, metrics
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.conditions import Change, timestamp
from pgqueue_operator.decisions import Event, Result
from pgqueue_operator.errors import DatabaseError, InvalidSpecError, SecretError
from pgqueue_operator.models import GateRef, PgQueueWorkerSpec
from pgqueue_operator.objects import database_secret, owner_of, spec_of
from pgqueue_operator.verbs import KubeVerbs

log = logging.getLogger(__name__)


# A plain frozen record, like conditions.Change, handlers.Parts in shape only: no logic to share.
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
        return Change(conditions.GATE_SYNCED, "False", reading.problem, reading.detail)
    state = "on" if reading.enabled else "off"
    return Change(conditions.GATE_SYNCED, "True", "Synced", f"gate {state} from {reading.source}")


@dataclass(frozen=True, slots=True)
class GateSync:
    """Copies the gate of a PgQueueWorker into its database."""

    kube: KubeVerbs
    deadlines: Deadlines

    def sync(
        self,
        body: Mapping[str, Any],
        spec: PgQueueWorkerSpec | None = None,
        dsn: str | None = None,
        now: dt.datetime | None = None,
    ) -> Result:
        """One sync; ``spec`` and ``dsn`` when the caller has them already (a reconcile)."""
        now = now or conditions.now_utc()
        owner = owner_of(body)
        result = Result()
        try:
            spec = spec or spec_of(body)
        except InvalidSpecError:
            return result  # the reconcile reports it
        if spec.gate is None:
            return result
        configmap = self.kube.get("v1", "ConfigMap", owner.namespace, spec.gate.config_map_name)
        reading = read(configmap, spec.gate, owner.namespace)
        try:
            known = dsn if dsn is not None else database_secret(self.kube, owner, spec).value
            pooled = spec.database.pooled
            outcome = self.deadlines.run(
                (owner.namespace, owner.name, "gate"),
                "writing the gate flag",
                lambda: write(known, reading, pooled=pooled),
            )
        except (SecretError, DatabaseError) as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "gate").inc()
            reason = "SecretNotFound" if isinstance(exc, SecretError) else "DatabaseUnavailable"
            result.changes.append(Change(conditions.GATE_SYNCED, "False", reason, str(exc)))
            result.retry = str(exc)
            return result
        metrics.record_gate(owner.namespace, owner.name, enabled=outcome.enabled)
        result.status["gate"] = status_of(reading, now)
        result.changes.append(condition_of(reading))
        if outcome.written and reading.problem:
            result.events.append(Event("Warning", reading.problem, reading.detail))
        if outcome.flipped:
            state = "on" if outcome.enabled else "off"
            metrics.GATE_FLIPS.labels(owner.namespace, owner.name, state).inc()
            result.events.append(
                Event(
                    "Normal",
                    "GateOn" if outcome.enabled else "GateOff",
                    f"gate pg_queue_enabled turned {state} from {reading.source}",
                )
            )
            log.info(
                "gate of %s/%s turned %s from %s",
                owner.namespace,
                owner.name,
                state,
                reading.source,
            )
        return result
