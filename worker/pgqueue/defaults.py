"""The default client of task handles: set by :func:`configure`, else made from ``PGQUEUE_DSN``.

A handle bound with ``handle.using(client)`` never looks here.
"""

from __future__ import annotations

import os
import threading

from pgqueue.client import Client
from pgqueue.errors import ConfigurationError
from pgqueue.settings import ClientSettings

# The client task handles use when none is bound with handle.using(client).
_default: dict[str, Client] = {}
_default_lock = threading.Lock()


def configure(dsn: str | None = None, settings: ClientSettings | None = None) -> Client:
    """Set the default client of task handles (``handle.call()``, ``.delay()``...) and return it.

    Without it, the first handle that needs a client makes one from ``PGQUEUE_DSN`` (and the
    other ``PGQUEUE_`` settings). A previous default client is closed; closing the default
    client unsets it.
    """
    client = Client(dsn, settings)
    with _default_lock:
        previous = _default.get("client")
        _default["client"] = client
    if previous is not None:
        previous.close()
    return client


def default_client() -> Client:
    """The default client: the one :func:`configure` set, else one made from ``PGQUEUE_DSN``."""
    with _default_lock:
        if "client" in _default and _default["client"].closed:
            del _default["client"]  # closed by its owner: as if never configured
        if "client" not in _default:
            if not os.environ.get("PGQUEUE_DSN"):
                raise ConfigurationError(
                    "dsn",
                    "a task handle has no client: call pgqueue.configure(dsn=...), set "
                    "PGQUEUE_DSN, or bind one with handle.using(client)",
                )
            _default["client"] = Client()
        return _default["client"]
