"""What every child shares: deterministic names, labels, the owner reference, the checksum.

Names are ``<pqw>-worker`` (Deployment, PDB), ``<pqw>-metrics`` (Service, ServiceMonitor) and
``<pqw>-sweep`` (CronJob); the CRD limits a PgQueueWorker name to 46 characters so the longest
(a CronJob, 52 at most) always fits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pgqueue_operator import API_VERSION, KIND

MANAGED_BY = "pgqueue-operator"
CHECKSUM_ANNOTATION = "pgqueue.dev/checksum"
"""Pod-template annotation: hash of the config and of the Secret's DSN; a change rolls pods."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The PgQueueWorker a child belongs to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def worker_name(owner: Owner) -> str:
    return f"{owner.name}-worker"


def metrics_name(owner: Owner) -> str:
    return f"{owner.name}-metrics"


def sweep_name(owner: Owner) -> str:
    return f"{owner.name}-sweep"


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The immutable subset used in selectors."""
    return {
        "app.kubernetes.io/name": "pgqueue",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
    }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        **selector_labels(owner, component),
        "app.kubernetes.io/part-of": "pgqueue",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def metadata(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner.reference()],
    }


def selector_string(owner: Owner) -> str:
    """The worker pods' label selector as a string (``status.selector``, for ``/scale``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(owner, "worker").items()))


def checksum(*parts: Any) -> str:
    """A stable sha256 over JSON-able parts (key order does not matter)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def seconds(value: float) -> str:
    """A duration for an env var: ``300`` rather than ``300.0``, ``0.5`` stays ``0.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def restricted_security_context() -> dict[str, Any]:
    """The container security context of the ``restricted`` Pod Security Standard, read-only FS."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
