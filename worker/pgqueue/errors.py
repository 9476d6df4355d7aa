"""The one error root of pgqueue, and the typed errors raised under it.

Callers catch :class:`PgQueueError` to handle anything pgqueue raises on purpose; the subclasses say
what went wrong so that control flow never depends on parsing a message.
"""

from __future__ import annotations


class PgQueueError(Exception):
    """Root of every error pgqueue raises on purpose."""


class ConfigurationError(PgQueueError):
    """A setting or an argument is invalid; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class EnqueueError(PgQueueError):
    """The database did not take a message (unreachable, no answer in time, refused)."""


class MigrationError(PgQueueError):
    """The schema could not be brought to the current version."""


class TaskNotFound(PgQueueError):
    """No task is registered under the requested name."""


class TaskRegistrationError(PgQueueError):
    """A task could not be registered (duplicate name, not a function, bad module)."""


class EmbeddedPostgresError(PgQueueError):
    """The embedded Postgres server could not be started or stopped."""


class NotInTask(PgQueueError):
    """``pgqueue.current()`` was called outside a running task."""


class CancelError(PgQueueError):
    """A cancel did not reach the database (unreachable, no answer in time, refused)."""


class UnknownMessage(CancelError):
    """A cancel named a message (msg_id or reply key) that pgqueue does not know."""

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(f"{target}: {detail}")
        self.target = target
        self.detail = detail
