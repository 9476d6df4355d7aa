"""Every benchmark scenario at a tiny size, through the harness's CLI (``python -m bench``): it
must start its servers, produce well-formed figures and plots, and leave no process behind. Speed
targets are reported in the output, never asserted here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import fleet_report

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = {
    "drain": ["pgqueue", "pgqueuer", "raw_skip_locked"],
    "rpc_latency": ["pgqueue_direct", "pgqueue_inline", "pgqueue_poll", "celery"],
    "rpc_throughput": [
        f"{system}.{shape}"
        for system in ("pgqueue", "pgqueue_inline", "celery", "celery_solo")
        for shape in ("threads", "processes")
    ],
}


FLEET_COLUMNS = [key for _, key, _ in fleet_report.COLUMNS] + ["calls", "p50_ms", "p99_ms"]
FLEET_HEADINGS = [heading for heading, _, _ in fleet_report.COLUMNS]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--log-level", "WARNING",
         "--preset", "smoke", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads((out / "results.json").read_text()), out


@pytest.mark.timeout(900)
def test_every_scenario_reports_well_formed_figures(smoke: tuple[dict[str, Any], Path]) -> None:
    results, _ = smoke
    scenarios = results["scenarios"]
    assert set(scenarios) == {
        "drain",
        "rpc_latency",
        "rpc_throughput",
        "backlog",
        "fairness",
        "fleet",
        "tx_enqueue",
        "async_rpc",
    }
    runs = results["params"]["runs"]
    for name, systems in SYSTEMS.items():
        assert len(scenarios[name]["runs"]) == runs
        for system in systems:
            summary = scenarios[name]["summary"][system]
            if name == "drain":
                assert _positive(summary["median"])
                assert summary["min"] <= summary["max"]
            elif name == "rpc_latency":
                p50, p99 = summary["p50_ms"]["median"], summary["p99_ms"]["median"]
                assert _positive(p50)
                assert p50 <= p99
            else:
                assert _positive(summary["calls_per_s"]["median"])
                assert _positive(summary["p50_ms"]["median"])
    assert scenarios["rpc_latency"]["poll_only_path"] in {
        "pgbouncer-transaction",
        "direct-with-pooled-flags",
    }
    backlog = scenarios["backlog"]
    assert [s["rows"] for s in backlog["sizes"].values()] == results["params"]["backlog_sizes"]
    for size in backlog["sizes"].values():
        assert _positive(size["claim_p50_ms"]["median"])
        assert "Update on message" in size["explain_claim"]
    churn = backlog["churn"]
    assert _positive(churn["before"]["table_bytes"])
    assert _positive(churn["after"]["table_bytes"])
    assert churn["messages_through"] > 0
    fairness = scenarios["fairness"]["summary"]
    assert _positive(fairness["p50_ms"]["median"])


@pytest.mark.timeout(900)
def test_the_fleet_grid_reports_every_column_and_checked_every_call(
    smoke: tuple[dict[str, Any], Path],
) -> None:
    results, out = smoke
    params = results["params"]
    fleet = results["scenarios"]["fleet"]
    grid = {(c["callers"], c["workers"]) for c in fleet["cells"]}
    assert grid == {(n, w) for n in params["fleet_callers"] for w in params["fleet_workers"]}
    for cell in fleet["cells"]:
        assert set(FLEET_COLUMNS) <= set(cell), set(FLEET_COLUMNS) - set(cell)
        # Each caller checked the echo of every call it made: a reply to another caller fails
        # the run, so a finished cell has as many checked replies as calls.
        assert cell["calls"] > 0
        assert cell["checked"] == cell["calls"]
        assert cell["p50_ms"] <= cell["p99_ms"]
        for key in ("calls_per_s", "claims_per_message", "pg_cpu_ms_per_call"):
            assert _positive(cell[key]), (key, cell[key])
        # At most one NOTIFY for the enqueue and one for the reply of each call.
        assert 0 <= cell["notifies_per_call"] <= 2.05
        assert cell["listening_sessions"] >= 0
        # null when the client no longer keeps a reply listener to count with
        wakeups = cell["caller_wakeups_per_call"]
        assert wakeups is None or wakeups >= 0
    table = (out / "results.md").read_text()
    assert "## 6. Fleet" in table
    for heading in FLEET_HEADINGS:
        assert heading in table


@pytest.mark.timeout(900)
def test_transactional_enqueue_and_the_async_client_are_reported(
    smoke: tuple[dict[str, Any], Path],
) -> None:
    results, out = smoke
    runs = results["params"]["runs"]
    tx = results["scenarios"]["tx_enqueue"]
    assert len(tx["runs"]) == runs
    assert set(tx["summary"]) == {"client_pool", "tx_1", "tx_100", "tx_100_batch"}
    for mode, summary in tx["summary"].items():
        assert _positive(summary["jobs_per_s"]["median"]), mode
        per_tx = 100 if mode.startswith("tx_100") else 1
        ratio = summary["jobs_per_s"]["median"] / summary["transactions_per_s"]["median"]
        assert abs(ratio - per_tx) < 1e-6 * per_tx, (mode, ratio)
    assert set(tx["ratios"]) == {f"{m}_vs_client_pool" for m in ("tx_1", "tx_100", "tx_100_batch")}
    rpc = results["scenarios"]["async_rpc"]
    assert len(rpc["runs"]) == runs
    for client in ("sync", "async"):
        summary = rpc["summary"][client]
        assert _positive(summary["calls_per_s"]["median"]), client
        assert 0 < summary["p50_ms"]["median"] <= summary["p99_ms"]["median"], client
    for ratio in rpc["ratios"].values():
        assert _positive(ratio["median"])
    table = (out / "results.md").read_text()
    assert "## 7. Enqueue in the caller's transaction" in table
    assert "## 8. AsyncClient beside the sync Client" in table
    assert "| AsyncClient |" in table


@pytest.mark.timeout(900)
def test_targets_are_reported_not_asserted(smoke: tuple[dict[str, Any], Path]) -> None:
    results, out = smoke
    targets = results["targets"]
    assert len(targets) == 12
    for target in targets:
        assert isinstance(target["met"], bool)
        assert _positive(target["ratio_median"])
    text = (out / "results.md").read_text()
    assert "## Targets" in text
    assert "met" in text or "MISSED" in text
    assert results["versions"]["pgqueuer"] != "absent"


@pytest.mark.timeout(900)
def test_plots_are_written(smoke: tuple[dict[str, Any], Path]) -> None:
    results, out = smoke
    assert set(results["plots"]) == {
        "latency_cdf.png",
        "throughput.png",
        "backlog.png",
        "fleet.png",
    }
    for name in results["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(900)
def test_nothing_is_left_running(smoke: tuple[dict[str, Any], Path]) -> None:
    results, _ = smoke
    workdir = results["workdir"]
    assert not Path(workdir).exists()
    assert _processes_mentioning(workdir) == []


@pytest.mark.timeout(900)
def test_the_measured_core_revision_is_recorded(smoke: tuple[dict[str, Any], Path]) -> None:
    results, _ = smoke
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert results["versions"]["core_revision"] == head
    assert results["versions"]["core_edited"] in {"yes", "no"}
