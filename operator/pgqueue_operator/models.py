"""The ``PgQueueWorker`` spec as pydantic models: the one source of the CRD's spec schema.

``crds/pgqueueworkers.pgqueue.dev.yaml`` is generated from these models, the pod overrides of
:mod:`pgqueue_operator.podmodels` and the status of :mod:`pgqueue_operator.statusmodels`
(see :mod:`pgqueue_operator.crdgen`), so every range, enum, default and description below is what
the API server enforces. Cross-field invariants (architecture §5) are CEL rules attached to the
models with :func:`cel`; :mod:`pgqueue_operator.deriving` checks the same invariants again in
Python, so an API server without CEL still never gets a deployment from an invalid spec.
"""

from __future__ import annotations

from typing import Any, Literal

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

# Fields are declared one by one, each with its own range, pattern and description, so many look
# alike; that is intentional: each declaration is what `kubectl explain` shows for that field, and
# a shared helper would hide it from the reader of this file.

# Margins of architecture §5, shared by the CEL rules and by deriving.py.
RETENTION_MARGIN_SECONDS = 60.0
"""A reply is kept at least this long after its caller stopped waiting (R ≥ C + margin)."""
MAX_NAME_LENGTH = 46
"""CronJob names are at most 52 characters; the sweep CronJob is ``<name>-sweep``."""

__all__ = [
    "CONFIGMAP_KEY",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "DURATION",
    "MODULE_NAME",
    "OPEN_OBJECT",
    "QUEUE_NAME",
    "PodOverrides",
    "cel",
]


class DatabaseRef(_Model):
    """Where the workers' Postgres is: a Secret in the same namespace holding a libpq DSN."""

    secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the Secret (same namespace) holding the DSN.",
    )
    key: str = Field(
        default="dsn",
        min_length=1,
        max_length=253,
        pattern=CONFIGMAP_KEY,
        description="Key in the Secret whose value is the libpq DSN. Default dsn.",
    )
    pooled: bool = Field(
        default=False,
        description=(
            "True when the DSN points at a transaction pooler (PgBouncer): no prepared "
            "statements, no LISTEN. Default false."
        ),
    )


class GateRef(_Model):
    """The ConfigMap holding the gate (architecture §4); its value is copied into the flag table."""

    config_map_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the ConfigMap (same namespace) holding the gate value.",
    )
    key: str = Field(
        default="pg_queue_enabled",
        min_length=1,
        max_length=253,
        pattern=CONFIGMAP_KEY,
        description=(
            "Key in the ConfigMap; true/on/yes/1 enable, false/off/no/0/empty disable, anything "
            "else is treated as off with a Warning event. Default pg_queue_enabled."
        ),
    )


class Autoscaling(_Model):
    """Replicas from the queue backlog: ceil(backlog / targetBacklogPerReplica), clamped."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
                ".minReplicas",
            )
        )
    )

    min_replicas: int = Field(
        default=1, ge=0, le=1000, description="Fewest replicas (0 allowed). Default 1."
    )
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target_backlog_per_replica: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="Ready plus in-flight messages one replica is expected to carry. Default 100.",
    )
    scale_down_delay_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description=(
            "Seconds the backlog must stay below the current replicas' capacity before scaling "
            "down (scale-up is immediate). Default 300."
        ),
    )


class Timing(_Model):
    """Optional overrides of the timings derived from taskTimeLimitSeconds (architecture §5)."""

    lease_seconds: float = Field(
        default=60.0,
        ge=3,
        le=3600,
        description=(
            "Visibility lease L of a claimed message, seconds; renewed every L/3, so a dead "
            "worker's messages return within one lease. Default 60."
        ),
    )
    caller_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=7 * 86400,
        description="How long callers wait for a reply, seconds. Default taskTimeLimitSeconds.",
    )
    heartbeat_staleness_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description=(
            "Liveness staleness H: /healthz fails when the supervisor heartbeat is older, "
            "seconds; independent of the task time limit. Default max(10, 5 × pollInterval)."
        ),
    )
    poll_interval_seconds: float = Field(
        default=1.0,
        ge=0.05,
        le=60,
        description="Seconds between claims when the queues are empty. Default 1.",
    )
    shutdown_grace_seconds: float | None = Field(
        default=None,
        ge=0,
        le=7 * 86400,
        description=(
            "Drain time D after SIGTERM for running tasks, seconds; at most taskTimeLimitSeconds. "
            "Default taskTimeLimitSeconds."
        ),
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts of a fire-and-forget task before it is dead-lettered. Default 5.",
    )


class Retention(_Model):
    """How long replies and dead letters are kept, and the sweep CronJob that deletes them."""

    result_ttl_seconds: float | None = Field(
        default=None,
        gt=0,
        le=30 * 86400,
        description=(
            "Retention R of a stored reply, seconds; must be ≥ caller timeout + 60. "
            "Default max(3600, caller timeout + 60)."
        ),
    )
    dead_letter_retention_seconds: int = Field(
        default=7 * 86400,
        ge=60,
        le=365 * 86400,
        description="Dead letters older than this are deleted by the sweep, seconds. Default 7d.",
    )
    sweep_schedule: str | None = Field(
        default=None,
        min_length=9,
        max_length=100,
        description=(
            "Cron schedule of the sweep. Default derived from the reply retention: about four "
            "runs per retention period, between every minute and hourly."
        ),
    )
    sweep_batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows deleted per statement by the sweep. Default 1000.",
    )


class DisruptionBudget(_Model):
    """The PodDisruptionBudget of the worker pods."""

    enabled: bool = Field(default=True, description="Create the PDB. Default true.")
    max_unavailable: int = Field(
        default=1, ge=0, le=1000, description="Worker pods that may be evicted at once. Default 1."
    )


class ServiceMonitorSpec(_Model):
    """A prometheus-operator ServiceMonitor for the worker pods (needs its CRD installed)."""

    enabled: bool = Field(default=False, description="Create the ServiceMonitor. Default false.")
    interval: str = Field(
        default="30s", pattern=DURATION, description="Scrape interval. Default 30s."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the ServiceMonitor (e.g. the Prometheus selector).",
    )


class Metrics(_Model):
    """The workers' metrics endpoint (/metrics, /healthz, /readyz share this port)."""

    port: int = Field(
        default=9100,
        ge=1024,
        le=65535,
        description="Port of the worker's /metrics, /healthz and /readyz. Default 9100.",
    )
    service_monitor: ServiceMonitorSpec = Field(
        default_factory=ServiceMonitorSpec,
        description="Optional ServiceMonitor.",
        json_schema_extra={"default": {}},
    )


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


class PeriodicSchedule(_Model):
    """A periodic schedule of a task in the image, like `@pgqueue.periodic` without code."""

    # The workers get the list as PGQUEUE_SCHEDULES and check it at start: a task their modules
    # do not register, or a cron expression or zone they cannot read, stops the pod with an error
    # naming the entry (the operator cannot import the worker's cron parser: layers, §10).
    # Arguments go by name only: a list of JSON values of any type has no item type, which every
    # array of this CRD declares (tests/unit/operator/test_crd.py).

    task: str = Field(
        min_length=1,
        max_length=256,
        description="Name of a task the `tasks` modules register.",
    )
    cron: str = Field(
        min_length=1,
        max_length=256,
        description=(
            "Cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with "
            "seconds first; names (jan, mon) and @daily-style macros accepted."
        ),
    )
    tz: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone the expression is read in (Europe/Paris). Default UTC.",
    )
    queue: str = Field(
        default="default",
        max_length=128,
        pattern=QUEUE_NAME,
        description="Queue its messages go to. Default default.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments of every run, by name (a JSON object).",
        json_schema_extra=OPEN_OBJECT,
    )
    catch_up: Literal["latest", "all", "skip"] = Field(
        default="latest",
        description=(
            "Ticks missed while no worker ran: latest fires the newest once, all fires each, "
            "skip fires none. Default latest."
        ),
    )
    key: str = Field(
        default="",
        max_length=256,
        description="Name of the schedule (unique); default the task name.",
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
