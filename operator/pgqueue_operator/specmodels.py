"""The parts of the ``PgQueueWorker`` spec: the database and gate references, timing, retention,
autoscaling, disruption budget, metrics and periodic schedules, one pydantic model each.

:mod:`pgqueue_operator.models` assembles them into ``PgQueueWorkerSpec`` and holds the rules that
span parts; each model here carries only its own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from pgqueue_operator.modeling import (
    CONFIGMAP_KEY,
    DNS_SUBDOMAIN,
    DURATION,
    OPEN_OBJECT,
    QUEUE_NAME,
    cel,
)
from pgqueue_operator.modeling import Model as _Model
from pgqueue_operator.modeling import rules as _rules

# Fields are declared one by one, each with its own range, pattern and description, so many look
# alike; that is intentional: each declaration is what `kubectl explain` shows for that field, and
# a shared helper would hide it from the reader of this file.


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
