"""``pgqueue.current()``: what a running task may know about its own message.

Both pools run one task at a time per process (a child-process slot, or the worker itself with
``--pool inline``), so the running task's context is one value per process, set just before the
task function is called and cleared when it returns or raises. A plain process-wide value rather
than a ``ContextVar``: a thread the task starts sees it too, as the task would expect.
Outside a running task :func:`current` raises :class:`~pgqueue.errors.NotInTask`, so a helper
shared between tasks and other code cannot mistake "not in a task" for an empty context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pgqueue.errors import NotInTask


@dataclass(frozen=True, slots=True)
class TaskContext:
    """The message a task is running for (``pgqueue.current()``).

    ``attempt`` counts the claims of the message, this one included (1 on the first run; a retry
    or a run after a worker died counts up). ``deadline`` is when the caller of a request-reply
    call stops waiting (aware, UTC), ``None`` when nobody waits with a deadline.
    ``time_limit`` is this run's hard limit in seconds: the message's own ``time_limit`` at most
    the worker's (and, inline, its timer cap).
    """

    msg_id: int
    attempt: int
    tenant: str
    queue: str
    task: str
    deadline: datetime | None
    time_limit: float
    has_reply_key: bool


# How to build the running task's context: built when asked, since most tasks never ask and a
# short task's run must not pay for it.
_source: Callable[[], TaskContext] | None = None


def current() -> TaskContext:
    """The context of the task running in this process; raises :class:`NotInTask` outside one."""
    source = _source
    if source is None:
        raise NotInTask("pgqueue.current() is only available while a task runs in a pgqueue worker")
    return source()


def enter(source: Callable[[], TaskContext]) -> None:
    """A task starts: ``current()`` returns what ``source`` builds until :func:`leave`."""
    global _source  # noqa: PLW0603 - one running task per process (see the module docstring)
    _source = source


def leave() -> None:
    """The task returned or raised: ``current()`` raises again."""
    global _source  # noqa: PLW0603
    _source = None
