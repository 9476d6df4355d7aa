"""Settings of the pgqueue processes, each one pydantic model read from ``PGQUEUE_*`` env vars.

Every field says its unit and default. The CLI builds the same models from its options (an option
wins over its env var), so a bad value is reported once, naming the option, before anything starts.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from pgqueue.connsettings import ConnectionSettings
from pgqueue.cron import Cron
from pgqueue.errors import ConfigurationError
from pgqueue.sweepsettings import SweepSettings

# Fields are declared one by one, each with its own range, default and description (unit and
# default, as every setting documents), so many look alike; that is intentional: each declaration
# is what `--help`, docs/ and the error naming the field show, and a shared helper would hide it.

# ConnectionSettings and SweepSettings live in modules of their own; they are imported from here
# as they always were.
__all__ = [
    "QUEUE_NAME",
    "ClientSettings",
    "ConnectionSettings",
    "ScheduleSetting",
    "SweepSettings",
    "WorkerSettings",
    "check_queue_name",
]

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def check_queue_name(name: str) -> str:
    """Queue names are identifiers: letters, digits and ``_ . : -``, at most 128 characters."""
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid queue name {name!r}: use letters, digits and _ . : - (1-128 characters, "
            "starting with a letter or digit)"
        )
    return name


class ClientSettings(ConnectionSettings):
    """Settings of :class:`pgqueue.Client`."""

    pool_size: int = Field(default=4, ge=1, description="Connections kept by a client. Default 4.")
    poll_initial: float = Field(
        default=0.001, gt=0, description="First wait between reply polls, seconds. Default 0.001."
    )
    poll_flat: int = Field(
        default=6,
        ge=0,
        description="Polls at poll_initial before the backoff starts doubling. Default 6.",
    )
    poll_adaptive: bool = Field(
        default=True,
        description=(
            "A polling caller times its polls from when its recent replies of the same queue "
            "and task were stored (a moving average): the first poll at 3/4 of it, then 1/8 of "
            "it apart before the doubling, about 3 polls a call however long calls wait; every "
            "gap stays at most poll_max. False: always poll_initial/poll_flat/poll_max. "
            "Default true."
        ),
    )
    async_call_commit: bool = Field(
        default=True,
        description=(
            "Commit a call's message without waiting for the disk: a crash can lose it, which the "
            "caller sees as a timeout (never a double run). Saves one fsync per call. Default true."
        ),
    )
    poll_max: float = Field(
        default=0.2,
        gt=0,
        description=(
            "Cap of the reply poll backoff, seconds; also the safety-net poll of a caller whose "
            "LISTEN is in place (it otherwise waits for the reply's NOTIFY). Default 0.2."
        ),
    )
    notify: bool = Field(
        default=True,
        description=(
            "Wake a waiting worker by NOTIFY in the enqueue's commit (one per message, none "
            "when every worker is busy). Default true."
        ),
    )
    reply_wait: Literal["listen", "poll"] = Field(
        default="listen",
        description=(
            "How a caller waits for its reply on a direct connection: listen (one LISTEN "
            "session per client, woken by the reply's NOTIFY; polls only as a safety net) or "
            "poll (no LISTEN session; polls on poll_initial/poll_flat/poll_max, timed by "
            "poll_adaptive). Postgres wakes every listening session of a database on every "
            "NOTIFY, whatever its channel: past ~50 listening clients per database, poll "
            "costs the server less (docs/operator.md, Large fleets). Always poll behind a "
            "pooler. Default listen."
        ),
    )
    default_timeout: float = Field(
        default=30.0, gt=0, description="call() timeout when none is given, seconds. Default 30."
    )
    max_payload_bytes: int = Field(
        default=1_048_576,
        ge=64,
        description=(
            "Largest message payload (the arguments as JSON), bytes; a larger one is refused "
            "before it reaches Postgres (enqueue raises, call returns an enqueue_error naming "
            "payload). Default 1 MiB."
        ),
    )


class ScheduleSetting(BaseModel):
    """A periodic schedule given by configuration rather than ``@periodic`` (the operator's
    ``spec.schedules``): the task must be registered by the worker's task modules."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, description="Name of a registered task.")
    cron: str = Field(description="5 fields, or 6 with seconds first.")
    tz: str = Field(default="UTC", description="IANA time zone of the expression. Default UTC.")
    queue: str = Field(default="default", description="Queue of its messages. Default default.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON).")
    catch_up: Literal["latest", "all", "skip"] = Field(
        default="latest", description="What to do with missed ticks. Default latest."
    )
    key: str = Field(default="", description="Name of the schedule. Default: the task name.")

    @model_validator(mode="after")
    def _check(self) -> ScheduleSetting:
        try:
            Cron.parse(self.cron, self.tz)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        check_queue_name(self.queue)
        return self


class WorkerSettings(ConnectionSettings):
    """Settings of ``pgqueue worker``; the operator derives the timing fields (architecture §5)."""

    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["default"],
        description="Queues to consume, comma-separated in env. Default: default.",
    )
    tasks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules to import so their @task functions register, comma-separated.",
    )
    concurrency: int = Field(
        default=2, ge=1, le=512, description="Child-process slots running tasks. Default 2."
    )
    pool: Literal["process", "inline"] = Field(
        default="process",
        description=(
            "Where tasks run. process: in child-process slots, killed at task_time_limit. "
            "inline: in the worker process itself, one at a time, no process hop (for short "
            "tasks you trust, like Celery's solo pool); a run is interrupted by a timer at "
            "min(task_time_limit, lease/3, heartbeat_staleness/2), which cannot stop code stuck "
            "outside Python. Default process."
        ),
    )
    task_time_limit: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Hard limit of one task run, seconds; then the child is killed. A task's own "
            "time_limit applies when shorter, never when longer. Default 300."
        ),
    )
    lease: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Visibility lease of a claimed message, seconds; renewed every lease/3 while the task "
            "runs, so a dead worker's messages return within one lease. Default 60."
        ),
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "Attempts of a fire-and-forget task before it is dead-lettered; a task's own "
            "max_attempts applies when lower, never when higher. Default 5."
        ),
    )
    retry_backoff: float = Field(
        default=1.0,
        gt=0,
        description=(
            "First retry delay, seconds; doubles per attempt. A task's own retry_backoff "
            "replaces it (retry_backoff_max still caps every delay). Default 1."
        ),
    )
    retry_backoff_max: float = Field(
        default=300.0, gt=0, description="Cap of the retry delay, seconds. Default 300."
    )
    batch_size: int = Field(
        default=0,
        ge=0,
        description=(
            "Most messages claimed per statement (0: what the slots can take + prefetch). "
            "Default 0."
        ),
    )
    prefetch: int = Field(
        default=0,
        ge=0,
        description=(
            "Messages claimed beyond what the slots can take and held (lease renewed) until one "
            "has room: more throughput for short tasks, more latency behind a long one. Default 0."
        ),
    )
    slot_backlog_seconds: float = Field(
        default=0.02,
        ge=0,
        description=(
            "Expected work, seconds, that may queue in one slot behind its running task. A task "
            "measured (smoothed run time) shorter than this is handed to slots several at a "
            "time, so one claim, pipe write and ack cover many; an unmeasured or longer task "
            "goes only to a free slot. Trade-off: a normally short task that runs long delays "
            "the few queued behind it in its slot. 0 hands one task per slot. Default 0.02."
        ),
    )
    slot_backlog_max: int = Field(
        default=64,
        ge=1,
        description=(
            "Most messages handed to one slot at a time, on top of slot_backlog_seconds (which "
            "is the real bound: 64 no-ops are about 1 ms of work). 1: one task per slot, no "
            "batching. Default 64."
        ),
    )
    poll_interval: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Seconds between claims when the queues are empty; NOTIFY wakes the worker earlier "
            "unless pooled. Default 1."
        ),
    )
    poll_jitter: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description=(
            "Each poll interval is drawn from poll_interval × (1 ± poll_jitter), so that an "
            "idle fleet does not poll in step. A fraction; 0: no jitter. Default 0.1."
        ),
    )
    vacuum_interval: float = Field(
        default=10.0,
        ge=0,
        description=(
            "VACUUM the queue tables this often, seconds, from a thread of one worker at a time "
            "(skipped when any worker or autovacuum did within the interval): their churn "
            "outruns autovacuum's defaults and dead rows slow every claim. Needs the tables' "
            "owner or MAINTAIN; without it autovacuum alone keeps them. 0 disables. Default 10."
        ),
    )
    periodic: bool = Field(
        default=True,
        description=(
            "Run the scheduler thread that enqueues the ticks of the @periodic schedules in the "
            "task modules; every worker may (a tick fires once however many do). Default true."
        ),
    )
    schedules: Annotated[tuple[ScheduleSetting, ...], NoDecode] = Field(
        default=(),
        description=(
            "Periodic schedules besides the @periodic ones, as a JSON array of {task, cron, tz, "
            "queue, args, kwargs, catch_up, key} (the operator fills it from spec.schedules). "
            "Default none."
        ),
    )
    result_ttl: float = Field(
        default=3600.0,
        gt=0,
        description="Retention of a stored reply, seconds (R ≥ caller timeout). Default 3600.",
    )
    max_result_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Largest JSON reply stored, bytes; larger is a failed reply. Default 1 MiB.",
    )
    durable_claims: bool = Field(
        default=False,
        description=(
            "Commit a claim that holds a call (a reply-keyed message) synchronously: one WAL "
            "flush per call (RPC p50 ~1.2x on the quiet 2-core machine, docs/benchmarks). "
            "false: asynchronous; a claim a Postgres crash lost is taken back by this worker "
            "when it reconnects, and restart_quarantine keeps other workers off the waiting "
            "calls meanwhile, so a call still runs once. Always true with pooled (a pooler "
            "hides a server restart from the worker). Default false."
        ),
    )
    restart_quarantine: float = Field(
        default=10.0,
        ge=0,
        description=(
            "After a Postgres crash or failover, seconds the calls that were waiting stay "
            "unclaimable, so that workers whose claims the crash lost take them back first "
            "(they reconnect within 5 s of the server; an inline task must end first). The "
            "first claim after the recovery applies it, whichever worker makes it. 0: none "
            "(then set durable_claims). Default 10."
        ),
    )
    async_acks: bool = Field(
        default=True,
        description=(
            "Commit acks (the reply and the message's delete) without waiting for the WAL "
            "flush: a call then pays one flush, its claim's. The worker keeps each ack until "
            "the flush is certain (3 x the server's wal_writer_delay + 1 s) and writes it again "
            "after an outage, so a Postgres crash loses none while the worker lives; if Postgres "
            "and the worker crash together, an ack may be lost and its message runs again after "
            "its lease. Not used with pooled (a pooler hides a server restart from the worker). "
            "false: each ack batch waits for its flush. Default true."
        ),
    )
    max_error_bytes: int = Field(
        default=65_536,
        ge=256,
        description=(
            "Largest error text (a task's exception, a dead letter's reason) stored, bytes of "
            "UTF-8; a longer one is cut with a marker '… [truncated: N more bytes]'. "
            "Default 64 KiB."
        ),
    )
    shutdown_grace: float = Field(
        default=30.0,
        ge=0,
        description="After SIGTERM, seconds running tasks get to finish. Default 30.",
    )
    heartbeat_staleness: float = Field(
        default=10.0,
        gt=0,
        description="/healthz is 503 when the supervisor heartbeat is older, seconds. Default 10.",
    )
    metrics_port: int = Field(
        default=9100,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz; 0 disables the server. Default 9100.",
    )
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - pods are scraped from outside the pod
        description="Address the metrics server binds. Default 0.0.0.0.",
    )
    notify: bool = Field(
        default=True,
        description="NOTIFY callers in the reply's own commit so they wake at once. Default true.",
    )
    worker_id: str = Field(
        default="",
        description="Name stamped on claimed rows; default host:pid.",
    )

    @field_validator("queues", "tasks", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("schedules", mode="before")
    @classmethod
    def _decode_schedules(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else ()
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON array ({exc.msg} at position {exc.pos})") from None
        return value

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one queue is required")
        return [check_queue_name(q) for q in value]

    @model_validator(mode="after")
    def _check_timing(self) -> WorkerSettings:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("retry_backoff_max must be ≥ retry_backoff")
        return self
