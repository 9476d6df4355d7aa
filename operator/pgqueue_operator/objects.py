"""Reading a PgQueueWorker: its spec model, its owner reference, a reference for Events, its DSN.

Shared by the reconciler, the gate sync and the depth sampler, each of which is handed the body
kopf (or the API) gave it. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from pgqueue_operator import API_VERSION, KIND
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.errors import InvalidSpecError
from pgqueue_operator.models import PgQueueWorkerSpec
from pgqueue_operator.verbs import KubeVerbs, SecretValue


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """A minimal body kopf can post Events about."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


def parse_spec(spec: Mapping[str, Any]) -> PgQueueWorkerSpec:
    """The spec model; :class:`InvalidSpecError` names the first bad field."""
    try:
        return PgQueueWorkerSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise InvalidSpecError(where, first["msg"]) from None


def spec_of(body: Mapping[str, Any]) -> PgQueueWorkerSpec:
    """:func:`parse_spec` of the body's spec (an absent spec is an empty one)."""
    return parse_spec(body.get("spec") or {})


def database_secret(kube: KubeVerbs, owner: Owner, spec: PgQueueWorkerSpec) -> SecretValue:
    """The DSN from the spec's Secret, read by name on every call (that is how a rotation is seen).

    :class:`~pgqueue_operator.errors.SecretError` names what is missing, never the value.
    """
    return kube.secret_value(owner.namespace, spec.database.secret_name, spec.database.key)
