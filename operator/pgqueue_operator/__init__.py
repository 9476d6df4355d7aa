"""pgqueue_operator: the Kubernetes operator that runs pgqueue worker fleets.

Layers, inner to outer. Pure: ``models``, ``podmodels`` and ``statusmodels`` (the CRD as
pydantic), ``deriving`` (the timings, architecture §5), ``builders`` (spec and timings in,
manifests out), ``conditions``, ``depth``, ``autoscaling``, ``objects`` (reading a PgQueueWorker
body), ``decisions`` (the ``Result`` every part returns) and ``verbs`` (the Kubernetes calls the
parts need, as protocols). Deciding over I/O: ``reconciling`` (children and status),
``gatesync`` (ConfigMap → flag row) and ``sampling`` (queue depth, autoscaling), each over
``verbs`` and Postgres; ``kube`` implements the verbs over the API server; ``handlers`` only
registers with kopf and applies the results; ``cli`` starts it all.
"""

from __future__ import annotations

GROUP = "pgqueue.dev"
VERSION = "v1alpha1"
KIND = "PgQueueWorker"
PLURAL = "pgqueueworkers"
API_VERSION = f"{GROUP}/{VERSION}"

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION"]
