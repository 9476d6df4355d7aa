"""``python -m bench``: the side-by-side benchmarks (pgqueue, Celery, PgQueuer, raw SKIP LOCKED).

A preset picks the sizes (``full`` for ``make bench``, ``smoke`` for CI); each size and duration
can be cut by an option, and the parameters a run used are written with its figures. The harness
lives in the repository, not in the ``pgqueue`` wheel: run it from a clone (``make bench``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import psycopg

from bench import PRESETS, run
from bench.params import SCENARIOS
from pgqueue.errors import PgQueueError

PROG = "python -m bench"

DEFAULT_OUT = "docs/benchmarks"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("must be at least one size ≥ 1")
    return sizes


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _reply_wait(text: str) -> str:
    if text not in ("listen", "poll"):
        raise ValueError(f"expected listen or poll, got {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


# option -> (params field, type, help); its entries read alike on purpose: one table, one per knob.
_OVERRIDES: dict[str, tuple[str, Callable[[str], object], str]] = {
    "--runs": ("runs", _count, "Repetitions of each scenario (≥ 3 for the reported medians)."),
    "--drain-jobs": ("drain_jobs", _count, "No-op jobs drained per system (full: 50000)."),
    "--drain-workers": (
        "drain_workers",
        _count,
        "Worker processes per system in the drain (2; issue 20 compares 4 with 40).",
    ),
    "--concurrency": (
        "pgqueue_concurrency",
        _count,
        "pgqueue worker --concurrency in the drain, backlog and fairness runs (4).",
    ),
    "--rpc-calls": ("rpc_calls", _count, "Sequential timed calls per system (full: 2000)."),
    "--rpc-warmup": ("rpc_warmup", _count, "Untimed warm-up calls before them (200)."),
    "--callers": ("callers", _count, "Caller processes in the throughput scenario (8)."),
    "--throughput-seconds": (
        "throughput_seconds",
        _seconds,
        "Duration of each throughput measurement (15).",
    ),
    "--backlog-sizes": (
        "backlog_sizes",
        _sizes,
        "Comma-separated backlog sizes (full: 10000,100000,1000000).",
    ),
    "--claim-samples": ("claim_samples", _count, "Timed claims per backlog size and run (300)."),
    "--backlog-drain-seconds": (
        "backlog_drain_seconds",
        _seconds,
        "Drain-rate window per backlog size (10).",
    ),
    "--churn-seconds": ("churn_seconds", _seconds, "Churn period of the bloat check (300)."),
    "--fairness-big": ("fairness_big", _count, "Messages of the big tenant (50000)."),
    "--fairness-calls": (
        "fairness_small_calls",
        _count,
        "Sequential calls of the small tenant (200).",
    ),
    "--fleet-callers": (
        "fleet_callers",
        _sizes,
        "Comma-separated caller process counts N of the fleet grid (full: 8,50,200).",
    ),
    "--fleet-workers": (
        "fleet_workers",
        _sizes,
        "Comma-separated worker process counts W of the fleet grid (full: 2,10,40).",
    ),
    "--fleet-seconds": ("fleet_seconds", _seconds, "Window of each fleet cell (15)."),
    "--tx-seconds": (
        "tx_seconds",
        _seconds,
        "Window of each transactional-enqueue mode per run (full: 5).",
    ),
    "--async-calls": (
        "async_calls",
        _count,
        "Sequential timed calls per client in the AsyncClient scenario (full: 1000).",
    ),
    "--async-seconds": (
        "async_seconds",
        _seconds,
        "Throughput window per client in the AsyncClient scenario (full: 8).",
    ),
    "--async-callers": (
        "async_callers",
        _count,
        "Calls in flight in the AsyncClient throughput (threads / tasks; 8).",
    ),
    "--fleet-reply-wait": (
        "fleet_reply_wait",
        _reply_wait,
        "How the fleet's callers wait for replies: listen or poll (PGQUEUE_REPLY_WAIT; listen).",
    ),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see --help)", code=2)


def _fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(code)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description=(
            "Benchmark pgqueue against Celery, PgQueuer and a raw SKIP LOCKED loop, side by side. "
            "Start an embedded Postgres (fsync and synchronous_commit on), a private Redis and a "
            "PgBouncer on loopback, run the scenarios with every consumer as a subprocess, and "
            "write results.json, results.md and PNG plots. Targets are reported, not asserted. "
            "Run from a clone of the repository with the bench extra: pip install -e '.[bench]' "
            "(make bench does both)."
        ),
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Log level (default INFO).",
    )
    p.add_argument(
        "--preset",
        choices=["full", "smoke"],
        default="full",
        help="Sizes: full (make bench, tens of minutes) or smoke (CI, about two minutes).",
    )
    p.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        choices=list(SCENARIOS),
        help="Run only this scenario (repeatable; default all).",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        help=f"Folder for results.json, results.md and the plots (default {DEFAULT_OUT}).",
    )
    p.add_argument(
        "--no-pgbouncer",
        action="store_true",
        help="Run the poll-only RPC direct (pooled flags) instead of through PgBouncer.",
    )
    p.add_argument(
        "--keep-workdir",
        action="store_true",
        help="Keep the work folder (server data, process logs) after a successful run.",
    )
    for option, (_field, kind, help_text) in _OVERRIDES.items():
        p.add_argument(option, type=kind, default=None, help=help_text)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run_from(args)
    except (PgQueueError, psycopg.Error) as exc:  # BenchError included
        # libpq messages span lines; a terminal gets one.
        _fail(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def run_from(args: argparse.Namespace) -> None:
    params = PRESETS[args.preset]
    changes: dict[str, object] = {}
    for option, (field, _kind, _help) in _OVERRIDES.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None:
            changes[field] = value
    if args.scenarios:
        changes["scenarios"] = tuple(dict.fromkeys(args.scenarios))
    if args.no_pgbouncer:
        changes["use_pgbouncer"] = False
    params = params.with_changes(**changes)
    if params.runs < 3:
        print(f"note: {params.runs} run(s): medians over fewer than 3 runs are indicative only")
    results = run(params, args.out, keep_workdir=args.keep_workdir)
    print((args.out / "results.md").read_text())
    print(f"written: {args.out}/results.json, results.md, {', '.join(results['plots'])}")
