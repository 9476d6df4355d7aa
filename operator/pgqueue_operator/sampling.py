"""The depth sampler: queue depth into status and metrics, and the autoscaler's next step.

:class:`Sampler` reads the per-queue stats of one PgQueueWorker's database
(``pgqueue.admin.queue_stats``, under :class:`~pgqueue_operator.bounding.Deadlines`), summarises
them for the queues the fleet consumes (:mod:`~pgqueue_operator.depth`) and, when the fleet
autoscales, lets :func:`~pgqueue_operator.autoscaling.decide` pick the replicas. It returns
decisions and applies none: when the replicas move, the result carries a
:class:`~pgqueue_operator.decisions.Rescale` and the handler reconciles the object with the new
``status.autoscaling``, which is where the Deployment's replicas come from.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgqueue import admin
from pgqueue_operator import autoscaling, conditions, depth, metrics
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.decisions import Event, Rescale, Result
from pgqueue_operator.deriving import derive
from pgqueue_operator.errors import DatabaseError, InvalidSpecError, SecretError
from pgqueue_operator.objects import database_secret, owner_of, spec_of
from pgqueue_operator.verbs import KubeVerbs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sampler:
    """Samples the depth of a PgQueueWorker's queues."""

    kube: KubeVerbs
    deadlines: Deadlines

    def sample(self, body: Mapping[str, Any], now: dt.datetime | None = None) -> Result:
        """``status.depth``, ``backlog``, ``sampledAt``, maybe ``autoscaling`` and a rescale."""
        now = now or conditions.now_utc()
        owner = owner_of(body)
        status: Mapping[str, Any] = body.get("status") or {}
        result = Result()
        try:
            spec = spec_of(body)
            derive(spec)
            dsn = database_secret(self.kube, owner, spec).value
        except InvalidSpecError:
            return result  # the reconcile reports it
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
        depths = depth.summarise(stats, spec.queues)
        metrics.record_depth(owner.namespace, owner.name, depths)
        total = depth.backlog(depths)
        result.status.update(
            {
                "depth": [d.as_status() for d in depths],
                "backlog": total,
                "pausedQueues": depth.paused(depths),
                "sampledAt": conditions.timestamp(now),
            }
        )
        if spec.autoscaling is None or spec.paused:
            return result
        previous = autoscaling.ScaleState.from_status(status.get("autoscaling"))
        decision = autoscaling.decide(spec.autoscaling, total, previous, now)
        result.status["autoscaling"] = decision.as_status()
        metrics.record_desired(owner.namespace, owner.name, decision.desired)
        if previous is not None and decision.desired == previous.desired:
            return result
        log.info(
            "autoscaling %s/%s: backlog %d -> %d replicas",
            owner.namespace,
            owner.name,
            total,
            decision.desired,
        )
        result.rescale = Rescale(decision.desired)
        if previous is not None:
            result.events.append(
                Event(
                    "Normal",
                    "ScaledUp" if decision.desired > previous.desired else "ScaledDown",
                    f"backlog {total}: replicas {previous.desired} -> {decision.desired}",
                )
            )
        return result
