"""Scale-in takes idle workers first, with real worker pods on a real kubelet (issue 20).

Four worker pods of one slot each run on the test node (tests/support/node.py); two of them take
a long call each. The operator's pod-deletion-cost annotations (from the workers' own registry
heartbeats) must make the ReplicaSet controller remove the two idle pods when the PgQueueWorker is
scaled to 2, and both long calls must finish on their first attempt, on the pods that claimed them.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml
from tests.support.pods import describe, pods_left, ready_workers, worker_pods
from tests.support.polling import eventually

from pgqueue import Client
from pgqueue_operator.deletioncost import ANNOTATION

if TYPE_CHECKING:
    from tests.support.node import KubeNode, NodeImages
    from tests.support.operator_fixtures import OperatorProcess

    from devtools.kubeapi import KubeCluster

pytest_plugins = [
    "tests.support.kube",
    "tests.support.operator_fixtures",
    "tests.support.node",
]
pytestmark = pytest.mark.timeout(1500)

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "minimal.yaml"
NAME = "minimal"
LONG_TASK = 45.0


def costs(kube: KubeCluster, ns: str) -> dict[str, str | None]:
    return {
        p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(ANNOTATION)
        for p in worker_pods(kube, ns, NAME)
    }


class Claims:
    """Every (msg_id, claimed_by, read_ct) the message table shows while it watches."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.seen: set[tuple[int, str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(0.2):  # a sampling period, not a synchronisation
                rows = conn.execute(
                    "SELECT msg_id, claimed_by, read_ct FROM pgqueue.message"
                    " WHERE claimed_by IS NOT NULL"
                ).fetchall()
                self.seen.update((int(m), str(c), int(r)) for m, c, r in rows)

    def __enter__(self) -> Claims:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def holders(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for msg_id, pod, _ in self.seen:
            out.setdefault(msg_id, set()).add(pod)
        return out


@pytest.fixture
def four_workers(
    kube: KubeCluster,
    kube_node: KubeNode,
    node_images_imported: NodeImages,
    kube_namespace: str,
    pg_dsn: str,
    operator_process: OperatorProcess,
) -> Iterator[str]:
    ns = kube_namespace
    kube.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    kube.kubectl("-n", ns, "create", "secret", "generic", "pgqueue-db",
                 f"--from-literal=dsn={kube_node.pod_dsn(pg_dsn)}")  # fmt: skip
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    body["spec"].update(
        image=node_images_imported.worker,
        imagePullPolicy="Never",
        tasks=["pgqueue.demo_tasks"],
        replicas=4,
        concurrency=1,  # one slot, no prefetch: each pod takes at most one long call
        taskTimeLimitSeconds=120,
    )
    kube.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))
    # A sweep runs beside the workers, as its CronJob makes one every few minutes: its pod
    # carries the instance label too, and must count neither as a worker nor in a scale-in.
    eventually(
        "the sweep CronJob",
        lambda: (
            kube.kubectl("-n", ns, "get", "cronjob", f"{NAME}-sweep", check=False).returncode == 0
        ),
    )
    kube.kubectl("-n", ns, "create", "job", "sweep-now", f"--from=cronjob/{NAME}-sweep")
    eventually(
        "4 worker pods Ready",
        lambda: ready_workers(kube, ns, NAME, 4),
        300,
        explain=lambda: describe(kube, ns),
    )
    try:
        yield ns
    finally:
        kube.kubectl("-n", ns, "delete", "pqw", NAME, "--timeout=120s", check=False)
        eventually("the worker pods gone", lambda: not pods_left(kube, ns), 180)


def test_scale_in_removes_the_idle_pods_and_the_long_tasks_finish_first_time(
    kube: KubeCluster, four_workers: str, pg_dsn: str
) -> None:
    ns = four_workers
    with (
        Client(pg_dsn) as client,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
        Claims(pg_dsn) as claims,
    ):
        futures = [
            pool.submit(client.call, "demo.sleep", args=[LONG_TASK], timeout=240) for _ in range(2)
        ]

        def two_busy_two_idle() -> tuple[list[str], list[str]] | None:
            found = costs(kube, ns)
            busy = sorted(p for p, c in found.items() if c == "2")
            idle = sorted(p for p, c in found.items() if c == "0")
            return (busy, idle) if len(busy) == 2 and len(idle) == 2 else None

        t0 = time.monotonic()
        busy, idle = eventually("2 pods costed busy and 2 idle", two_busy_two_idle, 60)
        print(f"\ncosts {costs(kube, ns)} {time.monotonic() - t0:.1f}s after the calls")
        holders = claims.holders()
        assert sorted(p for pods in holders.values() for p in pods) == busy, holders

        kube.kubectl("-n", ns, "scale", "pqw", NAME, "--replicas=2")

        def two_left() -> list[str] | None:
            names = sorted(p["metadata"]["name"] for p in worker_pods(kube, ns, NAME))
            return names if len(names) == 2 else None

        survivors = eventually("2 pods left", two_left, 120, explain=lambda: describe(kube, ns))
        assert survivors == busy, (survivors, busy, idle)
        left = time.monotonic() - t0
        assert not any(f.done() for f in futures), "the calls ended before the scale-in"

        results = [f.result(timeout=240) for f in futures]

    bad = [r for r in results if not r.ok]
    assert not bad, bad
    assert [r.value for r in results] == [LONG_TASK, LONG_TASK]
    # First attempt: each message was only ever claimed once, by the pod that kept running.
    assert {read_ct for _, _, read_ct in claims.seen} == {1}, claims.seen
    assert all(len(pods) == 1 for pods in claims.holders().values()), claims.seen
    for pod in busy:
        logs = kube.kubectl("-n", ns, "logs", pod, "-c", "worker").stdout
        assert "received SIGTERM" not in logs, logs
    sweep = json.loads(
        kube.kubectl("-n", ns, "get", "pods", "-l", "job-name=sweep-now", "-o", "json").stdout
    )["items"]
    assert [p["status"]["phase"] for p in sweep] == ["Succeeded"], describe(kube, ns)
    assert ANNOTATION not in (sweep[0]["metadata"].get("annotations") or {})
    print(f"scaled 4 -> 2: removed {idle}, kept {busy} (busy); {left:.1f}s from the calls")
