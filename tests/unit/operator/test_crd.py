"""The CRD file is generated from the models and agrees with them; samples validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pgqueue_operator import crdgen
from pgqueue_operator.deriving import derive
from pgqueue_operator.models import PgQueueWorkerSpec

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "crds" / "pgqueueworkers.pgqueue.dev.yaml"
SAMPLES = sorted((REPO / "crds" / "samples").glob("*.yaml"))


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, prop in (schema.get("properties") or {}).items():
        out += _walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    return out


def test_crd_file_is_generated_from_the_models() -> None:
    assert CRD.read_text() == crdgen.render(), "crds/ is stale: run `make generate`"


def test_crd_names_and_subresources() -> None:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == "pgqueueworkers.pgqueue.dev"
    assert crd["spec"]["names"]["shortNames"] == ["pqw"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Replicas", "Depth", "Gate", "Paused-Queues", "Age"]


def test_every_spec_field_has_a_type_and_a_description() -> None:
    spec = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path, node in _walk(spec):
        if path.endswith("[]"):
            assert "type" in node, path
            continue
        assert node.get("type"), f"spec{path} has no type"
        assert node.get("description"), f"spec{path} has no description"
        assert "$ref" not in node, path
        assert "anyOf" not in node, path


def test_schema_fields_are_exactly_the_model_fields() -> None:
    spec = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    model_fields = {f.alias or name for name, f in PgQueueWorkerSpec.model_fields.items()}
    assert set(spec["properties"]) == model_fields
    assert set(spec["required"]) == {"image", "queues", "tasks", "database", "taskTimeLimitSeconds"}


def test_cel_rules_cover_the_cross_field_invariants() -> None:
    crd = crdgen.crd()
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec_rules = [r["fieldPath"] for r in root["properties"]["spec"]["x-kubernetes-validations"]]
    assert spec_rules == [
        ".retention.resultTtlSeconds",
        ".timing.shutdownGraceSeconds",
        ".timing.heartbeatStalenessSeconds",
        ".timing.leaseSeconds",
    ]
    autoscaling = root["properties"]["spec"]["properties"]["autoscaling"]
    assert (
        autoscaling["x-kubernetes-validations"][0]["rule"] == "self.minReplicas <= self.maxReplicas"
    )
    assert "metadata.name" in root["x-kubernetes-validations"][0]["message"]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_samples_validate_and_derive(sample: Path) -> None:
    body = yaml.safe_load(sample.read_text())
    assert body["kind"] == "PgQueueWorker"
    derive(PgQueueWorkerSpec.model_validate(body["spec"]))


def test_three_samples_exist() -> None:
    assert {s.stem for s in SAMPLES} >= {"minimal", "production", "autoscaled"}
