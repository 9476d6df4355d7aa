"""Enqueue in a Django transaction (Django 4.2+ with the psycopg 3 backend).

::

    from django.db import transaction
    from pgqueue.contrib import django as pgq

    with transaction.atomic():
        order = Order.objects.create(...)
        pgq.enqueue(client, "orders.confirm", [order.pk])   # commits with the order

The message is written on the connection of ``django.db.connections[using]`` inside the open
``atomic()`` block, so a rollback leaves no message and the workers are woken by the commit
(``transaction.on_commit`` would lose the message if the process died between the two). Outside
``atomic()`` Django autocommits, and so does the message. Django is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue.errors import ConfigurationError

if TYPE_CHECKING:
    from pgqueue.client import Client, Message, Submitted


def connection(using: str = "default") -> psycopg.Connection[Any]:
    """The psycopg connection under Django's database ``using``, in its current transaction."""
    try:
        # Optional and untyped (no stubs in the test extra): looked up, not imported by name.
        connections = importlib.import_module("django.db").connections
    except ImportError:
        raise ConfigurationError(
            "using", "Django is not installed (pip install 'pgqueue[django]')"
        ) from None
    db = connections[using]
    if db.vendor != "postgresql":
        raise ConfigurationError("using", f"database {using!r} is {db.vendor}, not PostgreSQL")
    db.ensure_connection()
    raw = db.connection
    if not isinstance(raw, psycopg.Connection):
        raise ConfigurationError(
            "using",
            f"database {using!r} must use Django's psycopg (3) backend, not "
            f"{type(raw).__module__} (pip install 'psycopg[binary]')",
        )
    return raw


def enqueue(
    client: Client,
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    using: str = "default",
    **options: Any,
) -> int:
    """``client.enqueue`` in Django's transaction on ``using``; returns the msg_id."""
    return client.enqueue(task, args, kwargs, conn=connection(using), **options)


def enqueue_many(
    client: Client, messages: Iterable[Message], *, using: str = "default"
) -> list[int]:
    """``client.enqueue_many`` in Django's transaction on ``using``; returns the msg_ids."""
    return client.enqueue_many(messages, conn=connection(using))


def submit(
    client: Client,
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    using: str = "default",
    **options: Any,
) -> Submitted:
    """``client.submit`` in Django's transaction: collect the result after the commit."""
    return client.submit(task, args, kwargs, conn=connection(using), **options)
