"""``OperatorSettings``: every knob of ``pgqueue-operator``, one pydantic model read from env.

Each field is ``PGQUEUE_OPERATOR_<FIELD>`` in env (``PGQUEUE_OPERATOR_NAMESPACES`` is
comma-separated); the CLI builds the same model from its options, an option winning over its env
var, so a bad value is reported once, naming the option, before anything starts.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# Fields are declared one by one, each with its own range, pattern and description, so many look
# alike; that is intentional: each declaration is what `--help` says of that setting, and a
# shared helper would hide it from the reader of this file.
class OperatorSettings(BaseSettings):
    """Settings of ``pgqueue-operator run``."""

    model_config = SettingsConfigDict(env_prefix="PGQUEUE_OPERATOR_", extra="ignore")

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Namespaces to watch (comma-separated in env). Exactly one of namespaces and "
            "all_namespaces must be given. Default: none."
        ),
    )
    all_namespaces: bool = Field(
        default=False, description="Watch every namespace (cluster-wide). Default false."
    )
    metrics_port: int = Field(
        default=9090,
        ge=0,
        le=65535,
        description="Port of the operator's Prometheus /metrics; 0 disables it. Default 9090.",
    )
    health_port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        description="Port of the liveness endpoint GET /healthz. Default 8080.",
    )
    log_format: Literal["plain", "json"] = Field(
        default="plain", description="Log line format: plain or json. Default plain."
    )
    verbose: bool = Field(default=False, description="Log at DEBUG. Default false.")
    sample_interval: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds between depth samples (and autoscaler decisions). Default 10.",
    )
    resync_interval: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description=(
            "Seconds between full reconciles of every PgQueueWorker (heals drift of children "
            "and of the gate flag). Default 60."
        ),
    )
    retry_delay: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds before a failed reconcile is retried. Default 10.",
    )

    database_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds a gate sync or depth sample may wait for Postgres before the handler "
            "gives up and retries later (a hung database never hangs the operator). Default 30."
        ),
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("namespaces")
    @classmethod
    def _check_namespaces(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAMESPACE.fullmatch(name) or len(name) > 63:
                raise ValueError(f"{name!r} is not a valid namespace name")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _check_scope(self) -> OperatorSettings:
        if self.all_namespaces and self.namespaces:
            raise ValueError("give either namespaces or all_namespaces, not both")
        if not self.all_namespaces and not self.namespaces:
            raise ValueError("give at least one namespace, or all_namespaces")
        if self.metrics_port and self.metrics_port == self.health_port:
            raise ValueError("metrics_port and health_port must differ")
        return self
