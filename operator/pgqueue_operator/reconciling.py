"""Reconcile one PgQueueWorker: spec → derived timings → children applied → status.

Level-based: every call computes the whole desired state from the object as it is now and applies
it with server-side apply, so running it twice, or after a crash half-way, converges to the same
children. Each function returns the status fragment to write; the handler writes it (kopf's patch)
and turns a :class:`Retry` into ``kopf.TemporaryError``. The gate and the depth sampler live here
too because they need the same spec parsing and Secret lookup. The Secret is read by name on
every reconcile (the resync timer included), which is how a rotation reaches the pods without a
cluster-wide Secret watch; its database calls run under :class:`~pgqueue_operator.bounding.
Deadlines`, so a hung Postgres delays a handler by the deadline at most.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from pgqueue import admin
from pgqueue_operator import API_VERSION, KIND, builders, conditions, gatesync, metrics, sampling
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.conditions import Change
from pgqueue_operator.deriving import DerivedTimings, derive
from pgqueue_operator.errors import (
    ApplyError,
    DatabaseError,
    InvalidSpecError,
    SecretError,
)
from pgqueue_operator.kube import Kube, SecretValue
from pgqueue_operator.models import PgQueueWorkerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to emit about the PgQueueWorker."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Result:
    """What a reconcile, gate sync or sample produced: a status fragment, events, maybe a retry."""

    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    retry: str | None = None
    """Set when the work must be retried later (message for the log and the TemporaryError)."""


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """A minimal body kopf can post Events about."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


def parse_spec(spec: Mapping[str, Any]) -> PgQueueWorkerSpec:
    """The spec model; :class:`InvalidSpecError` names the first bad field."""
    try:
        return PgQueueWorkerSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise InvalidSpecError(where, first["msg"]) from None


def effective_replicas(spec: PgQueueWorkerSpec, status: Mapping[str, Any]) -> int:
    """0 when paused; the autoscaler's choice when autoscaling; else ``spec.replicas``."""
    if spec.paused:
        return 0
    if spec.autoscaling is not None:
        state = sampling.ScaleState.from_status(status.get("autoscaling"))
        if state is None:
            return spec.autoscaling.min_replicas
        low, high = spec.autoscaling.min_replicas, spec.autoscaling.max_replicas
        return max(low, min(high, state.desired))
    return spec.replicas


@dataclass
class Reconciler:
    """The operator's I/O over one Kubernetes client."""

    kube: Kube
    deadlines: Deadlines = field(default_factory=lambda: Deadlines(30.0))

    # -- the spec and its secret ---------------------------------------------------------------

    def _secret(self, namespace: str, spec: PgQueueWorkerSpec) -> SecretValue:
        return self.kube.secret_value(namespace, spec.database.secret_name, spec.database.key)

    # -- reconcile -----------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], now: dt.datetime | None = None) -> Result:
        """Children and status from the object as it is now."""
        now = now or conditions.now_utc()
        owner = owner_of(body)
        meta = body["metadata"]
        generation = meta.get("generation")
        status: Mapping[str, Any] = body.get("status") or {}
        result = Result()
        try:
            spec = parse_spec(body.get("spec") or {})
            derived = derive(spec)
        except InvalidSpecError as exc:
            result.status["conditions"] = conditions.apply(
                status.get("conditions"),
                [
                    Change("Degraded", "True", exc.reason, str(exc)),
                    Change(
                        "Ready", "False", exc.reason, "nothing is deployed from an invalid spec"
                    ),
                    Change("Progressing", "False", exc.reason, str(exc)),
                ],
                generation=generation,
                now=now,
            )
            result.events.append(Event("Warning", exc.reason, str(exc)))
            return result  # no retry: waiting for a spec change
        result.status["derived"] = derived.as_status()
        try:
            secret = self._secret(owner.namespace, spec)
        except SecretError as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "reconcile").inc()
            return self._degraded(result, status, "SecretNotFound", str(exc), generation, now)
        replicas = effective_replicas(spec, status)
        try:
            deployment = self._apply_children(spec, derived, owner, replicas, secret.version)
        except ApplyError as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "reconcile").inc()
            return self._degraded(result, status, "ApplyFailed", str(exc), generation, now)
        log.debug("applied the children of %s/%s", owner.namespace, owner.name)
        cron = self.kube.get("batch/v1", "CronJob", owner.namespace, f"{owner.name}-sweep")
        last_sweep = ((cron or {}).get("status") or {}).get("lastSuccessfulTime")
        dep_status = deployment.get("status") or {}
        ready = int(dep_status.get("readyReplicas") or 0)
        updated = int(dep_status.get("updatedReplicas") or 0)
        rolled = (
            int(dep_status.get("observedGeneration") or 0)
            >= int((deployment.get("metadata") or {}).get("generation") or 0)
            and updated >= replicas
        )
        changes = [
            Change("Degraded", "False", "Reconciled", "children applied"),
            _ready(spec, replicas, ready),
            Change(
                "Progressing",
                conditions.as_bool(not rolled),
                "RollingOut" if not rolled else "RolloutComplete",
                f"{updated}/{replicas} pods updated",
            ),
            Change(
                "Paused",
                conditions.as_bool(spec.paused),
                "Paused" if spec.paused else "Running",
                "scaled to zero, sweep suspended" if spec.paused else "",
            ),
        ]
        result.status.update(
            {
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": ready,
                "selector": builders.common.selector_string(owner),
                "lastSweep": last_sweep,
            }
        )
        gate = self.sync_gate(body, spec, secret.value, now)
        result.events.extend(gate.events)
        changes.extend(gate.status.pop("_changes", []))
        result.status.update(gate.status)
        result.status["conditions"] = conditions.apply(
            status.get("conditions"), changes, generation=generation, now=now
        )
        result.retry = gate.retry
        return result

    def _degraded(
        self,
        result: Result,
        status: Mapping[str, Any],
        reason: str,
        message: str,
        generation: int | None,
        now: dt.datetime,
    ) -> Result:
        result.status["conditions"] = conditions.apply(
            status.get("conditions"),
            [
                Change("Degraded", "True", reason, message),
                Change("Ready", "False", reason, message),
            ],
            generation=generation,
            now=now,
        )
        result.events.append(Event("Warning", reason, message))
        result.retry = message
        return result

    def _apply_children(
        self,
        spec: PgQueueWorkerSpec,
        derived: DerivedTimings,
        owner: Owner,
        replicas: int,
        secret_version: str,
    ) -> dict[str, Any]:
        """Apply every child; delete the optional ones that are disabled. Returns the Deployment."""
        log.debug("applying the children of %s/%s", owner.namespace, owner.name)
        deployment = self.kube.apply(
            builders.deployment.build(
                spec, derived, owner, replicas=replicas, secret_version=secret_version
            )
        )
        self.kube.apply(builders.service.build(spec, owner))
        self.kube.apply(builders.cronjob.build(spec, derived, owner))
        pdb = builders.pdb.build(spec, owner)
        if pdb is not None:
            self.kube.apply(pdb)
        else:
            self.kube.delete(
                "policy/v1", "PodDisruptionBudget", owner.namespace, f"{owner.name}-worker"
            )
        monitor = builders.servicemonitor.build(spec, owner)
        if monitor is not None:
            self.kube.apply(monitor)
        else:
            self.kube.delete(
                "monitoring.coreos.com/v1",
                "ServiceMonitor",
                owner.namespace,
                f"{owner.name}-metrics",
            )
        return deployment

    # -- the gate ------------------------------------------------------------------------------

    def sync_gate(
        self,
        body: Mapping[str, Any],
        spec: PgQueueWorkerSpec | None = None,
        dsn: str | None = None,
        now: dt.datetime | None = None,
    ) -> Result:
        """Copy the gate ConfigMap into the database; ``status['_changes']`` holds the condition."""
        now = now or conditions.now_utc()
        owner = owner_of(body)
        result = Result()
        try:
            spec = spec or parse_spec(body.get("spec") or {})
        except InvalidSpecError:
            return result  # reconcile reports it
        if spec.gate is None:
            return result
        configmap = self.kube.get("v1", "ConfigMap", owner.namespace, spec.gate.config_map_name)
        reading = gatesync.read(configmap, spec.gate, owner.namespace)
        try:
            dsn = dsn or self._secret(owner.namespace, spec).value
            pooled = spec.database.pooled
            outcome = self.deadlines.run(
                (owner.namespace, owner.name, "gate"),
                "writing the gate flag",
                lambda: gatesync.write(dsn, reading, pooled=pooled),
            )
        except (SecretError, DatabaseError) as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "gate").inc()
            reason = "SecretNotFound" if isinstance(exc, SecretError) else "DatabaseUnavailable"
            result.status["_changes"] = [Change("GateSynced", "False", reason, str(exc))]
            result.retry = str(exc)
            return result
        metrics.record_gate(owner.namespace, owner.name, enabled=outcome.enabled)
        result.status["gate"] = gatesync.status_of(reading, now)
        result.status["_changes"] = [gatesync.condition_of(reading)]
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

    def gate_status_patch(self, body: Mapping[str, Any], result: Result) -> dict[str, Any]:
        """The status fragment of a gate sync run outside a kopf handler of the object."""
        status = body.get("status") or {}
        changes = result.status.get("_changes", [])
        patch = {k: v for k, v in result.status.items() if k != "_changes"}
        if changes:
            patch["conditions"] = conditions.apply(
                status.get("conditions"),
                changes,
                generation=(body.get("metadata") or {}).get("generation"),
                now=conditions.now_utc(),
            )
        return patch

    # -- depth and autoscaling -----------------------------------------------------------------

    def sample(self, body: Mapping[str, Any], now: dt.datetime | None = None) -> Result:
        """Read queue depth into status and metrics; let the autoscaler move the replicas."""
        now = now or conditions.now_utc()
        owner = owner_of(body)
        status: Mapping[str, Any] = body.get("status") or {}
        result = Result()
        try:
            spec = parse_spec(body.get("spec") or {})
            derive(spec)
            dsn = self._secret(owner.namespace, spec).value
        except InvalidSpecError:
            return result  # reconcile reports it
        except SecretError as exc:
            result.retry = str(exc)
            return result
        pooled = spec.database.pooled
        try:
            stats = self.deadlines.run(
                (owner.namespace, owner.name, "sample"),
                "reading queue depth",
                lambda: admin.queue_stats(dsn, pooled=pooled),
            )
        except DatabaseError as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "sample").inc()
            result.retry = str(exc)
            return result
        except Exception as exc:  # psycopg's errors: their text may quote the DSN, so not it
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "sample").inc()
            result.retry = f"reading queue depth failed: {type(exc).__name__}"
            return result
        depths = sampling.summarise(stats, spec.queues)
        metrics.record_depth(owner.namespace, owner.name, depths)
        total = sampling.backlog(depths)
        result.status.update(
            {
                "depth": [d.as_status() for d in depths],
                "backlog": total,
                "sampledAt": conditions.timestamp(now),
            }
        )
        if spec.autoscaling is None or spec.paused:
            return result
        previous = sampling.ScaleState.from_status(status.get("autoscaling"))
        decision = sampling.decide(spec.autoscaling, total, previous, now)
        result.status["autoscaling"] = decision.as_status()
        metrics.record_desired(owner.namespace, owner.name, decision.desired)
        if previous is None or decision.desired != previous.desired:
            log.info(
                "autoscaling %s/%s: backlog %d -> %d replicas",
                owner.namespace,
                owner.name,
                total,
                decision.desired,
            )
            updated = {**body, "status": {**status, "autoscaling": decision.as_status()}}
            applied = self.reconcile(updated, now)
            result.events.extend(applied.events)
            merged = {**applied.status, **result.status}
            result.status = merged
            result.retry = applied.retry
            if previous is not None:
                result.events.append(
                    Event(
                        "Normal",
                        "ScaledUp" if decision.desired > previous.desired else "ScaledDown",
                        f"backlog {total}: replicas {previous.desired} -> {decision.desired}",
                    )
                )
        return result


def _ready(spec: PgQueueWorkerSpec, replicas: int, ready: int) -> Change:
    if spec.paused:
        return Change("Ready", "False", "Paused", "paused: scaled to zero")
    if replicas == 0:
        return Change("Ready", "True", "ScaledToZero", "no replicas wanted")
    if ready >= replicas:
        return Change("Ready", "True", "PodsReady", f"{ready}/{replicas} pods ready")
    return Change("Ready", "False", "PodsNotReady", f"{ready}/{replicas} pods ready")


__all__ = ["Event", "Reconciler", "Result"]
