"""Prometheus series of the worker and the client (architecture §7; the names are a contract).

Labels carry queue, task and outcome names only: never a payload, an argument or a secret. The
worker serves these from its own HTTP endpoint; an application exposes the client series the way
it exposes its other metrics (they live in the default registry).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Worker series live in a registry of their own, served only by the worker's endpoint, so an
# application that imports pgqueue to call tasks does not export idle worker gauges.
WORKER_REGISTRY = CollectorRegistry(auto_describe=True)

# Fine buckets at the low end: an RPC on a healthy database takes milliseconds.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

# Worker series.
TASKS = Counter(
    "pgqueue_tasks",
    "Task runs finished, by outcome (completed, failed, retried, dead_lettered, timed_out, lost, "
    "cancelled).",
    ["queue", "task", "outcome"],
    registry=WORKER_REGISTRY,
)
TASK_DURATION = Histogram(
    "pgqueue_task_duration_seconds",
    "Wall time of one task run in its child process.",
    ["queue", "task"],
    buckets=LATENCY_BUCKETS,
    registry=WORKER_REGISTRY,
)
QUEUE_WAIT = Histogram(
    "pgqueue_queue_wait_seconds",
    "Time from enqueue to the start of the run.",
    ["queue"],
    buckets=LATENCY_BUCKETS,
    registry=WORKER_REGISTRY,
)
RPC_LATENCY = Histogram(
    "pgqueue_rpc_latency_seconds",
    "Time from enqueue to the reply being stored, for request-reply messages.",
    ["queue", "task"],
    buckets=LATENCY_BUCKETS,
    registry=WORKER_REGISTRY,
)
BUSY_SLOTS = Gauge(
    "pgqueue_worker_busy_slots",
    "Child-process slots running a task now.",
    registry=WORKER_REGISTRY,
)
SLOTS = Gauge(
    "pgqueue_worker_slots", "Child-process slots of this worker.", registry=WORKER_REGISTRY
)
LEASE_RENEWALS = Counter(
    "pgqueue_lease_renewals", "Leases extended while their task ran.", registry=WORKER_REGISTRY
)
LEASE_LOST = Counter(
    "pgqueue_lease_lost",
    "Leases found lost (message gone or claimed by another worker) at renewal or ack.",
    registry=WORKER_REGISTRY,
)
CLAIMS_REASSERTED = Counter(
    "pgqueue_claims_reasserted",
    "Claims a Postgres crash had lost (claims commit asynchronously) taken back by the worker "
    "that held them, at its first lease renewal after reconnecting (restart_quarantine).",
    registry=WORKER_REGISTRY,
)
ACKS_REWRITTEN = Counter(
    "pgqueue_acks_rewritten",
    "Acks written again after an outage because their asynchronous commit had been lost "
    "(a Postgres crash within the WAL writer's window; async_acks).",
    registry=WORKER_REGISTRY,
)
HEARTBEAT_AGE = Gauge(
    "pgqueue_heartbeat_age_seconds",
    "Seconds since the supervisor loop last stamped its heartbeat.",
    registry=WORKER_REGISTRY,
)
VACUUMS = Counter(
    "pgqueue_vacuums",
    "VACUUMs of the queue tables this worker ran (--vacuum-interval).",
    registry=WORKER_REGISTRY,
)
PERIODIC_FIRED = Counter(
    "pgqueue_periodic_ticks",
    "Ticks of periodic schedules this worker enqueued (a tick another worker won is not counted).",
    ["schedule"],
    registry=WORKER_REGISTRY,
)
CLAIMS = Counter(
    "pgqueue_worker_claims",
    "Claim statements this worker ran (its polls), per queue, whether they got messages or not "
    "(a paused queue's claims get none).",
    ["queue"],
    registry=WORKER_REGISTRY,
)
DB_ERRORS = Counter(
    "pgqueue_worker_database_errors",
    "Database operations that failed and were retried.",
    ["op"],
    registry=WORKER_REGISTRY,
)

# Client series.
CALL_DURATION = Histogram(
    "pgqueue_call_duration_seconds",
    "Duration of a blocking call as the caller saw it, by outcome (ok, task_error, timeout, "
    "enqueue_error, malformed_reply, cancelled).",
    ["task", "outcome"],
    buckets=LATENCY_BUCKETS,
)
GATE_DECISIONS = Counter(
    "pgqueue_gate_decisions",
    "Routing decisions of the gate, by route (pg, fallback) and reason (enabled, disabled, "
    "killswitch, error).",
    ["route", "reason"],
)
