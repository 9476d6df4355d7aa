"""What a client says to Postgres: a message enqueued, a reply taken, its reply listener's
statements.

Both clients send these, :class:`pgqueue.Client` and :class:`pgqueue.AsyncClient`, so each is a
:data:`~pgqueue.store.Statement` built here once and run by the caller on its own connection
(:func:`pgqueue.store.one`, :func:`~pgqueue.store.aone`, …): on a pooled one with the client's
retry, or on the caller's own, inside its transaction (:func:`pgqueue.producing.execute_on`).
Building one costs a tuple; the query itself is parsed once per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgqueue import sqlfiles
from pgqueue.store import Statement


def enqueue(params: Mapping[str, Any]) -> Statement:
    """One message (``enqueue``; ``enqueue_unique`` when it has a unique key), parameters from
    :func:`pgqueue.producing.message_params`.

    Both return ``msg_id``; the unique one also ``reply_key`` (the holder's, when not
    ``created``) and ``created``.
    """
    if params["unique_key"]:
        return sqlfiles.query("enqueue_unique"), params
    return sqlfiles.query("enqueue"), params


def enqueue_many(params: Mapping[str, Any]) -> Statement:
    """A batch in one statement, a ``msg_id`` row each (``enqueue_many``; parallel arrays from
    :func:`pgqueue.producing.batch_params`)."""
    return sqlfiles.query("enqueue_many"), params


def take_reply(reply_key: str) -> Statement:
    """The reply's row, deleted as it is read (``take_reply``): a caller's own reply."""
    return sqlfiles.query("take_reply"), {"reply_key": reply_key}


def peek_reply(reply_key: str) -> Statement:
    """The reply's row, left in place (``peek_reply``): a shared reply every attached caller
    reads; the retention sweep removes it."""
    return sqlfiles.query("peek_reply"), {"reply_key": reply_key}


def take_replies(reply_keys: list[str]) -> Statement:
    """The rows of those replies that are stored, deleted as read (``take_replies``): the
    asyncio listener's safety-net sweep."""
    return sqlfiles.query("take_replies"), {"reply_keys": reply_keys}


def clear_replies(reply_keys: list[str]) -> Statement:
    """Delete the rows of replies a listener handed over from their NOTIFY (``clear_replies``)."""
    return sqlfiles.query("clear_replies"), {"reply_keys": reply_keys}


def listen_replies(prefix: str) -> Statement:
    """LISTEN on the private reply channel of a key prefix; one row, its ``channel``
    (``listen_replies``)."""
    return sqlfiles.query("listen_replies"), {"prefix": prefix}
