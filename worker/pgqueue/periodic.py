"""Periodic tasks: ``@pgqueue.periodic("*/5 * * * *", tz="Europe/Paris")`` (what Celery beat does).

The decorator registers the function as a task (like ``@pgqueue.task``) and its schedule in this
process's schedule registry. Every ``pgqueue worker`` that imports the module runs a scheduler
thread (the module ticking) that enqueues one message per tick; a unique key per (schedule,
tick) in the table periodic_tick makes that exactly once however many workers race for it.

Which ticks a scheduler fires is decided here, without I/O, by ``plan()``: a tick is on time
while it is at most ``grace`` seconds old; older ones were missed (every worker was down, or the
database was) and the schedule's ``catch_up`` policy says what to do with them:

- ``latest`` (default): fire the most recent missed tick once, drop the others (Celery beat's
  and APScheduler's coalescing);
- ``all``: fire every missed tick since the last one recorded, oldest first;
- ``skip``: fire none; wait for the next tick.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar, get_args

from pgqueue.cron import Cron
from pgqueue.errors import ConfigurationError, TaskRegistrationError
from pgqueue.settings import ScheduleSetting, check_queue_name
from pgqueue.tasks import task

P = ParamSpec("P")
R = TypeVar("R")

CatchUp = Literal["latest", "all", "skip"]
CATCH_UP_POLICIES: tuple[str, ...] = get_args(CatchUp)
# "all" fires at most this many missed ticks per scheduler turn; the rest on the next turns.
CATCH_UP_BATCH = 100


@dataclass(frozen=True)
class Schedule:
    """One periodic schedule: which task to enqueue, when, where and with what."""

    key: str  # unique name of the schedule; the tick table's key
    task: str
    cron: Cron
    queue: str = "default"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 5
    catch_up: CatchUp = "latest"
    grace: float = 30.0
    tick_kwarg: str | None = None

    @property
    def expression(self) -> str:
        return self.cron.expression

    @property
    def tz(self) -> str:
        return self.cron.tz

    def payload(self, tick: datetime) -> str:
        """The message payload of one tick (the tick passed as ``tick_kwarg`` when set)."""
        kwargs = dict(self.kwargs)
        if self.tick_kwarg:
            kwargs[self.tick_kwarg] = tick.isoformat()
        return json.dumps(
            {
                "args": list(self.args),
                "kwargs": kwargs,
                "headers": {"periodic": self.key, "tick": tick.isoformat()},
                "tenant": "",
            }
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.key,
            "task": self.task,
            "cron": self.expression,
            "tz": self.tz,
            "queue": self.queue,
            "catch_up": self.catch_up,
        }


_SCHEDULES: dict[str, Schedule] = {}


def periodic(
    cron: str,
    *,
    tz: str = "UTC",
    name: str | None = None,
    key: str | None = None,
    queue: str = "default",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    priority: int = 5,
    catch_up: CatchUp = "latest",
    grace: float = 30.0,
    tick_kwarg: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function as a task on a cron schedule, once per tick across all workers.

    ``cron``: 5 fields, or 6 with seconds first; read in the time zone ``tz`` (IANA name). ``name``
    is the task name (default ``module.function``, as for ``@task``); ``key`` names the schedule
    (default: the task name; give one to stack several schedules on one function). ``args`` and
    ``kwargs`` (JSON) go to every run; ``tick_kwarg`` also passes the tick (ISO-8601, UTC) under
    that keyword. A tick older than ``grace`` seconds when a scheduler gets to it was missed and
    ``catch_up`` decides (``latest``, ``all`` or ``skip``; see the module doc). Errors name the
    argument at import time.
    """
    parsed = Cron.parse(cron, tz)
    try:
        check_queue_name(queue)
    except ValueError as exc:
        raise ConfigurationError("queue", str(exc)) from None
    if catch_up not in CATCH_UP_POLICIES:
        raise ConfigurationError(
            "catch_up", f"{catch_up!r} is not one of {', '.join(CATCH_UP_POLICIES)}"
        )
    if not 1 <= priority <= 10:
        raise ConfigurationError("priority", f"must be 1..10, got {priority}")
    if grace < 0:
        raise ConfigurationError("grace", f"must be ≥ 0 seconds, got {grace}")
    try:
        json.dumps([list(args), dict(kwargs or {})])
    except (TypeError, ValueError) as exc:
        raise ConfigurationError("args", f"must be JSON-serialisable: {exc}") from None

    def register(func: Callable[P, R]) -> Callable[P, R]:
        task_name = name or f"{func.__module__}.{func.__qualname__}"
        task(name=task_name)(func)
        schedule = Schedule(
            key=key or task_name,
            task=task_name,
            cron=parsed,
            queue=queue,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            priority=priority,
            catch_up=catch_up,
            grace=grace,
            tick_kwarg=tick_kwarg,
        )
        known = _SCHEDULES.get(schedule.key)
        if known is not None and known != schedule:  # the same one again: a module re-imported
            why = (
                f"task {task_name!r} has two schedules"
                if known.task == task_name
                else f"schedule {schedule.key!r} is already registered for task {known.task!r}"
            )
            raise TaskRegistrationError(f"{why}; give each its own key=")
        _SCHEDULES[schedule.key] = schedule
        return func

    return register


def schedules() -> dict[str, Schedule]:
    """The schedules registered in this process (by the task modules imported)."""
    return dict(_SCHEDULES)


@dataclass(frozen=True)
class Plan:
    """What a scheduler does now: the ticks to fire, and where its cursor moves."""

    fire: list[datetime]
    cursor: datetime  # the last tick dealt with (fired, dropped, or fired by another worker)
    missed: tuple[datetime, datetime] | None = None  # first and last late tick, if any
    dropped: bool = False  # the policy left some missed ticks unfired


def plan(schedule: Schedule, cursor: datetime, now: datetime) -> Plan:
    """The ticks in (cursor, now] to fire, per the schedule's grace and catch-up policy.

    ``cursor`` is the last tick already dealt with: the latest tick recorded in the database when
    the scheduler starts (or ``now`` for a schedule never fired, so it does not backfill from
    the past), then the last tick this scheduler planned. ``now`` is the clock, injected. Cost
    does not grow with the length of an outage (but for ``all``, which fires in batches).
    """
    cron = schedule.cron
    horizon = now - timedelta(seconds=schedule.grace)  # a tick before it is late
    first = cron.next_after(cursor)
    if first is None or first > now:
        return Plan(fire=[], cursor=cursor)
    if schedule.catch_up == "all":
        fire: list[datetime] = []
        tick: datetime | None = first
        while tick is not None and tick <= now and len(fire) < CATCH_UP_BATCH:
            fire.append(tick)
            tick = cron.next_after(tick)
        late = [t for t in fire if t < horizon]
        return Plan(fire=fire, cursor=fire[-1], missed=(late[0], late[-1]) if late else None)
    on_time: list[datetime] = []
    tick = cron.next_after(max(cursor, horizon - timedelta(microseconds=1)))
    while tick is not None and tick <= now:
        on_time.append(tick)
        tick = cron.next_after(tick)
    last_late = _last_before(cron, cursor, horizon) if first < horizon else None
    fire = on_time
    if schedule.catch_up == "latest" and last_late is not None and not on_time:
        fire = [last_late]
    dealt = [t for t in (last_late, *on_time) if t is not None]
    return Plan(
        fire=fire,
        cursor=max(dealt, default=cursor),
        missed=(first, last_late) if last_late is not None else None,
        dropped=last_late is not None
        and (schedule.catch_up == "skip" or first != last_late or bool(on_time)),
    )


def _last_before(cron: Cron, after: datetime, before: datetime) -> datetime | None:
    """The last tick in (after, before), found by a window doubling back from ``before``."""
    window = timedelta(seconds=1)
    while True:
        low = max(after, before - window)
        tick = cron.next_after(low)
        if tick is not None and tick < before:
            while (following := cron.next_after(tick)) is not None and following < before:
                tick = following
            return tick
        if low == after:
            return None
        window *= 2


def configured(entries: Sequence[ScheduleSetting], known_tasks: Collection[str]) -> list[Schedule]:
    """Schedules given by configuration (``PGQUEUE_SCHEDULES``), checked against the tasks the
    worker imported; an error names the entry (``schedules[1].task``)."""
    found: list[Schedule] = []
    for i, entry in enumerate(entries):
        if entry.task not in known_tasks:
            raise ConfigurationError(
                f"schedules[{i}].task",
                f"no task {entry.task!r} in the task modules (--tasks); known: "
                + (", ".join(sorted(known_tasks)) or "none"),
            )
        found.append(
            Schedule(
                key=entry.key or entry.task,
                task=entry.task,
                cron=Cron.parse(entry.cron, entry.tz),
                queue=entry.queue,
                args=tuple(entry.args),
                kwargs=dict(entry.kwargs),
                catch_up=entry.catch_up,
            )
        )
    keys = [s.key for s in found]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigurationError("schedules", f"two schedules named {key!r}; give each a key")
    return found
