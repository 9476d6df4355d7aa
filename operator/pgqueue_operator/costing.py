"""Keeps each worker pod's ``pod-deletion-cost`` in step with its heartbeat, on the sample timer.

:class:`DeletionCosts` lists the fleet's pods by the Deployment's selector, reads the worker
registry (``pgqueue.admin.workers``, under the same :class:`~pgqueue_operator.bounding.Deadlines`
as the depth sample) and applies what :func:`~pgqueue_operator.deletioncost.plan` decides. It
never raises: a refused read or patch is logged once per PgQueueWorker and cause, counted in
``pgqueue_operator_errors_total{stage="costs"}``, and the pods keep the costs they had. Scale-in
then falls back to the ReplicaSet's own ranking (newest Ready pods first), as without the operator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgqueue import admin
from pgqueue_operator import deletioncost, metrics
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.builders import common
from pgqueue_operator.errors import DatabaseError, InvalidSpecError, SecretError
from pgqueue_operator.objects import database_secret, owner_of, spec_of
from pgqueue_operator.verbs import CostVerbs

log = logging.getLogger(__name__)


@dataclass
class DeletionCosts:
    """Brings the deletion-cost annotation of one PgQueueWorker's pods up to date."""

    kube: CostVerbs
    deadlines: Deadlines
    _failing: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, body: Mapping[str, Any]) -> list[deletioncost.CostPatch]:
        """The patches applied this time (none when nothing changed or something failed)."""
        owner = owner_of(body)
        key = (owner.namespace, owner.name)
        try:
            spec = spec_of(body)
        except InvalidSpecError:
            return []  # the reconcile reports it
        if spec.paused:
            return []  # every pod goes: no order to keep
        try:
            pods = self.kube.list_pods(owner.namespace, common.selector_string(owner))
            live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
            if not live:
                self._recovered(key)
                return []
            dsn = database_secret(self.kube, owner, spec).value
            rows = self.deadlines.run(
                (owner.namespace, owner.name, "costs"),
                "reading the worker registry",
                lambda: admin.workers(dsn, pooled=spec.database.pooled),
            )
            patches = deletioncost.plan(live, rows)
            for patch in patches:
                self.kube.annotate_pod(owner.namespace, patch.pod, patch.annotations())
        except (DatabaseError, SecretError) as exc:
            self._failed(key, str(exc))
            return []
        except Exception as exc:  # psycopg's text may quote the DSN: only the API's status
            status = getattr(exc, "status", None)
            self._failed(key, " ".join(str(p) for p in (type(exc).__name__, status) if p))
            return []
        self._recovered(key)
        for patch in patches:
            log.debug("pod %s/%s: deletion cost %s -> %d",
                      owner.namespace, patch.pod, patch.previous, patch.cost)  # fmt: skip
        return patches

    def _failed(self, key: tuple[str, str], why: str) -> None:
        metrics.SYNC_ERRORS.labels(*key, "costs").inc()
        with self._lock:
            if self._failing.get(key) == why:
                return
            self._failing[key] = why
        log.warning("pod deletion costs of %s/%s not updated: %s", *key, why)

    def _recovered(self, key: tuple[str, str]) -> None:
        with self._lock:
            if self._failing.pop(key, None) is not None:
                log.info("pod deletion costs of %s/%s updated again", *key)
