"""The ``PgQueueWorker`` status as pydantic models: the schema of what the operator writes.

Written by the operator only; the CRD's status schema is generated from these models (with
:mod:`pgqueue_operator.models` for the spec) to document it, and keeps unknown fields, so a newer
operator's fields survive a rollback. The condition types are those of
:mod:`pgqueue_operator.conditions`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pgqueue_operator.modeling import Model


# Fields are declared one by one, each with its own range, pattern and description, so many look
# alike; that is intentional: each declaration is what `kubectl explain` shows for that field, and
# a shared helper would hide it from the reader of this file.
class Condition(Model):
    """A condition, as in the Kubernetes API conventions."""

    type: str = Field(description="Ready, Progressing, Degraded, GateSynced or Paused.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(description="When the status last flipped (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition was computed from."
    )


class Derived(Model):
    """The timings derived from the spec (architecture §5), as written into the pods."""

    task_time_limit_seconds: float = Field(description="T: hard limit of one task run.")
    run_limit_seconds: float = Field(
        description=(
            "What one run actually gets: T with the process pool; min(T, L/3, H/2) inline, where "
            "neither leases nor the heartbeat are stamped while a task runs."
        )
    )
    lease_seconds: float = Field(description="L: visibility lease of a claimed message.")
    renew_interval_seconds: float = Field(description="L/3: lease renewal period.")
    legacy_visibility_timeout_seconds: float = Field(
        description="VT = T + margin: the lease a worker without renewal would need."
    )
    heartbeat_staleness_seconds: float = Field(description="H: liveness staleness.")
    poll_interval_seconds: float = Field(description="Idle claim period.")
    drain_seconds: float = Field(description="D: drain time after SIGTERM (≤ T).")
    termination_grace_period_seconds: int = Field(description="Pod grace period ≥ D + margin.")
    caller_timeout_seconds: float = Field(description="C: how long callers wait.")
    result_ttl_seconds: float = Field(description="R: reply retention (≥ C + margin).")
    sweep_schedule: str = Field(description="Cron schedule of the sweep.")


class GateStatus(Model):
    """The gate as last copied into the database."""

    enabled: bool = Field(description="Whether the flag was written as on.")
    value: str = Field(description="The raw ConfigMap value.")
    state: Literal["on", "off"] = Field(description="on or off (the printer column).")
    source: str = Field(description="configmap <ns>/<name>@<resourceVersion>.")
    synced_at: str = Field(description="When it was written (RFC 3339).")


class QueueDepth(Model):
    """Depth of one queue at the last sample."""

    queue: str = Field(description="Queue name.")
    ready: int = Field(description="Visible messages waiting for a worker.")
    in_flight: int = Field(description="Claimed messages (lease running).")
    delayed: int = Field(description="Messages not yet visible (retry backoff, scheduled).")
    dead: int = Field(description="Dead letters of this queue.")
    oldest_age_seconds: float = Field(description="Age of the oldest ready message, seconds.")
    paused: bool = Field(
        default=False,
        description=(
            "No worker claims from the queue (`pgqueue queue pause`): shared by every consumer "
            "of the queue, unlike spec.paused."
        ),
    )


class AutoscalingStatus(Model):
    """The autoscaler's memory between samples."""

    desired_replicas: int = Field(description="Replicas the autoscaler set.")
    below_since: str | None = Field(
        default=None, description="Since when fewer replicas would do (scale-down delay start)."
    )
    last_scale_time: str | None = Field(default=None, description="Last change of replicas.")


class PgQueueWorkerStatus(Model):
    """Observed state of a PgQueueWorker."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded, GateSynced, Paused.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    replicas: int | None = Field(default=None, description="Worker pods wanted.")
    ready_replicas: int | None = Field(default=None, description="Worker pods ready.")
    selector: str | None = Field(default=None, description="Label selector of the worker pods.")
    derived: Derived | None = Field(default=None, description="Derived timings (architecture §5).")
    gate: GateStatus | None = Field(default=None, description="The gate as last synced.")
    depth: list[QueueDepth] = Field(
        default_factory=list, description="Per-queue depth at the last sample."
    )
    backlog: int | None = Field(
        default=None, description="Ready plus in-flight messages over all queues."
    )
    paused_queues: str | None = Field(
        default=None,
        description=(
            "The consumed queues that are paused (`pgqueue queue pause`), comma-separated; empty "
            "when none. Pods keep running; spec.paused is what scales them to zero."
        ),
    )
    sampled_at: str | None = Field(default=None, description="When depth was sampled.")
    autoscaling: AutoscalingStatus | None = Field(default=None, description="Autoscaler state.")
    last_sweep: str | None = Field(
        default=None, description="Last successful sweep (from the CronJob)."
    )
