"""pgqueue: a Postgres-native task queue with a blocking request-reply RPC.

The public surface is what ``__all__`` lists; every other module is internal and may change.
"""

from __future__ import annotations

from pgqueue import admin
from pgqueue.admin import GATE_FLAG, FlagState, QueueStats, parse_flag_value
from pgqueue.client import Client, Message
from pgqueue.errors import ConfigurationError, EnqueueError, PgQueueError
from pgqueue.gating import Gate
from pgqueue.migrating import migrate
from pgqueue.replies import CallResult
from pgqueue.routing import Dispatcher, RoutingDispatcher
from pgqueue.settings import ClientSettings, WorkerSettings
from pgqueue.tasks import task

__all__ = [
    "GATE_FLAG",
    "CallResult",
    "Client",
    "ClientSettings",
    "ConfigurationError",
    "Dispatcher",
    "EnqueueError",
    "FlagState",
    "Gate",
    "Message",
    "PgQueueError",
    "QueueStats",
    "RoutingDispatcher",
    "WorkerSettings",
    "admin",
    "migrate",
    "parse_flag_value",
    "task",
]
