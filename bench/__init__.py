"""The benchmark harness (``python -m bench``, ``make bench``): pgqueue side by side with
Celery, PgQueuer and a raw SKIP LOCKED loop.

One run starts every server it compares on (an embedded Postgres with fsync and synchronous
commit on, a private redis-server, a PgBouncer in transaction mode) and every consumer as a
subprocess, runs the scenarios (``bench.params.SCENARIOS``), and writes ``results.json``,
``results.md`` and PNG plots.
It stops every process it started, also on Ctrl-C or failure. Optional dependencies (PgQueuer,
asyncpg, matplotlib) come with the ``bench`` extra and are imported only when used.

It lives in the repository beside the product package and is not shipped in the wheel: it imports
``pgqueue`` (internals too, such as the supervisor's claim parameters), never the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.params import FULL, PRESETS, SCENARIOS, SMOKE, BenchParams

__all__ = ["FULL", "PRESETS", "SCENARIOS", "SMOKE", "BenchParams", "run"]


def run(params: BenchParams, out_dir: Path, *, keep_workdir: bool = False) -> dict[str, Any]:
    """Run the benchmarks (see :func:`bench.running.run`)."""
    # Imported here: the consumer modules (``python -m bench.rawloop``) import this
    # package first and must not pull the whole harness in with it.
    from bench import running  # noqa: PLC0415

    return running.run(params, out_dir, keep_workdir=keep_workdir)
