"""``pgqueue worker``: consume queues with N child-process slots (or inline) until SIGTERM."""

from __future__ import annotations

import argparse
import threading

from pgqueue import pausing
from pgqueue.cli.common import CliError, add_dsn, add_settings_options, settings_with_dsn, via
from pgqueue.errors import TaskRegistrationError
from pgqueue.settings import WorkerSettings
from pgqueue.supervisor import Worker


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="Consume queues: claim, run tasks in child processes, reply, retry, dead-letter.",
        description=(
            "Run a worker supervisor. It claims messages with one SKIP LOCKED statement, runs each "
            "task in a child-process slot (killed at --task-time-limit; --pool inline runs short "
            "trusted tasks in the worker process instead), renews leases every lease/3, vacuums "
            "the queue tables every --vacuum-interval, and drains gracefully on SIGTERM. "
            "/metrics, /healthz and /readyz are served on --metrics-port."
        ),
    )
    add_dsn(p)
    add_settings_options(p, WorkerSettings, skip={"dsn"})
    p.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="Log one JSON object per line on stderr (ts, level, logger, message).",
    )
    p.set_defaults(handler=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_with_dsn(WorkerSettings, args)
    if not settings.tasks:
        raise CliError("--tasks", "name at least one module whose @task functions to run")
    try:
        worker = Worker(settings)
    except TaskRegistrationError as exc:
        raise CliError("--tasks", str(exc)) from None
    # Off the start-up path: a database that is slow to answer must not delay the worker.
    threading.Thread(
        target=pausing.warn_if_paused,
        args=(settings.dsn, list(settings.queues)),
        kwargs=via(settings),
        name="pgqueue-paused-check",
        daemon=True,
    ).start()
    worker.run()
    return 0
