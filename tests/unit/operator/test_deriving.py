"""The §5 derivation, table-driven: one task time limit in, every timing out."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue_operator.deriving import derive, sweep_schedule_for
from pgqueue_operator.errors import InvalidSpecError
from pgqueue_operator.models import PgQueueWorkerSpec
from tests.unit.operator.samples import MINIMAL_SPEC


def spec(**overrides: Any) -> PgQueueWorkerSpec:
    return PgQueueWorkerSpec.model_validate({**MINIMAL_SPEC, **overrides})


# (case, spec overrides, expected derived fields)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "defaults from T=300",
        {},
        {
            "task_time_limit_seconds": 300,
            "run_limit_seconds": 300,
            "lease_seconds": 60,
            "renew_interval_seconds": 20,
            "legacy_visibility_timeout_seconds": 330,
            "heartbeat_staleness_seconds": 10,
            "poll_interval_seconds": 1,
            "drain_seconds": 300,
            "termination_grace_period_seconds": 315,
            "caller_timeout_seconds": 300,
            "result_ttl_seconds": 3600,
            "sweep_schedule": "*/15 * * * *",
        },
    ),
    (
        "short tasks keep the lease and H independent of T",
        {"taskTimeLimitSeconds": 5},
        {
            "lease_seconds": 60,
            "heartbeat_staleness_seconds": 10,
            "drain_seconds": 5,
            "termination_grace_period_seconds": 20,
            "caller_timeout_seconds": 5,
            "result_ttl_seconds": 3600,
        },
    ),
    (
        "long tasks: retention follows the caller timeout",
        {"taskTimeLimitSeconds": 7200},
        {
            "legacy_visibility_timeout_seconds": 7230,
            "termination_grace_period_seconds": 7215,
            "caller_timeout_seconds": 7200,
            "result_ttl_seconds": 7260,
            "sweep_schedule": "*/30 * * * *",
        },
    ),
    (
        "overrides win",
        {
            "taskTimeLimitSeconds": 120,
            "timing": {
                "leaseSeconds": 30,
                "callerTimeoutSeconds": 90,
                "heartbeatStalenessSeconds": 6,
                "pollIntervalSeconds": 0.5,
                "shutdownGraceSeconds": 45.5,
            },
            "retention": {"resultTtlSeconds": 150, "sweepSchedule": "*/5 * * * *"},
        },
        {
            "lease_seconds": 30,
            "renew_interval_seconds": 10,
            "heartbeat_staleness_seconds": 6,
            "poll_interval_seconds": 0.5,
            "drain_seconds": 45.5,
            "termination_grace_period_seconds": 61,
            "caller_timeout_seconds": 90,
            "result_ttl_seconds": 150,
            "sweep_schedule": "*/5 * * * *",
        },
    ),
    (
        "slow polling stretches H to five poll periods",
        {"timing": {"pollIntervalSeconds": 4}},
        {"heartbeat_staleness_seconds": 20},
    ),
    (
        "inline: a run gets min(T, L/3, H/2), H here",
        {"pool": "inline"},
        {"task_time_limit_seconds": 300, "run_limit_seconds": 5, "lease_seconds": 60},
    ),
    (
        "inline: a run gets min(T, L/3, H/2), L/3 here",
        {"pool": "inline", "timing": {"leaseSeconds": 9, "heartbeatStalenessSeconds": 30}},
        {"run_limit_seconds": 3},
    ),
    (
        "inline: a short T stays T",
        {"pool": "inline", "taskTimeLimitSeconds": 2},
        {"run_limit_seconds": 2},
    ),
    (
        "fractional T",
        {"taskTimeLimitSeconds": 0.5},
        {"drain_seconds": 0.5, "termination_grace_period_seconds": 16},
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_derivation_table(overrides: dict[str, Any], expected: dict[str, Any]) -> None:
    derived = derive(spec(**overrides))
    got = {field: getattr(derived, field) for field in expected}
    assert got == expected


# (case, spec overrides, the field the error names, reason)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "retention below caller timeout + margin",
        {"retention": {"resultTtlSeconds": 320}},
        "retention.resultTtlSeconds",
        "RetentionBelowCallerTimeout",
    ),
    (
        "retention below an explicit caller timeout",
        {"timing": {"callerTimeoutSeconds": 1000}, "retention": {"resultTtlSeconds": 1000}},
        "retention.resultTtlSeconds",
        "RetentionBelowCallerTimeout",
    ),
    (
        "drain longer than T",
        {"timing": {"shutdownGraceSeconds": 301}},
        "timing.shutdownGraceSeconds",
        "DrainExceedsTaskTimeLimit",
    ),
    (
        "H under three poll periods",
        {"timing": {"heartbeatStalenessSeconds": 2, "pollIntervalSeconds": 1}},
        "timing.heartbeatStalenessSeconds",
        "HeartbeatTooTight",
    ),
    (
        "lease under three poll periods",
        {"timing": {"leaseSeconds": 5, "pollIntervalSeconds": 2}},
        "timing.leaseSeconds",
        "LeaseTooShort",
    ),
    (
        "autoscaling min above max",
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "autoscaling.minReplicas",
        "AutoscalingRange",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invariants_are_enforced(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        derive(spec(**overrides))
    assert caught.value.field == field
    assert caught.value.reason == reason
    assert f"spec.{field}" in str(caught.value)


def test_retention_exactly_at_the_margin_is_accepted() -> None:
    assert derive(spec(retention={"resultTtlSeconds": 360})).result_ttl_seconds == 360


@pytest.mark.parametrize(
    ("retention", "schedule"),
    [
        (60, "*/1 * * * *"),
        (600, "*/2 * * * *"),
        (3600, "*/15 * * * *"),
        (14400, "0 * * * *"),
        (30 * 86400, "0 * * * *"),
    ],
)
def test_sweep_schedule_runs_about_four_times_per_retention(
    retention: float, schedule: str
) -> None:
    assert sweep_schedule_for(retention) == schedule


def test_status_form_is_camel_case() -> None:
    status = derive(spec()).as_status()
    assert status["terminationGracePeriodSeconds"] == 315
    assert status["resultTtlSeconds"] == 3600
    assert "task_time_limit_seconds" not in status
