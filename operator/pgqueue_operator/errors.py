"""The one error root of the operator, and the typed errors under it.

Handlers translate these into kopf's control-flow errors (``TemporaryError`` with a delay); nothing
here ever reaches kopf bare, so a bad spec or an unreachable database never becomes a crash loop.
"""

from __future__ import annotations


class PgQueueOperatorError(Exception):
    """Root of every error the operator raises on purpose."""


class InvalidSpecError(PgQueueOperatorError):
    """The spec breaks an invariant (architecture §5); ``reason`` is the condition's, CamelCase."""

    def __init__(self, field: str, problem: str, reason: str = "InvalidSpec") -> None:
        super().__init__(f"spec.{field}: {problem}")
        self.field = field
        self.problem = problem
        self.reason = reason


class SecretError(PgQueueOperatorError):
    """The database Secret or its key is missing or unreadable (the message never holds the DSN)."""


class DatabaseError(PgQueueOperatorError):
    """The database could not be reached or queried (the message never holds the DSN)."""


class ApplyError(PgQueueOperatorError):
    """A child object could not be written to the API server."""


class AccessError(PgQueueOperatorError):
    """The API server could not be reached, or refused this operator its own resource."""
