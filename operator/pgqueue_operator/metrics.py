"""The operator's Prometheus metrics (architecture §7): queue depth, oldest age, dead letters,
paused queues, the gate.

Names are the contract; each series also carries ``namespace`` and ``pgqueueworker`` so two fleets
with a queue of the same name never collide. Labels are queue names and object names only: never a
DSN, a secret, or a payload. Series of a deleted PgQueueWorker are removed with :func:`forget`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from pgqueue_operator.depth import Depth

REGISTRY = CollectorRegistry(auto_describe=True)
_OWNER = ("namespace", "pgqueueworker")

# Each series declared in full, alike on purpose: its name, help and labels are the contract.

QUEUE_DEPTH = Gauge(
    "pgqueue_queue_depth",
    "Messages per queue and state (ready, in_flight, delayed, dead) at the last sample.",
    [*_OWNER, "queue", "state"],
    registry=REGISTRY,
)
OLDEST_AGE = Gauge(
    "pgqueue_queue_oldest_age_seconds",
    "Age of the oldest ready message per queue at the last sample, seconds.",
    [*_OWNER, "queue"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "pgqueue_dead_letter_depth",
    "Dead letters per queue at the last sample.",
    [*_OWNER, "queue"],
    registry=REGISTRY,
)
QUEUE_PAUSED = Gauge(
    "pgqueue_queue_paused",
    "1 when no worker claims from the queue (pgqueue queue pause), else 0, at the last sample.",
    [*_OWNER, "queue"],
    registry=REGISTRY,
)
GATE_ENABLED = Gauge(
    "pgqueue_gate_enabled",
    "1 when the gate was last written as on, 0 when off.",
    list(_OWNER),
    registry=REGISTRY,
)
DESIRED_REPLICAS = Gauge(
    "pgqueue_operator_desired_replicas",
    "Worker replicas the operator last set.",
    list(_OWNER),
    registry=REGISTRY,
)
GATE_FLIPS = Counter(
    "pgqueue_operator_gate_flips_total",
    "Gate flips written into a database.",
    [*_OWNER, "state"],
    registry=REGISTRY,
)
SYNC_ERRORS = Counter(
    "pgqueue_operator_errors_total",
    "Reconcile, gate-sync, sampling and pod deletion-cost errors, by stage.",
    [*_OWNER, "stage"],
    registry=REGISTRY,
)

STAGES = ("reconcile", "gate", "sample", "costs")
_lock = threading.Lock()
_queues: dict[tuple[str, str], set[str]] = {}
_forgotten: set[tuple[str, str]] = set()
"""Deleted PgQueueWorkers: a sample still in flight when the object went must not revive them."""


def revive(namespace: str, name: str) -> None:
    """A PgQueueWorker of this name exists (again): record its series."""
    with _lock:
        _forgotten.discard((namespace, name))


def record_depth(namespace: str, name: str, depths: Iterable[Depth]) -> None:
    depths = list(depths)
    with _lock:
        if (namespace, name) in _forgotten:
            return
        previous = _queues.get((namespace, name), set())
        current = {d.queue for d in depths}
        for gone in previous - current:
            _remove_queue(namespace, name, gone)
        _queues[(namespace, name)] = current
        _set_depths(namespace, name, depths)


def _set_depths(namespace: str, name: str, depths: list[Depth]) -> None:
    for d in depths:
        for state, value in (
            ("ready", d.ready),
            ("in_flight", d.in_flight),
            ("delayed", d.delayed),
            ("dead", d.dead),
        ):
            QUEUE_DEPTH.labels(namespace, name, d.queue, state).set(value)
        OLDEST_AGE.labels(namespace, name, d.queue).set(d.oldest_age_seconds)
        DEAD_LETTERS.labels(namespace, name, d.queue).set(d.dead)
        QUEUE_PAUSED.labels(namespace, name, d.queue).set(1 if d.paused else 0)


def record_gate(namespace: str, name: str, *, enabled: bool) -> None:
    with _lock:
        if (namespace, name) in _forgotten:
            return
        GATE_ENABLED.labels(namespace, name).set(1 if enabled else 0)


def record_desired(namespace: str, name: str, replicas: int) -> None:
    with _lock:
        if (namespace, name) in _forgotten:
            return
        DESIRED_REPLICAS.labels(namespace, name).set(replicas)


def _remove_queue(namespace: str, name: str, queue: str) -> None:
    for state in ("ready", "in_flight", "delayed", "dead"):
        _discard(QUEUE_DEPTH, namespace, name, queue, state)
    _discard(OLDEST_AGE, namespace, name, queue)
    _discard(DEAD_LETTERS, namespace, name, queue)
    _discard(QUEUE_PAUSED, namespace, name, queue)


def _discard(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted PgQueueWorker."""
    with _lock:
        _forgotten.add((namespace, name))
        queues = _queues.pop((namespace, name), set())
        for queue in queues:
            _remove_queue(namespace, name, queue)
        _discard(GATE_ENABLED, namespace, name)
        _discard(DESIRED_REPLICAS, namespace, name)
        for state in ("on", "off"):
            _discard(GATE_FLIPS, namespace, name, state)
        for stage in STAGES:
            _discard(SYNC_ERRORS, namespace, name, stage)
