"""pgqueue_operator: the Kubernetes operator that runs pgqueue worker fleets.

Layers, inner to outer: ``models`` (the spec as pydantic) and ``deriving`` (DESIGN §5 timings) are
pure; ``builders`` turn a spec and its derived timings into manifests, also pure; ``conditions``,
``gatesync`` and ``sampling`` hold the decisions; ``kube`` and ``reconciling`` talk to the API
server and Postgres; ``handlers`` only registers them with kopf; ``cli`` starts it all.
"""

from __future__ import annotations

GROUP = "pgqueue.dev"
VERSION = "v1alpha1"
KIND = "PgQueueWorker"
PLURAL = "pgqueueworkers"
API_VERSION = f"{GROUP}/{VERSION}"

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION"]
