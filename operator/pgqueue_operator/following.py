"""Status that follows the children: what a Deployment or a CronJob reports, decided as status.

The reconcile computes ``Ready``, ``Progressing`` and ``readyReplicas`` from the Deployment it has
just applied, but pods turn Ready seconds later, when nothing about the PgQueueWorker changes; the
handlers therefore also watch the owned Deployments and CronJobs and hand each change here, so
``kubectl get pqw`` follows the pods within a watch event instead of a resync period. Both paths
decide through :func:`rollout`, so they cannot disagree. Pure: bodies in, a
:class:`~pgqueue_operator.decisions.Result` (or ``None``: nothing to say) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgqueue_operator import GROUP, KIND, conditions
from pgqueue_operator.autoscaling import effective_replicas
from pgqueue_operator.conditions import PROGRESSING, READY, Change
from pgqueue_operator.decisions import Result
from pgqueue_operator.errors import InvalidSpecError
from pgqueue_operator.models import PgQueueWorkerSpec
from pgqueue_operator.objects import spec_of

__all__ = ["from_cronjob", "from_deployment", "owner_name", "rollout", "writes_anything"]


def owner_name(child: Mapping[str, Any]) -> str | None:
    """The name of the PgQueueWorker controlling ``child``, if one does."""
    for ref in (child.get("metadata") or {}).get("ownerReferences") or ():
        group = str(ref.get("apiVersion", "")).split("/", 1)[0]
        if ref.get("kind") == KIND and group == GROUP and ref.get("controller"):
            return str(ref["name"])
    return None


def rollout(spec: PgQueueWorkerSpec, replicas: int, deployment: Mapping[str, Any]) -> Result:
    """``Ready``, ``Progressing``, ``replicas`` and ``readyReplicas`` from the Deployment."""
    status = deployment.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    rolled = int(status.get("observedGeneration") or 0) >= generation and updated >= replicas
    return Result(
        status={"replicas": replicas, "readyReplicas": ready},
        changes=[
            _ready(spec, replicas, ready),
            Change(
                PROGRESSING,
                conditions.as_bool(not rolled),
                "RolloutComplete" if rolled else "RollingOut",
                f"{updated}/{replicas} pods updated",
            ),
        ],
    )


def from_deployment(worker: Mapping[str, Any], deployment: Mapping[str, Any]) -> Result | None:
    """The status ``worker`` gets from its Deployment's change; ``None`` when it gets none: the
    Deployment is not (or no longer) its own, the worker is being deleted, or its spec is invalid
    (the reconcile has said so, and nothing it decided is deployed)."""
    spec = _followed_spec(worker, deployment)
    if spec is None:
        return None
    return rollout(spec, effective_replicas(spec, worker.get("status") or {}), deployment)


def from_cronjob(worker: Mapping[str, Any], cronjob: Mapping[str, Any]) -> Result | None:
    """``lastSweep`` from the sweep CronJob's change (its Job succeeded); ``None`` as above."""
    if _followed_spec(worker, cronjob) is None:
        return None
    last = (cronjob.get("status") or {}).get("lastSuccessfulTime")
    return Result(status={"lastSweep": last}) if last else None


def writes_anything(worker: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether writing ``patch`` would change ``worker``'s status (each child event would
    otherwise be a status write, and a watch event on the PgQueueWorker)."""
    current = worker.get("status") or {}
    return any(current.get(key) != value for key, value in patch.items())


def _followed_spec(worker: Mapping[str, Any], child: Mapping[str, Any]) -> PgQueueWorkerSpec | None:
    meta = worker.get("metadata") or {}
    if meta.get("deletionTimestamp") or not _owned_by(child, str(meta.get("uid", ""))):
        return None
    try:
        return spec_of(worker)
    except InvalidSpecError:
        return None


def _owned_by(child: Mapping[str, Any], uid: str) -> bool:
    refs = (child.get("metadata") or {}).get("ownerReferences") or ()
    return bool(uid) and any(ref.get("uid") == uid and ref.get("kind") == KIND for ref in refs)


def _ready(spec: PgQueueWorkerSpec, replicas: int, ready: int) -> Change:
    if spec.paused:
        return Change(READY, "False", "Paused", "paused: scaled to zero")
    if replicas == 0:
        return Change(READY, "True", "ScaledToZero", "no replicas wanted")
    if ready >= replicas:
        return Change(READY, "True", "PodsReady", f"{ready}/{replicas} pods ready")
    return Change(READY, "False", "PodsNotReady", f"{ready}/{replicas} pods ready")
