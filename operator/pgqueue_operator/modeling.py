"""What every spec model shares: the base model, name patterns and the CEL helpers.

The models are the one source of the CRD schema (:mod:`pgqueue_operator.crdgen`), so a pattern
here is enforced twice: by pydantic when the operator parses a spec, and by the API server when a
user applies one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUEUE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
CONFIGMAP_KEY = r"^[-._a-zA-Z0-9]+$"
DURATION = r"^[0-9]+(ms|s|m|h)$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
"""An environment variable name as the API server accepts it (a relaxed C identifier)."""


def cel(
    rule: str, message: str, field_path: str | None = None, message_expression: str | None = None
) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``field_path`` names the field in the error.

    ``message_expression`` (CEL, evaluated on failure) can quote the offending value; ``message``
    stays as the fallback of API servers that cannot evaluate it.
    """
    entry = {"rule": rule, "message": message}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(entries)}


OPEN_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
"""Schema of pass-through Kubernetes objects (resources, affinity, a toleration)."""


def list_map(key: str) -> dict[str, Any]:
    """A list the API server keeps unique by ``key`` (``x-kubernetes-list-type: map``)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


class Model(BaseModel):
    """Frozen, camelCase aliases, unknown fields rejected (a typo is an error, not a no-op)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class OpenModel(BaseModel):
    """A Kubernetes object passed through as given: its name is checked, the rest is kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    def manifest(self) -> dict[str, Any]:
        """The object as the Kubernetes API spells it (camelCase, unknown fields kept)."""
        return self.model_dump(by_alias=True, exclude_none=True)
