"""The operator's few verbs over the Kubernetes API, on plain dicts.

Children are written with server-side apply (field manager ``pgqueue-operator``, forced): one
idempotent request creates or updates, returns the live object, and changes nothing when nothing
differs, so reconciles are level-based and a restart mid-reconcile cannot duplicate anything.
Secret values are returned to the caller and never logged; Secrets are only ever read by name
(``get``), never listed or watched, so the operator needs no cluster-wide read of Secrets.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from pgqueue_operator import GROUP, PLURAL, VERSION
from pgqueue_operator.errors import AccessError, ApplyError, SecretError
from pgqueue_operator.verbs import SecretValue

__all__ = ["FIELD_MANAGER", "Kube", "NotFound", "SecretValue", "path_of"]

FIELD_MANAGER = "pgqueue-operator"
REQUEST_TIMEOUT = (5.0, 15.0)

_COLLECTIONS: dict[tuple[str, str], str] = {
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("batch/v1", "CronJob"): "/apis/batch/v1/namespaces/{ns}/cronjobs",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors"
    ),
    (f"{GROUP}/{VERSION}", "PgQueueWorker"): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}",
}


class NotFound(Exception):
    """The object (or its kind) does not exist."""


def path_of(api_version: str, kind: str, namespace: str, name: str) -> str:
    return _COLLECTIONS[(api_version, kind)].format(ns=namespace) + f"/{name}"


class Kube:
    """A thin dict-in, dict-out client over one ``kubernetes.client.ApiClient``.

    It implements :class:`~pgqueue_operator.verbs.ChildVerbs` and
    :class:`~pgqueue_operator.verbs.PodVerbs`, and the status patch and raw
    requests the handlers and the tests use.
    """

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; 404 raises :class:`NotFound`, other errors ``ApiException``."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, payload, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method, url, header_params=headers, body=payload, post_params=post,
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        data = response.read()  # type: ignore[no-untyped-call]
        if response.status == 404:
            raise NotFound(path)
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, body=data)
        if not data:
            return {}
        decoded: dict[str, Any] = json.loads(data)
        return decoded

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path_of(api_version, kind, namespace, name))
        except NotFound:
            return None

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; returns the live object."""
        meta = manifest["metadata"]
        path = path_of(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        try:
            return self.request(
                "PATCH",
                path,
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                body=manifest,
                content_type="application/apply-patch+yaml",
            )
        except NotFound as exc:  # the kind itself is missing (e.g. no ServiceMonitor CRD)
            raise ApplyError(f"{manifest['kind']} is not served by this cluster") from exc
        except ApiException as exc:
            raise ApplyError(
                f"applying {manifest['kind']} {meta['namespace']}/{meta['name']} failed: "
                f"{exc.status} {_api_message(exc)}"
            ) from exc

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete if present; True when something was deleted. A missing kind counts as absent."""
        try:
            self.request("DELETE", path_of(api_version, kind, namespace, name))
        except NotFound:
            return False
        return True

    def secret_value(self, namespace: str, name: str, key: str) -> SecretValue:
        """One decoded Secret key; :class:`SecretError` names what is missing (never the value)."""
        try:
            secret = self.get("v1", "Secret", namespace, name)
        except ApiException as exc:  # 403: this operator's RBAC does not cover the Secret
            raise SecretError(
                f"Secret {namespace}/{name} cannot be read: {exc.status} {_api_message(exc)}"
            ) from None
        if secret is None:
            raise SecretError(f"Secret {namespace}/{name} not found")
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise SecretError(f"Secret {namespace}/{name} has no key {key!r}")
        try:
            value = base64.b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SecretError(f"Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None
        meta = secret.get("metadata") or {}
        return SecretValue(value, f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}")

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching a label selector (one page: a fleet is far below the API's limit)."""
        path = _COLLECTIONS[("v1", "Pod")].format(ns=namespace)
        listed = self.request("GET", path, query=[("labelSelector", selector)])
        return list(listed.get("items") or [])

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> bool:
        """Merge-patch a pod's annotations (only those keys); False when the pod is gone."""
        try:
            self.request(
                "PATCH",
                path_of("v1", "Pod", namespace, name),
                body={"metadata": {"annotations": annotations}},
                content_type="application/merge-patch+json",
            )
        except NotFound:
            return False
        return True

    def check_access(self, namespaces: list[str], *, all_namespaces: bool) -> None:
        """List one PgQueueWorker in each watched scope; :class:`AccessError` says which failed
        and why (no route to the API server, credentials, RBAC, or the CRD not installed)."""
        collection = f"/apis/{GROUP}/{VERSION}"
        paths = (
            [f"{collection}/{PLURAL}"]
            if all_namespaces
            else [f"{collection}/namespaces/{ns}/{PLURAL}" for ns in namespaces]
        )
        for path in paths:
            try:
                self.request("GET", path, query=[("limit", "1")])
            except NotFound:
                raise AccessError(f"GET {path}: 404, is the PgQueueWorker CRD installed?") from None
            except ApiException as exc:
                raise AccessError(f"GET {path}: {exc.status} {_api_message(exc)}") from None
            except Exception as exc:  # urllib3's connection errors: no route, refused, TLS
                raise AccessError(f"GET {path}: {type(exc).__name__}: {exc}") from None

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str = ""
    ) -> None:
        """Merge-patch the status subresource of a PgQueueWorker (gone: ignored). With a
        ``resource_version`` the write is refused (409) if the object changed since it was read:
        a patch computed from a stale read must not put back the conditions it did not see."""
        path = path_of(f"{GROUP}/{VERSION}", "PgQueueWorker", namespace, name) + "/status"
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        with contextlib.suppress(NotFound):
            self.request("PATCH", path, body=body, content_type="application/merge-patch+json")


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "").get("message", exc.reason))
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
