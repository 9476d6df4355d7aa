"""Reconcile one PgQueueWorker: spec → derived timings → children applied → status decided.

Level-based: every call computes the whole desired state from the object as it is now and applies
it with server-side apply, so running it twice, or after a crash half-way, converges to the same
children. :meth:`Reconciler.reconcile` applies the children (its one kind of effect) and returns
everything else as decisions, a :class:`~pgqueue_operator.decisions.Result`: status fields,
condition changes, Events, a retry; the handler writes them. The gate is synced at the end of each
reconcile (:class:`~pgqueue_operator.gatesync.GateSync`, with the spec and DSN already read). The
Secret is read by name on every reconcile (the resync timer included), which is how a rotation
reaches the pods without a cluster-wide Secret watch.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgqueue_operator import builders, conditions, following, metrics
from pgqueue_operator.autoscaling import effective_replicas
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.builders.common import Owner, metrics_name, worker_name
from pgqueue_operator.conditions import DEGRADED, PAUSED, PROGRESSING, READY, Change
from pgqueue_operator.decisions import Event, Result
from pgqueue_operator.deriving import DerivedTimings, derive
from pgqueue_operator.errors import ApplyError, InvalidSpecError, SecretError
from pgqueue_operator.gatesync import GateSync
from pgqueue_operator.models import PgQueueWorkerSpec
from pgqueue_operator.objects import database_secret, owner_of, parse_spec, spec_of
from pgqueue_operator.verbs import ChildVerbs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciler:
    """Applies the children of a PgQueueWorker and decides its status."""

    kube: ChildVerbs
    deadlines: Deadlines = field(default_factory=lambda: Deadlines(30.0))

    def reconcile(self, body: Mapping[str, Any], now: dt.datetime | None = None) -> Result:
        """Children applied from the object as it is now; its status, Events and retry decided."""
        owner = owner_of(body)
        status: Mapping[str, Any] = body.get("status") or {}
        try:
            spec = spec_of(body)
            derived = derive(spec)
        except InvalidSpecError as exc:
            return _invalid(exc)  # no retry: waiting for a spec change
        result = Result(status={"derived": derived.as_status()})
        try:
            secret = database_secret(self.kube, owner, spec)
        except SecretError as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "reconcile").inc()
            return _degraded(result, "SecretNotFound", str(exc))
        replicas = effective_replicas(spec, status)
        wanted = builders.deployment.build(
            spec, derived, owner, replicas=replicas, secret_version=secret.version
        )
        try:
            deployment = self._apply_children(spec, derived, owner, wanted)
        except ApplyError as exc:
            metrics.SYNC_ERRORS.labels(owner.namespace, owner.name, "reconcile").inc()
            return _degraded(result, "ApplyFailed", str(exc))
        log.debug("applied the children of %s/%s", owner.namespace, owner.name)
        sweep = builders.common.sweep_name(owner)
        cron = self.kube.get("batch/v1", "CronJob", owner.namespace, sweep)
        # Pods turn Ready later; the Deployment watch (``following``) decides that the same way.
        result = result.merge(following.rollout(spec, replicas, deployment))
        result.changes = [
            Change(DEGRADED, "False", "Reconciled", "children applied"),
            *result.changes,
            Change(
                PAUSED,
                conditions.as_bool(spec.paused),
                "Paused" if spec.paused else "Running",
                "scaled to zero, sweep suspended" if spec.paused else "",
            ),
        ]
        result.status.update(
            {
                "observedGeneration": body["metadata"].get("generation"),
                "selector": builders.common.selector_string(owner),
                "lastSweep": ((cron or {}).get("status") or {}).get("lastSuccessfulTime"),
            }
        )
        gate = GateSync(self.kube, self.deadlines)
        return result.merge(gate.sync(body, spec, secret.value, now))

    def _apply_children(
        self,
        spec: PgQueueWorkerSpec,
        derived: DerivedTimings,
        owner: Owner,
        deployment: dict[str, Any],
    ) -> dict[str, Any]:
        """Apply every child; delete the optional ones that are disabled. Returns the Deployment."""
        log.debug("applying the children of %s/%s", owner.namespace, owner.name)
        live = self.kube.apply(deployment)
        self.kube.apply(builders.service.build(spec, owner))
        self.kube.apply(builders.cronjob.build(spec, derived, owner))
        optional = (
            (builders.pdb.build(spec, owner), "policy/v1", "PodDisruptionBudget", worker_name),
            (
                builders.servicemonitor.build(spec, owner),
                "monitoring.coreos.com/v1",
                "ServiceMonitor",
                metrics_name,
            ),
        )
        for manifest, api_version, kind, name_of in optional:
            if manifest is not None:
                self.kube.apply(manifest)
            else:
                self.kube.delete(api_version, kind, owner.namespace, name_of(owner))
        return live


def _invalid(exc: InvalidSpecError) -> Result:
    return Result(
        changes=[
            Change(DEGRADED, "True", exc.reason, str(exc)),
            Change(READY, "False", exc.reason, "nothing is deployed from an invalid spec"),
            Change(PROGRESSING, "False", exc.reason, str(exc)),
        ],
        events=[Event("Warning", exc.reason, str(exc))],
    )


def _degraded(result: Result, reason: str, message: str) -> Result:
    result.changes = [
        Change(DEGRADED, "True", reason, message),
        Change(READY, "False", reason, message),
    ]
    result.events.append(Event("Warning", reason, message))
    result.retry = message
    return result


# parse_spec is re-exported: the image tests read a spec the way the reconciler does, from here.
__all__ = ["Reconciler", "parse_spec"]
