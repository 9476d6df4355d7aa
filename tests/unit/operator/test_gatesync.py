"""Reading the gate ConfigMap, fail-closed."""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue_operator import gatesync
from pgqueue_operator.models import GateRef

REF = GateRef(config_map_name="gate")


def configmap(value: str | None, rv: str = "42") -> dict[str, object]:
    data = {} if value is None else {"pg_queue_enabled": value}
    return {"metadata": {"name": "gate", "resourceVersion": rv}, "data": data}


@pytest.mark.parametrize(
    ("value", "enabled"), [("true", True), ("ON", True), ("1", True), ("off", False), ("", False)]
)
def test_parseable_values(value: str, enabled: bool) -> None:
    reading = gatesync.read(configmap(value), REF, "ns")
    assert reading.enabled is enabled
    assert reading.problem == ""
    assert reading.source == "configmap ns/gate@42"
    assert gatesync.condition_of(reading).status == "True"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (configmap("maybe"), "GateValueInvalid"),
        (configmap(None), "GateKeyNotFound"),
        (None, "GateConfigMapNotFound"),
    ],
)
def test_anything_else_is_off_with_a_problem(body: dict[str, object] | None, problem: str) -> None:
    reading = gatesync.read(body, REF, "ns")
    assert reading.enabled is False
    assert reading.problem == problem
    condition = gatesync.condition_of(reading)
    assert (condition.status, condition.reason) == ("False", problem)


def test_status_of_reading() -> None:
    reading = gatesync.read(configmap("on"), REF, "ns")
    status = gatesync.status_of(reading, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert status == {
        "enabled": True,
        "value": "on",
        "state": "on",
        "source": "configmap ns/gate@42",
        "syncedAt": "2026-01-01T00:00:00Z",
    }
