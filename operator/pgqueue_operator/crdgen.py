"""Generate the ``PgQueueWorker`` CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema 2020-12; a CRD wants a *structural* OpenAPI v3 schema. The conversion
inlines ``$ref``s, turns ``X | None`` into an optional ``X``, maps ``exclusiveMinimum`` to the
OpenAPI 3.0 boolean form and drops titles. ``make generate`` writes it to
``crds/pgqueueworkers.pgqueue.dev.yaml`` (``python -m pgqueue_operator.crdgen`` prints it); ``make
verify`` and ``tests/unit/operator/test_crd.py`` fail when the file drifts.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from pgqueue_operator import GROUP, KIND, PLURAL, VERSION
from pgqueue_operator.conditions import READY
from pgqueue_operator.models import MAX_NAME_LENGTH, PgQueueWorkerSpec, cel
from pgqueue_operator.statusmodels import PgQueueWorkerStatus

HEADER = (
    "# GENERATED from operator/pgqueue_operator/models.py by `make generate`; do not edit.\n"
    "# `make verify` fails when this file and the models disagree.\n"
)

_DROP = {"title"}


def _openapi(node: Any, defs: dict[str, Any]) -> Any:
    """One JSON-Schema node → its structural OpenAPI v3 form (recursive)."""
    if isinstance(node, list):
        return [_openapi(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
        target.update(node)  # siblings of $ref (description, default) win
        return _openapi(target, defs)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        branches = [b for b in any_of if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} in a structural schema")
        merged = dict(branches[0])
        merged.update(node)
        if merged.get("default", 0) is None:
            del merged["default"]
        return _openapi(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _openapi(prop, defs) for name, prop in value.items()}
        elif key in {"items", "additionalProperties"}:
            if value is False:
                continue  # unknown fields are pruned / rejected by the API server anyway
            out[key] = _openapi(value, defs) if isinstance(value, dict) else value
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    return out


def schema_of(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI schema of a model (aliases, i.e. camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    converted: dict[str, Any] = _openapi(raw, defs)
    return converted


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    spec = schema_of(PgQueueWorkerSpec)
    status = schema_of(PgQueueWorkerStatus)
    status["x-kubernetes-preserve-unknown-fields"] = True
    status.pop("required", None)
    root = {
        "type": "object",
        "description": "A fleet of pgqueue workers, tuned from one task time limit.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            cel(
                f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                f"metadata.name must be at most {MAX_NAME_LENGTH} characters (the sweep "
                "CronJob is named <name>-sweep)",
            )
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "pgqueue"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["pqw"],
                "categories": ["pgqueue"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": f'.status.conditions[?(@.type=="{READY}")].status',
                            "description": "The Ready condition.",
                        },
                        {
                            "name": "Replicas",
                            "type": "integer",
                            "jsonPath": ".status.replicas",
                            "description": "Worker pods wanted.",
                        },
                        {
                            "name": "Depth",
                            "type": "integer",
                            "jsonPath": ".status.backlog",
                            "description": "Ready plus in-flight messages.",
                        },
                        {
                            "name": "Gate",
                            "type": "string",
                            "jsonPath": ".status.gate.state",
                            "description": "The gate as last synced (on/off).",
                        },
                        {
                            "name": "Paused-Queues",
                            "type": "string",
                            "jsonPath": ".status.pausedQueues",
                            "description": (
                                "Consumed queues no worker claims from (pgqueue queue pause); "
                                "spec.paused (pods scaled to zero) is the Ready column's Paused."
                            ),
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML text stored in ``crds/``."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
