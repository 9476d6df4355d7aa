"""``pgqueue enqueue`` and ``pgqueue call``: put a message on a queue, or call a task and wait."""

from __future__ import annotations

import argparse
from typing import Any, TypedDict

from pgqueue.cli.common import (
    add_dsn,
    add_json,
    add_settings_options,
    non_negative_seconds,
    parse_json,
    print_json,
    queue_name,
    seconds,
    settings_with_dsn,
)
from pgqueue.cli.parsing import EXIT_FAILURE, EXIT_OK
from pgqueue.client import Client
from pgqueue.settings import ClientSettings

_CLIENT_SKIP = {"dsn", "default_timeout"}  # own --dsn help; call has --timeout


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer 1..10, got {text!r}") from None
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be 1..10, got {value}")
    return value


def _message_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="Task name, e.g. demo.echo.")
    p.add_argument("--queue", type=queue_name, default="default", help="Queue name (default).")
    p.add_argument(
        "--args", default=None, help="Positional arguments as a JSON array, e.g. '[1, \"a\"]'."
    )
    p.add_argument("--kwargs", default=None, help="Keyword arguments as a JSON object.")
    p.add_argument(
        "--priority", type=_priority, default=5, help="1 (lowest) to 10 (highest); default 5."
    )
    p.add_argument(
        "--tenant",
        default="",
        help="Fairness key: one tenant's backlog cannot starve another's (default none).",
    )
    add_dsn(p)
    add_settings_options(p, ClientSettings, skip=_CLIENT_SKIP)


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "enqueue",
        help="Put one fire-and-forget message on a queue; prints its msg_id.",
        description="Put one fire-and-forget message on a queue and print its msg_id.",
    )
    _message_options(p)
    p.add_argument(
        "--delay",
        type=non_negative_seconds,
        default=0.0,
        help="Seconds before it becomes visible (default 0).",
    )
    add_json(p, 'the msg_id ({"msg_id": N})')
    p.set_defaults(handler=cmd_enqueue)

    p = sub.add_parser(
        "call",
        help="Run a task and wait for its reply; prints the result as JSON, exit 0 only when ok.",
        description=(
            "Call a task and wait for its reply. The result is always printed as one JSON "
            "document (ok, value, error, kind, reply_key); the exit code is 0 only when ok, 1 "
            "for a task error, a timeout or an enqueue error."
        ),
    )
    _message_options(p)
    p.add_argument(
        "--timeout", type=seconds, default=30.0, help="Seconds to wait for the reply (default 30)."
    )
    p.add_argument(
        "--cancel-on-timeout",
        action="store_true",
        default=False,
        help="If the timeout passes while the task runs, its worker kills the run (default: it "
        "runs to completion).",
    )
    add_json(p, "the result (always JSON; accepted for uniformity)")
    p.set_defaults(handler=cmd_call)


def _client(args: argparse.Namespace) -> Client:
    settings = settings_with_dsn(ClientSettings, args)
    return Client(settings.dsn, settings)


class _Message(TypedDict):
    """What enqueue and call both send (their shared options, _message_options)."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    tenant: str


def _message(args: argparse.Namespace) -> _Message:
    return _Message(
        task=args.task,
        args=parse_json("--args", args.args, list),
        kwargs=parse_json("--kwargs", args.kwargs, dict),
        queue=args.queue,
        priority=int(args.priority),
        tenant=args.tenant,
    )


def cmd_enqueue(args: argparse.Namespace) -> int:
    message = _message(args)
    with _client(args) as client:
        msg_id = client.enqueue(**message, delay=args.delay)
    if args.json:
        print_json({"msg_id": msg_id, "queue": args.queue, "task": args.task})
    else:
        print(msg_id)
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    message = _message(args)
    with _client(args) as client:
        result = client.call(
            **message,
            timeout=float(args.timeout),
            cancel_on_timeout=args.cancel_on_timeout or None,
        )
    print(result.to_json())
    return EXIT_OK if result.ok else EXIT_FAILURE
