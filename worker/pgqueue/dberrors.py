"""The worker's one error policy for database writes, by SQLSTATE class (issue 14).

Every statement the worker runs (claim, renew, ack, retry, dead letter, release) meets an error
of one of three kinds, and each kind has one answer:

- ``OUTAGE``: the database, not the row, is the problem: a broken connection (class 08, or no
  SQLSTATE at all), an administrator or crash shutdown (57P01-57P03), a read-only database
  (25006: a standby after a failover), insufficient resources (53), a serialization failure or
  deadlock (40001, 40P01), a lock or statement timeout (55P03, 57014), a system error (58).
  Keep every finished reply pending, close the connections, back off, reconnect, and report
  not-ready on /readyz until a write succeeds again.
- ``ROW``: one row's data is refused (data exceptions 22, integrity 23, program limits 54 such as
  a NOTIFY payload or a full NOTIFY queue; also a value the driver cannot send, such as a NUL
  byte or a lone surrogate). The batch is written row by row and the bad row alone is settled
  another way (see :mod:`pgqueue.settling`).
- ``OTHER``: anything else. Logged with the message ids, and the batch is retried row by row
  like ``ROW``, so one odd row cannot hold the others back.
"""

from __future__ import annotations

import enum

import psycopg


class Kind(enum.Enum):
    OUTAGE = "outage"
    ROW = "row"
    OTHER = "other"


_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "25006", "40001", "40P01", "55P03", "57014"})
_OUTAGE_CLASSES = ("08", "53", "58")
_ROW_CLASSES = ("22", "23", "54")
# The NOTIFY's own failures: a payload too long (22023 from pg_notify) or a full queue (54000).
NOTIFY_MESSAGES = ("payload string too long", "too many notifications")


def classify(exc: BaseException) -> Kind:
    """Which of the three answers an error from a worker's statement gets."""
    state = getattr(exc, "sqlstate", None)
    if state:
        if state in _OUTAGE_STATES or state.startswith(_OUTAGE_CLASSES):
            return Kind.OUTAGE
        if state.startswith(_ROW_CLASSES):
            return Kind.ROW
        return Kind.OTHER
    # No SQLSTATE: the driver's own verdict. A broken or closed connection is an outage; a value
    # it could not send (a NUL byte, an unencodable character) is the row's.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return Kind.OUTAGE
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError | UnicodeError | ValueError):
        return Kind.ROW
    return Kind.OTHER


def about_notify(exc: BaseException) -> bool:
    """Whether the error came from the statement's NOTIFY (so writing without it will pass)."""
    return any(m in str(exc) for m in NOTIFY_MESSAGES)


def describe(exc: BaseException) -> str:
    """``Type [SQLSTATE]: first line`` for logs and stored reasons."""
    state = getattr(exc, "sqlstate", None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{f' [{state}]' if state else ''}: {first}"
