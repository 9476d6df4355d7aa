"""Settings of ``pgqueue sweep`` (the retention CronJob), read from ``PGQUEUE_*``."""

from __future__ import annotations

from pydantic import Field

from pgqueue.connsettings import ConnectionSettings


class SweepSettings(ConnectionSettings):
    """Settings of ``pgqueue sweep`` (the retention CronJob)."""

    batch_size: int = Field(
        default=1000, ge=1, description="Rows deleted per statement. Default 1000."
    )
    dead_letter_retention: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Dead letters older than this are deleted, seconds. Default 7 days.",
    )
    orphan_margin: float = Field(
        default=300.0,
        ge=0,
        description=(
            "A call whose caller's deadline passed more than this many seconds ago and that no "
            "worker holds is an orphan: the sweep moves it to the dead-letter table. Keep it ≥ "
            "the workers' lease. Default 300."
        ),
    )
