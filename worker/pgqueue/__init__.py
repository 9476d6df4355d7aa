"""pgqueue: a Postgres-native task queue with a blocking request-reply RPC.

The public surface is what ``__all__`` lists; every other module is internal and may change.
"""

from __future__ import annotations

import importlib.metadata

from pgqueue import _version, admin
from pgqueue.aclient import AsyncClient
from pgqueue.admin import GATE_FLAG, FlagState, QueueStats, parse_flag_value
from pgqueue.cancelling import Cancellation
from pgqueue.client import Client, Message, Submitted
from pgqueue.context import TaskContext, current
from pgqueue.defaults import configure
from pgqueue.errors import (
    CancelError,
    ConfigurationError,
    EnqueueError,
    NotInTask,
    PgQueueError,
    UnknownMessage,
)
from pgqueue.gating import Gate
from pgqueue.migrating import migrate
from pgqueue.pausing import QueuePause
from pgqueue.periodic import periodic
from pgqueue.replies import CallResult
from pgqueue.routing import Dispatcher, RoutingDispatcher
from pgqueue.settings import ClientSettings, WorkerSettings
from pgqueue.tasks import TaskHandle, TaskOptions, task

try:
    # The installed distribution's version (made from _version.py at build time), so it matches
    # what pip reports; a source tree on sys.path without an install falls back to the file.
    __version__: str = importlib.metadata.version("pgqueue")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
    __version__ = _version.__version__

__all__ = [
    "GATE_FLAG",
    "AsyncClient",
    "CallResult",
    "CancelError",
    "Cancellation",
    "Client",
    "ClientSettings",
    "ConfigurationError",
    "Dispatcher",
    "EnqueueError",
    "FlagState",
    "Gate",
    "Message",
    "NotInTask",
    "PgQueueError",
    "QueuePause",
    "QueueStats",
    "RoutingDispatcher",
    "Submitted",
    "TaskContext",
    "TaskHandle",
    "TaskOptions",
    "UnknownMessage",
    "WorkerSettings",
    "__version__",
    "admin",
    "configure",
    "current",
    "migrate",
    "parse_flag_value",
    "periodic",
    "task",
]
