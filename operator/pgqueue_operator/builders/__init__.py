"""Pure builders: a spec model plus its derived timings in, Kubernetes manifests (dicts) out.

Nothing here talks to the API server, so every manifest is unit-tested without a cluster. Names are
deterministic (``common``), each child carries the recommended ``app.kubernetes.io/*`` labels and a
controller owner reference to its ``PgQueueWorker`` (``common``), so garbage collection
removes them.
"""

from __future__ import annotations

from pgqueue_operator.builders import common, cronjob, deployment, pdb, service, servicemonitor
from pgqueue_operator.builders.common import Owner

__all__ = ["Owner", "common", "cronjob", "deployment", "pdb", "service", "servicemonitor"]
