"""Scale-in takes idle workers first (issue 20): the operator keeps each worker pod's
``controller.kubernetes.io/pod-deletion-cost`` in step with the worker registry, against a real
API server, a real controller-manager and a real Postgres.

There is no kubelet here: the pods stay unscheduled, and the registry rows are written with the
worker's own registry calls under each pod's name (what ``PGQUEUE_WORKER_ID`` resolves to in a
pod). Unscheduled pods rank equal in every other respect, so the ReplicaSet controller's choice on
scale-in is the cost alone. Real worker pods on a real kubelet: tests/k8s/test_node_scale_in.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import yaml
from tests.support.pods import worker_pods
from tests.support.polling import eventually

from pgqueue import registry
from pgqueue_operator.deletioncost import ANNOTATION

if TYPE_CHECKING:
    from tests.support.operator_fixtures import OperatorProcess

    from devtools.kubeapi import KubeCluster

pytest_plugins = ["tests.support.kube", "tests.support.operator_fixtures"]

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "minimal.yaml"
NAME = "minimal"


def costs(kube: KubeCluster, ns: str) -> dict[str, str | None]:
    """Each live worker pod's deletion cost (None: not annotated)."""
    return {
        p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(ANNOTATION)
        for p in worker_pods(kube, ns, NAME)
    }


def expect(kube: KubeCluster, ns: str, wanted: dict[str, str], timeout: float = 30.0) -> None:
    eventually(f"deletion costs {wanted}", lambda: costs(kube, ns) == wanted, timeout)


def worker(pod: str) -> registry.WorkerInfo:
    return registry.WorkerInfo(pod, ("default",), slots=4, host=pod)


def hold_fresh(conn: psycopg.Connection[Any], *pods: str) -> None:
    """Date these pods' heartbeats an hour ahead: nothing beats for them while the test polls
    kubectl and the operator, and a slow machine must not age them past ``STALE_AFTER`` (15 s)
    before an expectation that takes them for fresh."""
    conn.execute(
        "UPDATE pgqueue.worker SET heartbeat_at = now() + interval '1 hour'"
        " WHERE worker_id = ANY(%s)",
        (list(pods),),
    )


def test_costs_follow_the_registry_and_scale_in_removes_the_idle_pods(
    kube: KubeCluster, kube_namespace: str, pg_dsn: str, operator_process: OperatorProcess
) -> None:
    ns = kube_namespace
    kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db",
                 f"--from-literal=dsn={pg_dsn}")  # fmt: skip
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    body["spec"]["replicas"] = 4
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))

    # No heartbeat yet: every pod is unknown (1), never taken for idle.
    def four_annotated() -> dict[str, str | None] | None:
        found = costs(kube, ns)
        return found if len(found) == 4 and all(found.values()) else None

    first = eventually("4 pods, each annotated", four_annotated, 60)
    assert set(first.values()) == {"1"}, first
    idle, busy, stale, silent = sorted(first)

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for pod in (idle, busy, stale):
            assert registry.register(conn, worker(pod))
        assert registry.beat(conn, worker(busy), 2)
        hold_fresh(conn, idle, busy, stale)
        expect(kube, ns, {idle: "0", busy: "3", stale: "0", silent: "1"})

        # A heartbeat that stops is unknown again, whatever it last said.
        conn.execute(
            "UPDATE pgqueue.worker SET heartbeat_at = now() - interval '1 minute'"
            " WHERE worker_id = %s",
            (stale,),
        )
        expect(kube, ns, {idle: "0", busy: "3", stale: "1", silent: "1"})
        assert registry.beat(conn, worker(busy), 1)
        hold_fresh(conn, busy)
        expect(kube, ns, {idle: "0", busy: "2", stale: "1", silent: "1"})

        # Scale in by one: the idle pod goes; by two more: the unknown ones, never the busy one.
        kube.kubectl("-n", ns, "scale", "pqw", NAME, "--replicas=3")
        expect(kube, ns, {busy: "2", stale: "1", silent: "1"})
        kube.kubectl("-n", ns, "scale", "pqw", NAME, "--replicas=1")
        expect(kube, ns, {busy: "2"})

        # Its worker deregisters at a clean stop: the pod is unknown again.
        assert registry.deregister(conn, busy)
        expect(kube, ns, {busy: "1"})

    log = operator_process.logs()
    assert "deletion costs" not in log or "not updated" not in log, log
    assert "Traceback" not in log, log
