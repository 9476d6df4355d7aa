"""A PgQueueWorker's worker pods as the API shows them, for the tiers that run pods.

Pods are selected by instance *and* component: the sweep CronJob's pods carry the same
``app.kubernetes.io/instance`` label, and a sweep that fired mid-test once made a fifth pod
(Succeeded, never Ready) that kept a wait for "4 worker pods Ready" from ever ending.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devtools.kubeapi import KubeCluster

Pod = dict[str, Any]


def selector(name: str) -> str:
    """The label selector of PgQueueWorker ``name``'s worker pods (not its sweep's)."""
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/component=worker"


def worker_pods(kube: KubeCluster, ns: str, name: str) -> list[Pod]:
    """The worker pods of ``name`` that are not being deleted."""
    out = kube.kubectl("-n", ns, "get", "pods", "-l", selector(name), "-o", "json")
    items: list[Pod] = json.loads(out.stdout)["items"]
    return [p for p in items if p["metadata"].get("deletionTimestamp") is None]


def is_ready(pod: Pod) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_workers(kube: KubeCluster, ns: str, name: str, count: int) -> list[Pod] | None:
    """Exactly ``count`` live worker pods, every one Ready; else None."""
    found = worker_pods(kube, ns, name)
    return found if len(found) == count and all(is_ready(p) for p in found) else None


def describe(kube: KubeCluster, ns: str) -> str:
    """Every pod of the namespace with its phase and readiness: what a timed-out wait saw."""
    out = kube.kubectl("-n", ns, "get", "pods", "-o", "json", check=False)
    if out.returncode != 0:
        return f"(pods unreadable: {out.stderr.strip()})"
    rows = []
    for pod in json.loads(out.stdout)["items"]:
        meta, status = pod["metadata"], pod.get("status") or {}
        component = (meta.get("labels") or {}).get("app.kubernetes.io/component", "-")
        gone = " deleting" if meta.get("deletionTimestamp") else ""
        ready = "Ready" if is_ready(pod) else "not Ready"
        rows.append(f"{meta['name']} [{component}] {status.get('phase')} {ready}{gone}")
    return "; ".join(rows) or "(no pods)"


def pods_left(kube: KubeCluster, ns: str) -> int:
    """Pods still running or about to (finished Job pods stay until their Job goes)."""
    out = kube.kubectl(
        "-n", ns, "get", "pods", "-o", "name",
        "--field-selector", "status.phase!=Succeeded,status.phase!=Failed", check=False,
    )  # fmt: skip
    return len(out.stdout.split())
