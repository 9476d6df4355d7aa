"""The few Kubernetes calls each part of the operator needs, as protocols.

:class:`~pgqueue_operator.kube.Kube` implements them over the real API; the unit tests implement
them over a dict. The gate sync and the depth sampler only read (:class:`KubeVerbs`); the reconciler
also writes its children (:class:`ChildVerbs`). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SecretValue:
    """One key of a Secret, and which version of the Secret it was read from."""

    value: str
    version: str
    """``<uid>/<resourceVersion>``: changes with every write of the Secret, says nothing of it."""

    def __repr__(self) -> str:  # never the value, even in a traceback or a debugger
        return f"SecretValue(version={self.version!r})"


class KubeVerbs(Protocol):
    """Reads by name: an object (None when it does not exist) and one decoded Secret key."""

    def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...

    def secret_value(self, namespace: str, name: str, key: str) -> SecretValue:
        """:class:`~pgqueue_operator.errors.SecretError` names what is missing, never the value."""
        ...


class ChildVerbs(KubeVerbs, Protocol):
    """The reads, plus writing children: server-side apply, and delete if present."""

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The live object; :class:`~pgqueue_operator.errors.ApplyError` when refused."""
        ...

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool: ...


class PodVerbs(Protocol):
    """The worker pods' deletion costs: list them by label, annotate one (least privilege: the
    chart grants ``list`` and ``patch`` on pods and nothing else on them)."""

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> bool:
        """Merge ``annotations`` into the pod's; False when the pod is gone."""
        ...


class CostVerbs(KubeVerbs, PodVerbs, Protocol):
    """The sampler's reads plus the pod verbs: what the deletion costs need."""
