"""Connections to Postgres: the one place that knows about poolers, time bounds and secrets.

Behind a transaction pooler (PgBouncer ``pool_mode=transaction``) a session is not ours between
transactions, so prepared statements and LISTEN are off and every unit of work is one transaction.
Every connection pgqueue opens (client, worker, CLI, operator) comes from :func:`connect`, which
bounds its I/O: TCP keepalives and ``tcp_user_timeout`` end a silent network, a server-side
``statement_timeout`` ends a runaway statement, and a client-side bound ends any wait for the
server (a stopped backend, a stalled network path whose kernel still acknowledges bytes) that
no TCP or server timer can see. A caller with a deadline (``call()``) narrows that bound with
:func:`deadline`. DSNs are parsed by :func:`parse_dsn` alone, whose errors never hold the
password (libpq echoes a malformed URI whole), and :func:`scrub` removes it from any message.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import select
import time
import urllib.parse
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import RV, PQGen
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from pgqueue.errors import ConfigurationError
from pgqueue.settings import ConnectionSettings

# When set (a monotonic time), no wait for the server in this context lasts beyond it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "pgqueue_db_deadline", default=None
)

_URI_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:(?P<password>[^/@]*)@")
_KV_PASSWORD = re.compile(r"password\s*=\s*(?P<password>'(?:[^'\\]|\\.)*'|\S+)")


class NoAnswer(psycopg.OperationalError):
    """The server did not answer within the bound (the deadline, or the statement bound).

    The connection is closed: what the server did with the statement is unknown.
    """


def _secrets_in(dsn: str) -> list[str]:
    """Every spelling of the DSN's password, found even when the DSN does not parse."""
    found: list[str] = []
    for pattern in (_URI_PASSWORD, _KV_PASSWORD):
        for match in pattern.finditer(dsn):
            raw = match.group("password").strip("'")
            if raw:
                found += [raw, urllib.parse.unquote(raw, errors="replace")]
    with contextlib.suppress(psycopg.Error):
        password = conninfo_to_dict(dsn).get("password")
        if password:
            found.append(str(password))
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    """``text`` with every spelling of the DSN's password replaced by ``***``."""
    for secret in _secrets_in(dsn):
        text = text.replace(secret, "***")
    return text


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The DSN's parameters; a malformed DSN is a ConfigurationError that never shows it."""
    if not dsn:
        raise ConfigurationError("dsn", "no database given (set PGQUEUE_DSN or --dsn)")
    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        # libpq quotes the offending part, which may be the password: say what is wrong only.
        hint = scrub(str(exc).splitlines()[0] if str(exc) else "", dsn)
        raise ConfigurationError(
            "dsn",
            f"not a valid libpq connection string or URI ({hint}); in a URI, percent-encode "
            "reserved characters of the user and password (e.g. % as %25)",
        ) from None


def redact(dsn: str) -> str:
    """The DSN with any password removed, for log lines."""
    try:
        info = parse_dsn(dsn)
    except ConfigurationError:
        return "<unparseable dsn>"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in info.items() if k in {"host", "port", "dbname", "user"})


class deadline:
    """No wait for the server inside this block (in this thread) outlasts ``at`` (monotonic).

    A wait cut short closes its connection and raises :class:`NoAnswer`. A class rather than
    a generator under ``contextlib``: it is on every call's path.
    """

    __slots__ = ("_at", "_token")

    def __init__(self, at: float) -> None:
        self._at = at

    def __enter__(self) -> None:
        self._token = _DEADLINE.set(self._at)

    def __exit__(self, *exc: object) -> None:
        _DEADLINE.reset(self._token)


class BoundedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server is bounded on the client side.

    ``io_bound`` (seconds) caps a wait that has no timeout of its own; :func:`deadline` narrows
    it. Waiting for notifications is left alone (a listener waits for as long as it asks).
    """

    io_bound: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        at = _DEADLINE.get()
        bound = max(0.0, at - time.monotonic()) if at is not None else self.io_bound
        if (
            bound is None
            or (timeout is not None and timeout <= bound)
            or getattr(gen, "__name__", "") == "notifies"
        ):
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, bound)
        except pg_errors._WaitTimeout:
            # The statement's fate is unknown: this session can never be used again.
            self.pgconn.finish()
            raise NoAnswer(
                f"no answer from the server within {bound:.3g}s; connection closed"
            ) from None


def is_dead(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is unusable, without a round trip.

    An idle session has nothing to say: a readable socket means the server sent FATAL or
    closed it (a restart, a failover, an idle timeout), and a reset one means the same.
    """
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, psycopg.Error):
        return True


def unsent(exc: BaseException) -> bool:
    """Whether a statement failed before the server could run it (safe to retry once).

    psycopg reports a failure while sending as "sending ... failed", or refuses a closed
    connection before sending: either way the server never got a complete statement (the
    extended protocol commits only at Sync, the last message).
    """
    if isinstance(exc, NoAnswer) or not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc)
    return text.startswith("sending ") or text in {
        "the connection is closed",
        "the connection is lost",
    }


def connect_kwargs(settings: ConnectionSettings, *, pooled: bool) -> dict[str, Any]:
    """The libpq parameters that bound a connection's I/O (a DSN's own values win)."""
    kwargs: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": max(1, round(settings.keepalives_idle)),
        "keepalives_interval": max(1, round(settings.keepalives_interval)),
        "keepalives_count": settings.keepalives_count,
        "tcp_user_timeout": round(settings.tcp_user_timeout * 1000),
    }
    if not pooled:
        # A pooler (PgBouncer) does not pass startup options to the server: set these there.
        # 0 sends nothing (the server's own setting stays), for proxies that refuse options.
        options = [
            f"-c {name}={round(seconds * 1000)}"
            for name, seconds in (
                ("statement_timeout", settings.statement_timeout),
                ("idle_in_transaction_session_timeout", settings.idle_in_transaction_timeout),
            )
            if seconds > 0
        ]
        if options:
            kwargs["options"] = " ".join(options)
    return kwargs


def conninfo(dsn: str, settings: ConnectionSettings, *, pooled: bool) -> str:
    """The DSN with the I/O bounds added where it does not set them itself."""
    params = parse_dsn(dsn)
    for key, value in connect_kwargs(settings, pooled=pooled).items():
        if key == "options" and params.get("options"):
            params["options"] = f"{value} {params['options']}"  # the DSN's own -c win
        else:
            params.setdefault(key, value)
    return make_conninfo("", **params)


def io_bound(settings: ConnectionSettings) -> float | None:
    """The client-side bound of one wait: the statement timeout plus the margin (None: off)."""
    if settings.statement_timeout <= 0:
        return None
    return settings.statement_timeout + settings.io_margin


_defaults: ConnectionSettings | None = None


def use_defaults(settings: ConnectionSettings | None) -> None:
    """Make ``settings`` the I/O bounds of every later :func:`connect` that is given none.

    The CLI calls this with the settings its options built, so ``--statement-timeout`` on any
    command bounds every connection that command opens (else the ``PGQUEUE_*`` env vars do).
    """
    global _defaults  # noqa: PLW0603 - one process-wide default, set once by the entry point
    _defaults = settings


def connect(
    dsn: str,
    *,
    pooled: bool = False,
    autocommit: bool = True,
    connect_timeout: float = 5.0,
    settings: ConnectionSettings | None = None,
    application_name: str = "pgqueue",
) -> psycopg.Connection[dict[str, object]]:
    """A new bounded connection with dict rows; autocommit unless asked otherwise.

    ``settings`` gives the I/O bounds; by default they come from the ``PGQUEUE_*`` env vars.
    """
    limits = settings or _defaults or ConnectionSettings()
    info = conninfo(dsn, limits, pooled=pooled)
    try:
        conn = BoundedConnection.connect(
            info,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=max(1, round(connect_timeout)),
            # prepare_threshold=None disables server-side prepared statements (pooler-safe).
            prepare_threshold=None if pooled else 5,
            application_name=application_name,
        )
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(scrub(str(exc), dsn)) from None
    conn.io_bound = io_bound(limits)
    return conn
