"""How to reach Postgres: the settings every pgqueue process shares, read from ``PGQUEUE_*``.

The client's, the worker's and the sweep's settings (:mod:`pgqueue.settings`) extend these.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Fields are declared one by one, each with its own range, default and description (unit and
# default, as every setting documents), so many look alike; that is intentional: each declaration
# is what `--help`, docs/ and the error naming the field show, and a shared helper would hide it.


class ConnectionSettings(BaseSettings):
    """How to reach Postgres; shared by every process."""

    model_config = SettingsConfigDict(env_prefix="PGQUEUE_", extra="ignore")

    dsn: str = Field(
        default="",
        description="libpq connection string or URI. Empty: start the embedded Postgres (demo).",
        repr=False,
    )
    pooled: bool = Field(
        default=False,
        description=(
            "True when the DSN points at a transaction pooler (PgBouncer): no prepared statements, "
            "no LISTEN; waiting falls back to polling. Default false."
        ),
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a new connection. Default 5."
    )
    keepalives_idle: float = Field(
        default=10.0,
        ge=1,
        description="Seconds a connection is silent before TCP keepalive probes start. Default 10.",
    )
    keepalives_interval: float = Field(
        default=3.0, ge=1, description="Seconds between TCP keepalive probes. Default 3."
    )
    keepalives_count: int = Field(
        default=3,
        ge=1,
        description=(
            "Unanswered keepalive probes before the connection is dropped: a silent peer is "
            "found within keepalives_idle + interval x count (19 s by default). Default 3."
        ),
    )
    tcp_user_timeout: float = Field(
        default=20.0,
        ge=0,
        description=(
            "Seconds sent data may stay unacknowledged before the connection is dropped "
            "(TCP_USER_TIMEOUT; a partition while a statement is on the wire). 0: the OS "
            "default (minutes). Default 20."
        ),
    )
    statement_timeout: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Server-side limit of one statement, seconds (set at connect, direct connections "
            "only: behind PgBouncer set it on the role or the pooler). It also bounds, on the "
            "client side, any wait for the server plus io_margin (a stopped backend, a stalled "
            "path). 0 disables both. Raise it for migrations of very large tables. Default 60."
        ),
    )
    idle_in_transaction_timeout: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Server-side idle_in_transaction_session_timeout, seconds (direct connections "
            "only): a session that stalls inside a transaction releases its locks. 0 "
            "disables. Default 60."
        ),
    )
    io_margin: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Seconds beyond statement_timeout the client waits for the server's own "
            "cancellation before it gives the connection up. Default 5."
        ),
    )
