"""The PodDisruptionBudget: voluntary evictions take at most ``maxUnavailable`` workers at once."""

from __future__ import annotations

from typing import Any

from pgqueue_operator.builders import common
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.models import PgQueueWorkerSpec


def build(spec: PgQueueWorkerSpec, owner: Owner) -> dict[str, Any] | None:
    """The PDB, or None when disabled (the caller then deletes any existing one)."""
    if not spec.pod_disruption_budget.enabled:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": common.metadata(owner, common.worker_name(owner), "worker"),
        "spec": {
            "maxUnavailable": spec.pod_disruption_budget.max_unavailable,
            "selector": {"matchLabels": common.selector_labels(owner, "worker")},
        },
    }
