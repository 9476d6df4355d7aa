"""What the worker pods and the sweep pods share, built once so the two never drift apart.

:func:`pod_spec` is the one place ``spec.pod`` becomes pod-level fields (placement, the
ServiceAccount, volumes, init containers) and :func:`container` the one place it becomes
container-level fields (the user's env after the operator's, envFrom, mounts, resources). The
Deployment adds what only workers get (topology spread, extra containers, probes); the CronJob
uses the rest as is.
"""

from __future__ import annotations

from typing import Any

from pgqueue_operator.builders import common
from pgqueue_operator.models import PgQueueWorkerSpec
from pgqueue_operator.podmodels import PodOverrides

TMP_VOLUME = "tmp"


def placement(pod: PodOverrides) -> dict[str, Any]:
    """Where and as whom a pod runs: node selection, priority, pull secrets, ServiceAccount."""
    out: dict[str, Any] = {"automountServiceAccountToken": pod.automount_service_account_token}
    if pod.service_account_name:
        out["serviceAccountName"] = pod.service_account_name
    if pod.node_selector:
        out["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        out["tolerations"] = [dict(t) for t in pod.tolerations]
    if pod.affinity:
        out["affinity"] = dict(pod.affinity)
    if pod.priority_class_name:
        out["priorityClassName"] = pod.priority_class_name
    if pod.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": n} for n in pod.image_pull_secrets]
    return out


def dsn_env(spec: PgQueueWorkerSpec) -> dict[str, Any]:
    """The DSN by reference to its Secret: its value never appears in a manifest."""
    return {
        "name": "PGQUEUE_DSN",
        "valueFrom": {
            "secretKeyRef": {"name": spec.database.secret_name, "key": spec.database.key}
        },
    }


def container(
    spec: PgQueueWorkerSpec, name: str, args: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    """A container of the worker image: the operator's ``env`` first, then the user's.

    Order matters twice: a user variable can expand an operator one (``$(PGQUEUE_WORKER_ID)``)
    only if it comes later, and the operator's ``env`` entries win over any ``envFrom`` key.
    """
    pod = spec.pod
    out: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": list(args),
        "env": [*env, *(e.manifest() for e in pod.env)],
    }
    if pod.env_from:
        out["envFrom"] = [e.manifest() for e in pod.env_from]
    out["securityContext"] = common.restricted_security_context()
    out["volumeMounts"] = [
        {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 - an emptyDir
        *(m.manifest() for m in pod.volume_mounts),
    ]
    if pod.resources:
        out["resources"] = dict(pod.resources)
    return out


def pod_spec(spec: PgQueueWorkerSpec, containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod-level fields both kinds of pod share; ``containers`` are the operator's."""
    pod = spec.pod
    out: dict[str, Any] = {
        "securityContext": common.pod_security_context(),
        **placement(pod),
        "containers": containers,
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}, *(v.manifest() for v in pod.volumes)],
    }
    if pod.init_containers:
        out["initContainers"] = [c.manifest() for c in pod.init_containers]
    return out
