"""The task registry: functions registered by ``@pgqueue.task()``, and their handles.

``@pgqueue.task`` returns a :class:`TaskHandle`: still callable as the plain function, and the
typed way to run it through the queue (``.call``, ``.enqueue`` / ``.delay``, ``.submit``), its
arguments checked by mypy against the function's signature (``ParamSpec``). Its per-task options
(``queue``, ``priority``, ``time_limit``, ``max_attempts``, ``retry_backoff``,
``cancel_on_timeout``) travel with each message it sends. A handle sends through the client bound
by ``handle.using(client)``, else the default client (``pgqueue.configure(dsn=...)`` or
``PGQUEUE_DSN``).

A worker imports the modules named in ``--tasks``; importing them runs the decorators, which fill
this process's registry. A name defaults to ``module.function`` so two modules never collide by
accident; an explicit ``name=`` is how a task keeps its Celery name during a migration.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from pgqueue.errors import ConfigurationError, PgQueueError, TaskNotFound, TaskRegistrationError
from pgqueue.replies import CallResult

if TYPE_CHECKING:
    import psycopg

    from pgqueue.client import Client, Submitted

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    func: Callable[..., Any]
    module: str


_REGISTRY: dict[str, TaskSpec] = {}

# Dotted Python and Celery names fit ("<locals>" of a nested function too); the bound keeps
# names usable as metric label values.
TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@/<>-]{0,254}")
NAME_RULE = (
    "letters, digits and _ . : @ / < > - (1-255 characters, starting with a letter, digit or _)"
)


def check_task_name(name: object, field: str = "task") -> str:
    """A task name's charset and length (<= 255); the error names ``field``."""
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise ConfigurationError(field, f"invalid task name {shown}: use {NAME_RULE}")
    return name


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options carried by each message (``None``: the worker's setting).

    ``time_limit`` and ``retry_backoff`` are seconds, ``max_attempts`` a count; a worker applies
    them below its own limits, never above. ``cancel_on_timeout``: a call whose caller's deadline
    passes while it runs is cancelled (its run killed) instead of running to completion.
    Checked when a message is built (errors name them).
    """

    time_limit: float | None = None
    max_attempts: int | None = None
    retry_backoff: float | None = None
    cancel_on_timeout: bool | None = None


# What handle.using() may bind: the client, and the defaults of each message the handle sends.
_BINDABLE = frozenset(
    {
        "client",
        "conn",
        "queue",
        "priority",
        "tenant",
        "timeout",
        "delay",
        "deadline",
        "unique_key",
        "unique_for",
    }
)


class TaskHandle(Generic[P, R]):
    """A registered task: callable as the function itself, and sent through the queue with
    ``call``, ``enqueue`` (alias ``delay``) or ``submit``, whose arguments are
    the function's own (mypy checks them)."""

    def __init__(
        self,
        func: Callable[P, R],
        name: str,
        queue: str = "default",
        priority: int = 5,
        options: TaskOptions | None = None,
        bound: dict[str, Any] | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.name = name
        self.queue = queue
        self.priority = priority
        self.options = options or TaskOptions()
        self._bound: dict[str, Any] = dict(bound or {})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name!r} queue={self.queue!r}>"

    def using(
        self,
        client: Client | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        tenant: str | None = None,
        timeout: float | None = None,
        delay: float | None = None,
        deadline: float | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        cancel_on_timeout: bool | None = None,
    ) -> TaskHandle[P, R]:
        """A copy of this handle that sends through ``client`` and/or with these message
        settings (``conn``: in the caller's transaction, for enqueue and submit;
        ``cancel_on_timeout``: over the task's own, see :func:`task`)."""
        given = {
            "client": client,
            "conn": conn,
            "tenant": tenant,
            "timeout": timeout,
            "delay": delay,
            "deadline": deadline,
            "unique_key": unique_key,
            "unique_for": unique_for,
        }
        bound = {**self._bound, **{k: v for k, v in given.items() if v is not None}}
        options = self.options
        if cancel_on_timeout is not None:
            from pgqueue import producing  # noqa: PLC0415 - it imports this module

            # A ConfigurationError naming cancel_on_timeout for anything but a bool.
            options = producing.with_cancel_on_timeout(options, cancel_on_timeout) or options
        return TaskHandle(
            self.func,
            self.name,
            self.queue if queue is None else queue,
            self.priority if priority is None else priority,
            options,
            bound,
        )

    def _client(self) -> Client:
        client = self._bound.get("client")
        if client is not None:
            return client  # type: ignore[no-any-return]
        from pgqueue.defaults import default_client  # noqa: PLC0415 - it imports this module

        return default_client()

    def _message(self) -> dict[str, Any]:
        b = self._bound
        return {
            "queue": self.queue,
            "priority": self.priority,
            "tenant": b.get("tenant", ""),
            "options": self.options,
            "unique_key": b.get("unique_key"),
            "unique_for": b.get("unique_for", 0.0),
        }

    def call(self, *args: P.args, **kwargs: P.kwargs) -> CallResult:
        """Run the task on a worker and wait for its reply; never raises (see Client.call)."""
        if self._bound.get("conn") is not None:
            return CallResult.failure(
                "",
                "enqueue_error",
                "conn: a call waits for its reply, so it cannot run in the caller's uncommitted "
                "transaction; use submit() and collect the result after the commit",
            )
        try:
            client = self._client()
        except PgQueueError as exc:
            return CallResult.failure("", "enqueue_error", str(exc))
        return client.call(
            self.name, args, kwargs, timeout=self._bound.get("timeout"), **self._message()
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Put the task on its queue (fire and forget); returns the msg_id. Raises like
        Client.enqueue."""
        return self._client().enqueue(
            self.name,
            args,
            kwargs,
            delay=self._bound.get("delay", 0.0),
            conn=self._bound.get("conn"),
            **self._message(),
        )

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Celery's spelling of ``enqueue``."""
        return self.enqueue(*args, **kwargs)

    # enqueue and submit read alike on purpose: each forwards to its own Client verb with the
    # options that verb takes (submit adds the deadline), so each stays readable on its own.
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Submitted:
        """Put the task on its queue with a reply key and return at once; ``.result(timeout)``
        collects the reply later. Raises like Client.submit."""
        return self._client().submit(
            self.name,
            args,
            kwargs,
            delay=self._bound.get("delay", 0.0),
            deadline=self._bound.get("deadline"),
            conn=self._bound.get("conn"),
            **self._message(),
        )


# The keyword overload and the implementation list the same parameters on purpose: typing.overload
# wants each signature in full.
@overload
def task(func: Callable[P, R], /) -> TaskHandle[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    queue: str = "default",
    priority: int = 5,
    time_limit: float | None = None,
    max_attempts: int | None = None,
    retry_backoff: float | None = None,
    cancel_on_timeout: bool | None = None,
) -> Callable[[Callable[P, R]], TaskHandle[P, R]]: ...
# The same parameters as the keyword overload above, on purpose (see there).
def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    priority: int = 5,
    time_limit: float | None = None,
    max_attempts: int | None = None,
    retry_backoff: float | None = None,
    cancel_on_timeout: bool | None = None,
) -> TaskHandle[P, R] | Callable[[Callable[P, R]], TaskHandle[P, R]]:
    """Register a function as a task and return its :class:`TaskHandle` (still callable as the
    function). ``queue`` and ``priority`` are where its messages go; ``time_limit``,
    ``max_attempts`` and ``retry_backoff`` travel with each message (the worker's settings are
    the ceiling). ``cancel_on_timeout=True``: a call whose caller gave up (its deadline passed)
    while the task runs is cancelled, its run killed (default: it runs to completion). Options are
    checked here: a bad one raises TaskRegistrationError naming it."""
    options = TaskOptions(time_limit, max_attempts, retry_backoff, cancel_on_timeout)

    def register(f: Callable[P, R]) -> TaskHandle[P, R]:
        if isinstance(f, TaskHandle):
            f = f.func
        if not callable(f):
            raise TaskRegistrationError(f"@task needs a function, got {f!r}")
        task_name = name or f"{f.__module__}.{f.__qualname__}"
        try:
            check_task_name(task_name, "name")
        except ConfigurationError as exc:
            raise TaskRegistrationError(f"@task {exc}") from None
        known = _REGISTRY.get(task_name)
        if (
            known is not None
            and known.func is not f
            and (
                known.module,
                getattr(known.func, "__qualname__", ""),
            )
            != (f.__module__, f.__qualname__)
        ):
            raise TaskRegistrationError(
                f"task name {task_name!r} is already registered by {known.module}"
            )
        from pgqueue import arguments, producing  # noqa: PLC0415 - they import this module

        try:
            arguments.check_message(task_name, queue, priority, "")
            producing.option_headers(options)
        except ConfigurationError as exc:
            raise TaskRegistrationError(f"@task({task_name!r}) {exc}") from None
        _REGISTRY[task_name] = TaskSpec(task_name, f, f.__module__)
        return TaskHandle(f, task_name, queue, priority, options)

    if func is not None:
        return register(func)
    return register


def lookup(name: str) -> TaskSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskNotFound(f"unknown task {name!r}") from None


def registered() -> dict[str, TaskSpec]:
    return dict(_REGISTRY)


def import_task_modules(modules: list[str]) -> list[str]:
    """Import each module (registering its tasks); returns the task names now known."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise TaskRegistrationError(f"cannot import tasks module {module!r}: {exc}") from exc
    return sorted(_REGISTRY)
