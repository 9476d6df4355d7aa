"""The optional prometheus-operator ServiceMonitor over the metrics Service."""

from __future__ import annotations

from typing import Any

from pgqueue_operator.builders import common
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.models import PgQueueWorkerSpec


def build(spec: PgQueueWorkerSpec, owner: Owner) -> dict[str, Any] | None:
    """The ServiceMonitor, or None when disabled (the caller then deletes any existing one)."""
    monitor = spec.metrics.service_monitor
    if not monitor.enabled:
        return None
    meta = common.metadata(owner, common.metrics_name(owner), "metrics")
    meta["labels"] = {**monitor.labels, **meta["labels"]}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": common.selector_labels(owner, "metrics")},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": monitor.interval}],
        },
    }
