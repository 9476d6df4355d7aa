"""The depth sampler: the summary of the core's stats, the metrics, one sample over a fake of the
Kubernetes verbs (reading a live database's depth is covered by tests/faults and tests/k8s)."""

from __future__ import annotations

import pytest

from pgqueue import QueueStats
from pgqueue_operator import metrics
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.decisions import Result
from pgqueue_operator.depth import Depth, backlog, paused, summarise
from pgqueue_operator.sampling import Sampler
from tests.unit.operator.fakekube import UNREACHABLE_DSN, FakeKube
from tests.unit.operator.samples import body


def test_summarise_keeps_spec_order_and_zero_fills() -> None:
    stats = [
        QueueStats("other", 9, 9, 9, 9, 9.0),
        QueueStats("b", 10, 2, 3, 4, 1.5),
    ]
    depths = summarise(stats, ["a", "b"])
    assert depths == [Depth("a", 0, 0, 0, 0, 0.0), Depth("b", 10, 2, 3, 4, 1.5)]
    assert backlog(depths) == 12
    assert depths[1].as_status() == {
        "queue": "b",
        "ready": 10,
        "inFlight": 2,
        "delayed": 3,
        "dead": 4,
        "oldestAgeSeconds": 1.5,
        "paused": False,
    }


def test_paused_queues_are_named_in_spec_order_and_exported() -> None:
    stats = [
        QueueStats("c", 1, 0, 0, 0, 0.0, paused=True),
        QueueStats("a", 0, 0, 0, 0, 0.0, paused=True),
        QueueStats("b", 5, 0, 0, 0, 0.0),
        QueueStats("not-ours", 0, 0, 0, 0, 0.0, paused=True),
    ]
    depths = summarise(stats, ["c", "b", "a", "d"])
    assert [d.paused for d in depths] == [True, False, True, False]
    assert depths[0].as_status()["paused"] is True
    assert paused(depths) == "c,a"
    assert paused(summarise(stats, ["b"])) == ""
    # A paused queue's ready messages need no slot: the autoscaler must not scale up for them;
    # what is in flight still holds a slot and counts.
    held = [QueueStats("c", 7, 2, 0, 0, 0.0, paused=True), QueueStats("b", 5, 1, 0, 0, 0.0)]
    assert backlog(summarise(held, ["c", "b"])) == 2 + 5 + 1

    from prometheus_client import generate_latest

    metrics.record_depth("ns", "pausing", depths)
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'pgqueue_queue_paused{namespace="ns",pgqueueworker="pausing",queue="c"} 1.0' in text
    assert 'pgqueue_queue_paused{namespace="ns",pgqueueworker="pausing",queue="b"} 0.0' in text
    metrics.forget("ns", "pausing")
    assert 'pgqueueworker="pausing"' not in generate_latest(metrics.REGISTRY).decode()


def test_deleted_workers_series_are_removed_and_not_revived_by_a_late_sample() -> None:
    def series() -> str:
        from prometheus_client import generate_latest

        return generate_latest(metrics.REGISTRY).decode()

    depth = [Depth("q", 5, 1, 0, 2, 3.0)]
    metrics.record_depth("ns", "gone", depth)
    metrics.record_gate("ns", "gone", enabled=True)
    metrics.GATE_FLIPS.labels("ns", "gone", "on").inc()
    assert (
        'pgqueue_queue_depth{namespace="ns",pgqueueworker="gone",queue="q",state="ready"} 5.0'
        in series()
    )
    metrics.forget("ns", "gone")
    metrics.record_depth("ns", "gone", depth)  # a sample that was already running
    assert 'pgqueueworker="gone"' not in series()
    metrics.revive("ns", "gone")  # created again under the same name
    metrics.record_depth("ns", "gone", depth)
    assert 'pgqueueworker="gone"' in series()
    metrics.forget("ns", "gone")


def test_a_missing_secret_or_an_invalid_spec_samples_nothing() -> None:
    sampler = Sampler(FakeKube(), Deadlines(10.0))
    assert sampler.sample(body()) == Result(retry="Secret ns/db not found")
    assert sampler.sample(body(queues=[])) == Result()  # the reconcile reports it


@pytest.mark.parametrize("autoscaling", [None, {"maxReplicas": 4}])
def test_an_unreachable_database_is_retried_without_the_dsn(
    autoscaling: dict[str, int] | None,
) -> None:
    sampler = Sampler(FakeKube({"db": UNREACHABLE_DSN}), Deadlines(10.0))
    result = sampler.sample(body(autoscaling=autoscaling))
    assert result == Result(retry="reading queue depth failed: OperationalError")
