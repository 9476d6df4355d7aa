"""An in-memory implementation of the operator's Kubernetes verbs (``pgqueue_operator.verbs``).

Objects are stored by (kind, namespace, name), as server-side apply would leave them; Secrets
and ConfigMaps are put by the test. The real API server is exercised by tests/k8s.
"""

from __future__ import annotations

import base64
from typing import Any

from pgqueue_operator.errors import ApplyError, SecretError
from pgqueue_operator.verbs import SecretValue

UNREACHABLE_DSN = "postgresql://app:S3cretPassw0rd@127.0.0.1:1/app?connect_timeout=5"
"""A DSN nothing listens on: the real driver is refused at once, and the password must not leak."""


class FakeKube:
    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        for name, dsn in (secrets or {}).items():
            self.put_secret(name, dsn)
        self.applied: list[tuple[str, str]] = []
        self.fail_kind: str | None = None
        self.pods: dict[str, dict[str, Any]] = {}
        self.annotated: list[tuple[str, dict[str, str]]] = []

    def put(self, kind: str, name: str, data: dict[str, str]) -> None:
        """Create or update: the resourceVersion moves, as the API server's would."""
        old = self.objects.get((kind, "ns", name))
        version = 1 + int(old["metadata"]["resourceVersion"]) if old else 1
        self.objects[(kind, "ns", name)] = {
            "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": str(version)},
            "data": data,
        }

    def put_secret(self, name: str, dsn: str) -> None:
        self.put("Secret", name, {"dsn": base64.b64encode(dsn.encode()).decode()})

    def put_configmap(self, name: str, data: dict[str, str]) -> None:
        self.put("ConfigMap", name, data)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind, meta = manifest["kind"], manifest["metadata"]
        if kind == self.fail_kind:
            raise ApplyError(f"applying {kind} failed")
        self.applied.append((kind, meta["name"]))
        live = {**manifest, "metadata": {**meta, "generation": 1}, "status": {}}
        self.objects[(kind, meta["namespace"], meta["name"])] = live
        return live

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        return self.objects.pop((kind, namespace, name), None) is not None

    def secret_value(self, namespace: str, name: str, key: str) -> SecretValue:
        secret = self.objects.get(("Secret", namespace, name))
        if secret is None:
            raise SecretError(f"Secret {namespace}/{name} not found")
        meta = secret["metadata"]
        value = base64.b64decode(secret["data"][key]).decode()
        return SecretValue(value, f"{meta['uid']}/{meta['resourceVersion']}")

    def put_pod(self, name: str, labels: dict[str, str], **meta: Any) -> None:
        self.pods[name] = {"metadata": {"name": name, "namespace": "ns", "labels": labels, **meta}}

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [
            pod for pod in self.pods.values() if wanted.items() <= pod["metadata"]["labels"].items()
        ]

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> bool:
        pod = self.pods.get(name)
        if pod is None:
            return False
        self.annotated.append((name, annotations))
        pod["metadata"].setdefault("annotations", {}).update(annotations)
        return True
