"""The timing derivation of architecture §5: one task time limit in, every worker timing out.

Pure and total: :func:`derive` takes a validated spec and returns :class:`DerivedTimings` or raises
:class:`~pgqueue_operator.errors.InvalidSpecError` naming the field that breaks an invariant. The
CRD's CEL rules reject the same specs at admission; this module is the second line (an API server
without CEL, a spec stored before a rule existed), and the one place the formulas live.

=====================================  ===========================================================
derived                                formula (T = spec.taskTimeLimitSeconds)
=====================================  ===========================================================
lease L                                timing.leaseSeconds (default 60 s), independent of T
renew interval                         L / 3
legacy visibility timeout VT           T + 30 s (what a worker without renewal would need)
heartbeat staleness H                  timing.heartbeatStalenessSeconds or max(10 s, 5 × poll)
drain D                                timing.shutdownGraceSeconds or T (must be ≤ T)
terminationGracePeriodSeconds          ceil(D + 15 s): drain, then release claims and exit
caller timeout C                       timing.callerTimeoutSeconds or T
result retention R                     retention.resultTtlSeconds or max(3600, C + 60 s); ≥ C + 60
sweep schedule                         retention.sweepSchedule or about R/4, 1 min .. 1 h
=====================================  ===========================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pgqueue_operator.errors import InvalidSpecError
from pgqueue_operator.models import RETENTION_MARGIN_SECONDS, PgQueueWorkerSpec

LEGACY_VISIBILITY_MARGIN_SECONDS = 30.0
"""VT = T + this, for a worker that cannot renew its lease."""
GRACE_MARGIN_SECONDS = 15.0
"""terminationGracePeriodSeconds = ceil(D + this): time to release claims and close connections."""
MIN_HEARTBEAT_STALENESS_SECONDS = 10.0
HEARTBEAT_POLL_PERIODS = 5.0
"""H defaults to this many poll periods (at least 10 s): a few missed supervisor turns, never T."""
MIN_RESULT_TTL_SECONDS = 3600.0
SWEEP_RUNS_PER_RETENTION = 4.0


@dataclass(frozen=True, slots=True)
class DerivedTimings:
    """Every timing written into the worker pods and into ``status.derived`` (seconds)."""

    task_time_limit_seconds: float
    run_limit_seconds: float
    lease_seconds: float
    renew_interval_seconds: float
    legacy_visibility_timeout_seconds: float
    heartbeat_staleness_seconds: float
    poll_interval_seconds: float
    drain_seconds: float
    termination_grace_period_seconds: int
    caller_timeout_seconds: float
    result_ttl_seconds: float
    sweep_schedule: str

    def as_status(self) -> dict[str, Any]:
        """camelCase, for ``status.derived``."""
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def sweep_schedule_for(retention_seconds: float) -> str:
    """About four sweeps per retention period, on a divisor of 60 minutes, every 1 to 60 min."""
    minutes = retention_seconds / SWEEP_RUNS_PER_RETENTION / 60.0
    step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d <= max(1.0, minutes))
    return "0 * * * *" if step == 60 else f"*/{step} * * * *"


def check(spec: PgQueueWorkerSpec) -> None:
    """Raise :class:`InvalidSpecError` for the first broken cross-field invariant (as the CEL)."""
    t = spec.task_time_limit_seconds
    timing = spec.timing
    caller = timing.caller_timeout_seconds if timing.caller_timeout_seconds is not None else t
    ttl = spec.retention.result_ttl_seconds
    if ttl is not None and ttl < caller + RETENTION_MARGIN_SECONDS:
        raise InvalidSpecError(
            "retention.resultTtlSeconds",
            f"{ttl:g} s is less than the caller timeout {caller:g} s plus "
            f"{RETENTION_MARGIN_SECONDS:g} s: replies could be swept before callers read them",
            reason="RetentionBelowCallerTimeout",
        )
    if timing.shutdown_grace_seconds is not None and timing.shutdown_grace_seconds > t:
        raise InvalidSpecError(
            "timing.shutdownGraceSeconds",
            f"{timing.shutdown_grace_seconds:g} s exceeds taskTimeLimitSeconds {t:g} s",
            reason="DrainExceedsTaskTimeLimit",
        )
    poll = timing.poll_interval_seconds
    staleness = timing.heartbeat_staleness_seconds
    if staleness is not None and staleness < 3 * poll:
        raise InvalidSpecError(
            "timing.heartbeatStalenessSeconds",
            f"{staleness:g} s is less than 3 × pollIntervalSeconds ({3 * poll:g} s)",
            reason="HeartbeatTooTight",
        )
    if timing.lease_seconds < 3 * poll:
        raise InvalidSpecError(
            "timing.leaseSeconds",
            f"{timing.lease_seconds:g} s is less than 3 × pollIntervalSeconds ({3 * poll:g} s)",
            reason="LeaseTooShort",
        )
    scaling = spec.autoscaling
    if scaling is not None and scaling.min_replicas > scaling.max_replicas:
        raise InvalidSpecError(
            "autoscaling.minReplicas",
            f"{scaling.min_replicas} is greater than maxReplicas {scaling.max_replicas}",
            reason="AutoscalingRange",
        )


def derive(spec: PgQueueWorkerSpec) -> DerivedTimings:
    """The §5 derivation; raises :class:`InvalidSpecError` when an invariant is broken."""
    check(spec)
    t = spec.task_time_limit_seconds
    timing = spec.timing
    lease = timing.lease_seconds
    poll = timing.poll_interval_seconds
    staleness = timing.heartbeat_staleness_seconds
    if staleness is None:
        staleness = max(MIN_HEARTBEAT_STALENESS_SECONDS, HEARTBEAT_POLL_PERIODS * poll)
    drain = timing.shutdown_grace_seconds if timing.shutdown_grace_seconds is not None else t
    caller = timing.caller_timeout_seconds if timing.caller_timeout_seconds is not None else t
    ttl = spec.retention.result_ttl_seconds
    if ttl is None:
        ttl = max(MIN_RESULT_TTL_SECONDS, caller + RETENTION_MARGIN_SECONDS)
    schedule = spec.retention.sweep_schedule or sweep_schedule_for(ttl)
    # An inline task holds the supervisor loop: the worker caps its run where a lease renewal
    # and the heartbeat would otherwise come late (the same formula as the worker's).
    run_limit = t if spec.pool == "process" else min(t, lease / 3.0, staleness / 2.0)
    return DerivedTimings(
        task_time_limit_seconds=t,
        run_limit_seconds=round(run_limit, 3),
        lease_seconds=lease,
        renew_interval_seconds=round(lease / 3.0, 3),
        legacy_visibility_timeout_seconds=t + LEGACY_VISIBILITY_MARGIN_SECONDS,
        heartbeat_staleness_seconds=staleness,
        poll_interval_seconds=poll,
        drain_seconds=drain,
        termination_grace_period_seconds=math.ceil(drain + GRACE_MARGIN_SECONDS),
        caller_timeout_seconds=caller,
        result_ttl_seconds=ttl,
        sweep_schedule=schedule,
    )
