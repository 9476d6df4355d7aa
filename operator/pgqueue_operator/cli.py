"""``pgqueue-operator``: the command line that starts the operator.

``pgqueue-operator run`` builds :class:`OperatorSettings` from env (``PGQUEUE_OPERATOR_*``) and its
options (an option wins), serves Prometheus ``/metrics`` on ``--metrics-port`` and kopf's liveness
``GET /healthz`` on ``--health-port``, and runs kopf standalone (no peering objects needed) for the
given namespaces. Bad input is one line on stderr naming the option, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import NoReturn

import pydantic

from pgqueue_operator.settings import OperatorSettings

PROG = "pgqueue-operator"
EXIT_USAGE = 2

_OPTION = {
    "namespaces": "--namespace",
    "all_namespaces": "--all-namespaces",
    "metrics_port": "--metrics-port",
    "health_port": "--health-port",
    "log_format": "--log-format",
    "verbose": "--verbose",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def _version() -> str:
    # The operator ships in the pgqueue distribution: one version for both.
    try:
        return importlib.metadata.version("pgqueue")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (pgqueue is not installed)"


def _env(field: str) -> str:
    return f"PGQUEUE_OPERATOR_{field.upper()}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "The Kubernetes operator of pgqueue: reconciles PgQueueWorker objects into worker "
            "Deployments, keeps the gate flag in Postgres in step with a ConfigMap, samples queue "
            "depth and autoscales."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {_version()}",
        help="Print the version.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run = sub.add_parser(
        "run",
        help="Run the operator until SIGTERM.",
        description=(
            "Run the operator (kopf, standalone) until SIGTERM. Every option can also be set in "
            "env as PGQUEUE_OPERATOR_<OPTION>; an option given here wins. Further settings "
            "(PGQUEUE_OPERATOR_SAMPLE_INTERVAL, _RESYNC_INTERVAL, _RETRY_DELAY) are env only."
        ),
    )
    run.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help=(
            "Watch this namespace; repeat for more. Env PGQUEUE_OPERATOR_NAMESPACES "
            "(comma-separated). Exactly one of --namespace and --all-namespaces is required."
        ),
    )
    run.add_argument(
        "--all-namespaces",
        action="store_const",
        const=True,
        default=None,
        help="Watch every namespace (cluster-wide). Env PGQUEUE_OPERATOR_ALL_NAMESPACES.",
    )
    for option, allow_zero, what in (
        ("--metrics-port", True, "Port of Prometheus /metrics; 0 disables. Default 9090."),
        ("--health-port", False, "Port of the liveness endpoint GET /healthz. Default 8080."),
    ):
        run.add_argument(
            option,
            type=_port(option, allow_zero=allow_zero),
            metavar="PORT",
            help=f"{what} Env PGQUEUE_OPERATOR_{option[2:].upper().replace('-', '_')}.",
        )
    run.add_argument(
        "--log-format",
        choices=["plain", "json"],
        help="Log line format. Default plain. Env PGQUEUE_OPERATOR_LOG_FORMAT.",
    )
    run.add_argument(
        "--verbose",
        action="store_const",
        const=True,
        default=None,
        help="Log at DEBUG. Env PGQUEUE_OPERATOR_VERBOSE.",
    )
    return parser


def _port(option: str, *, allow_zero: bool) -> argparse._ActionType:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
        low = 0 if allow_zero else 1
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..65535")
        return value

    parse.__name__ = option
    return parse


def settings_from(args: argparse.Namespace) -> OperatorSettings:
    """Env plus options; a bad value exits 2 with one line naming the option (or env var)."""
    given = {
        field: getattr(args, field) for field in _OPTION if getattr(args, field, None) is not None
    }
    try:
        return OperatorSettings(**given)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(p) for p in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        if loc:
            field = loc[0]
            name = _OPTION.get(field) if field in given else None
            fail(f"{name or _env(field)}: {message}")
        if "namespace" in message:
            fail(f"--namespace/--all-namespaces: {message}")
        fail(f"--metrics-port/--health-port: {message}")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    from pgqueue_operator import running  # noqa: PLC0415 - kopf is imported only to run

    running.run(settings)


if __name__ == "__main__":
    main()
