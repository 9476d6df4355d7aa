"""Reading the gate ConfigMap, fail-closed; one sync over a fake of the Kubernetes verbs.

Writing the flag into a live database is covered by tests/faults/test_operator_database.py and
tests/k8s/test_operator.py; here the database is one nothing listens on.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue_operator import gatesync
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.decisions import Result
from pgqueue_operator.gatesync import GateSync
from pgqueue_operator.models import GateRef
from tests.unit.operator.fakekube import UNREACHABLE_DSN, FakeKube
from tests.unit.operator.samples import body

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


def sync(kube: FakeKube, **spec: object) -> Result:
    return GateSync(kube, Deadlines(10.0)).sync(body(**spec))


GATE = {"configMapName": "gate"}


def test_a_fleet_without_a_gate_or_with_an_invalid_spec_decides_nothing() -> None:
    kube = FakeKube({"db": UNREACHABLE_DSN})
    for result in (sync(kube), sync(kube, gate=GATE, queues=[])):
        assert result == Result()


def test_a_missing_secret_is_gate_synced_false_and_retried() -> None:
    kube = FakeKube()
    kube.put_configmap("gate", {"pg_queue_enabled": "on"})
    result = sync(kube, gate=GATE)
    (change,) = result.changes
    assert (change.type, change.status, change.reason) == ("GateSynced", "False", "SecretNotFound")
    assert result.retry == "Secret ns/db not found"
    assert result.status == {}
    assert result.events == []


@pytest.mark.parametrize("configmap", [{"pg_queue_enabled": "on"}, None])
def test_an_unreachable_database_is_gate_synced_false_without_the_dsn(
    configmap: dict[str, str] | None,
) -> None:
    kube = FakeKube({"db": UNREACHABLE_DSN})
    if configmap is not None:
        kube.put_configmap("gate", configmap)
    result = sync(kube, gate=GATE)
    (change,) = result.changes
    assert (change.type, change.status, change.reason) == (
        "GateSynced",
        "False",
        "DatabaseUnavailable",
    )
    assert result.retry == "writing the gate flag failed: OperationalError"
    assert "S3cretPassw0rd" not in repr(result)
    assert result.events == []  # a Warning about the gate comes once it has been written
