"""The operator's database calls under a partition: handlers return by their deadline.

The gate sync and the depth sampler talk to the PgQueueWorker's Postgres from the operator's
handler threads. With the network to it stalled (a real TCP proxy, :mod:`tests.support.faultproxy`)
each handler must come back by ``database_timeout`` with a retry and a clear reason, must not
stack another stuck call while the first is still out, and must recover once traffic flows.
"""

from __future__ import annotations

import time
from typing import Any

from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.gatesync import GateSync
from pgqueue_operator.sampling import Sampler
from pgqueue_operator.verbs import SecretValue
from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer

DEADLINE = 1.0


class Kube:
    """The reads the gate sync and the sampler make (``KubeVerbs``): the Secret and the gate."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def secret_value(self, namespace: str, name: str, key: str) -> SecretValue:
        return SecretValue(self.dsn, "uid/1")

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "ConfigMap", kind
        return {"metadata": {"resourceVersion": "7"}, "data": {"pg_queue_enabled": "true"}}


def body() -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {
            "image": "worker:dev",
            "queues": ["default"],
            "tasks": ["app.tasks"],
            "database": {"secretName": "db"},
            "taskTimeLimitSeconds": 60,
            "gate": {"configMapName": "gate"},
        },
    }


def test_a_stalled_database_never_holds_a_handler_past_its_deadline(
    pg_server: PgServer, pg_dsn: str, proxy_factory: object
) -> None:
    proxy: FaultProxy = proxy_factory(pg_server.host, pg_server.port)  # type: ignore[operator]
    kube, deadlines = Kube(proxy.dsn_for(pg_dsn)), Deadlines(DEADLINE)
    sampler, gates = Sampler(kube, deadlines), GateSync(kube, deadlines)
    assert sampler.sample(body()).retry is None  # traffic flows: depth is read
    assert gates.sync(body()).retry is None

    proxy.stall()
    t0 = time.monotonic()
    sampled = sampler.sample(body())
    took = time.monotonic() - t0
    print(f"\nsample with the database partitioned returned in {took:.2f}s")
    assert sampled.retry == f"reading queue depth: no answer within {DEADLINE:g} s"
    assert took < DEADLINE + 5  # the deadline and thread start-up, on a busy machine
    gate = gates.sync(body())
    assert gate.retry == f"writing the gate flag: no answer within {DEADLINE:g} s"
    (change,) = gate.changes
    assert (change.type, change.status, change.reason) == (
        "GateSynced",
        "False",
        "DatabaseUnavailable",
    )

    # The stuck call is still out (bounded by the connection's own timeouts): the next sample
    # says so at once rather than leaving a second thread stuck behind it.
    t1 = time.monotonic()
    again = sampler.sample(body())
    if again.retry is not None and "previous attempt" in again.retry:
        assert time.monotonic() - t1 < DEADLINE

    proxy.resume()
    deadline = time.monotonic() + 60
    while (retry := sampler.sample(body()).retry) is not None:
        assert time.monotonic() < deadline, f"the sampler never recovered: {retry}"
        time.sleep(0.2)  # poll interval of a deadline loop
    assert gates.sync(body()).retry is None
