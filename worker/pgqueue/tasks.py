"""The task registry: plain functions registered by ``@pgqueue.task()``.

A worker imports the modules named in ``--tasks``; importing them runs the decorators, which fill
this process's registry. A name defaults to ``module.function`` so two modules never collide by
accident; an explicit ``name=`` is how a task keeps its Celery name during a migration.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from pgqueue.errors import ConfigurationError, TaskNotFound, TaskRegistrationError

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


@overload
def task(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def task(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def task(
    func: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a function as a task; it stays a plain function callable directly."""

    def register(f: Callable[P, R]) -> Callable[P, R]:
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
        _REGISTRY[task_name] = TaskSpec(task_name, f, f.__module__)
        return f

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
