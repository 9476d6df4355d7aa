"""The ``PgQueueWorker`` spec as pydantic models: the one source of the CRD's spec schema.

``crds/pgqueueworkers.pgqueue.dev.yaml`` is generated from these models, the pod overrides of
:mod:`pgqueue_operator.podmodels` and the status of :mod:`pgqueue_operator.statusmodels`
(see :mod:`pgqueue_operator.crdgen`), so every range, enum, default and description below is what
the API server enforces. Cross-field invariants (architecture §5) are CEL rules attached to the
models with :func:`cel`; :mod:`pgqueue_operator.deriving` checks the same invariants again in
Python, so an API server without CEL still never gets a deployment from an invalid spec.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from pgqueue_operator.modeling import (
    CONFIGMAP_KEY,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    DURATION,
    MODULE_NAME,
    OPEN_OBJECT,
    QUEUE_NAME,
    cel,
)
from pgqueue_operator.modeling import Model as _Model
from pgqueue_operator.modeling import rules as _rules
from pgqueue_operator.podmodels import PodOverrides
from pgqueue_operator.specmodels import (
    Autoscaling,
    DatabaseRef,
    DisruptionBudget,
    GateRef,
    Metrics,
    PeriodicSchedule,
    Retention,
    ServiceMonitorSpec,
    Timing,
)

# Fields are declared one by one, each with its own range, pattern and description, so many look
# alike; that is intentional: each declaration is what `kubectl explain` shows for that field, and
# a shared helper would hide it from the reader of this file.

# Margins of architecture §5, shared by the CEL rules and by deriving.py.
RETENTION_MARGIN_SECONDS = 60.0
"""A reply is kept at least this long after its caller stopped waiting (R ≥ C + margin)."""
MAX_NAME_LENGTH = 46
"""CronJob names are at most 52 characters; the sweep CronJob is ``<name>-sweep``."""

# The spec's parts live in pgqueue_operator.specmodels; they are imported from here as they
# always were.
__all__ = [
    "CONFIGMAP_KEY",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "DURATION",
    "MODULE_NAME",
    "OPEN_OBJECT",
    "QUEUE_NAME",
    "Autoscaling",
    "DatabaseRef",
    "DisruptionBudget",
    "GateRef",
    "Metrics",
    "PeriodicSchedule",
    "PodOverrides",
    "Retention",
    "ServiceMonitorSpec",
    "Timing",
    "cel",
]


_SPEC_RULES = _rules(
    cel(
        "!has(self.retention.resultTtlSeconds) || self.retention.resultTtlSeconds >= "
        "(has(self.timing.callerTimeoutSeconds) ? self.timing.callerTimeoutSeconds "
        f": self.taskTimeLimitSeconds) + {RETENTION_MARGIN_SECONDS}",
        "retention.resultTtlSeconds must be at least the caller timeout (timing."
        "callerTimeoutSeconds, default taskTimeLimitSeconds) plus "
        f"{RETENTION_MARGIN_SECONDS:.0f} seconds",
        ".retention.resultTtlSeconds",
    ),
    cel(
        "!has(self.timing.shutdownGraceSeconds) || "
        "self.timing.shutdownGraceSeconds <= self.taskTimeLimitSeconds",
        "timing.shutdownGraceSeconds must not exceed taskTimeLimitSeconds (a task is killed at "
        "its time limit, so a longer drain only delays shutdown)",
        ".timing.shutdownGraceSeconds",
    ),
    cel(
        "!has(self.timing.heartbeatStalenessSeconds) || "
        "self.timing.heartbeatStalenessSeconds >= 3.0 * self.timing.pollIntervalSeconds",
        "timing.heartbeatStalenessSeconds must be at least 3 × timing.pollIntervalSeconds",
        ".timing.heartbeatStalenessSeconds",
    ),
    cel(
        "self.timing.leaseSeconds >= 3.0 * self.timing.pollIntervalSeconds",
        "timing.leaseSeconds must be at least 3 × timing.pollIntervalSeconds (the lease is "
        "renewed every leaseSeconds/3)",
        ".timing.leaseSeconds",
    ),
)


class PgQueueWorkerSpec(_Model):
    """A fleet of pgqueue workers consuming some queues of one database."""

    model_config = ConfigDict(json_schema_extra=_SPEC_RULES)

    image: str = Field(
        min_length=1,
        max_length=512,
        description="Worker image; its entrypoint is `pgqueue` and it holds the task modules.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy. Default IfNotPresent."
    )
    queues: list[str] = Field(
        min_length=1,
        max_length=64,
        description="Queues to consume.",
        json_schema_extra={"items": {"type": "string", "pattern": QUEUE_NAME, "maxLength": 128}},
    )
    tasks: list[str] = Field(
        min_length=1,
        max_length=64,
        description="Python modules to import so their @task functions register.",
        json_schema_extra={"items": {"type": "string", "pattern": MODULE_NAME, "maxLength": 256}},
    )
    schedules: list[PeriodicSchedule] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Periodic schedules of tasks in the image, besides their @pgqueue.periodic ones; "
            "each tick is enqueued once however many pods run. Default none."
        ),
    )
    concurrency: int = Field(
        default=2, ge=1, le=512, description="Child-process task slots per pod. Default 2."
    )
    pool: Literal["process", "inline"] = Field(
        default="process",
        description=(
            "Where tasks run. process: child-process slots, killed at the time limit. inline: "
            "in the worker process, one at a time, without the hop to a child (short tasks you "
            "trust, like Celery's solo pool); a run is interrupted by a timer at "
            "status.derived.runLimitSeconds = min(T, L/3, H/2). Default process."
        ),
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Worker pods when autoscaling is not set (the scale subresource). Default 1.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scale replicas from the queue backlog instead of `replicas`."
    )
    database: DatabaseRef = Field(description="The Secret holding the Postgres DSN.")
    task_time_limit_seconds: float = Field(
        gt=0,
        le=7 * 86400,
        description=(
            "Hard limit T of one task run, seconds; the other timings derive from it (see "
            "status.derived)."
        ),
    )
    timing: Timing = Field(
        default_factory=Timing,
        description="Overrides of the derived timings.",
        json_schema_extra={"default": {}},
    )
    retention: Retention = Field(
        default_factory=Retention,
        description="Reply and dead-letter retention, and the sweep CronJob.",
        json_schema_extra={"default": {}},
    )
    gate: GateRef | None = Field(
        default=None,
        description="The gate ConfigMap whose value the operator copies into the flag table.",
    )
    paused: bool = Field(
        default=False,
        description="Scale to zero and suspend the sweep, keeping everything else. Default false.",
    )
    migrate: bool = Field(
        default=True,
        description="Run `pgqueue migrate` as an init container of each worker pod. Default true.",
    )
    pod: PodOverrides = Field(
        default_factory=PodOverrides,
        description="Pod overrides: resources, node selection, tolerations, ...",
        json_schema_extra={"default": {}},
    )
    pod_disruption_budget: DisruptionBudget = Field(
        default_factory=DisruptionBudget,
        description="PodDisruptionBudget of the workers.",
        json_schema_extra={"default": {}},
    )
    metrics: Metrics = Field(
        default_factory=Metrics,
        description="Worker metrics port and optional ServiceMonitor.",
        json_schema_extra={"default": {}},
    )
