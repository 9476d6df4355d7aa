"""The metrics Service: a stable scrape target over the worker pods' metrics port."""

from __future__ import annotations

from typing import Any

from pgqueue_operator.builders import common
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.models import PgQueueWorkerSpec


def build(spec: PgQueueWorkerSpec, owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.metadata(owner, common.metrics_name(owner), "metrics"),
        "spec": {
            "type": "ClusterIP",
            "selector": common.selector_labels(owner, "worker"),
            "ports": [
                {
                    "name": "metrics",
                    "port": spec.metrics.port,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                }
            ],
        },
    }
