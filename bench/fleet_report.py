"""The fleet scenario's outputs: its table in ``results.md`` and ``fleet.png`` (cost per call
against N callers and against W workers)."""

from __future__ import annotations

import math
from typing import Any

# (column heading, cell key, digits); every cell of the JSON carries each key
COLUMNS = (
    ("N callers", "callers", 0),
    ("W workers", "workers", 0),
    ("calls/s", "calls_per_s", 0),
    ("p50 ms", "p50_ms", 2),
    ("p99 ms", "p99_ms", 2),
    ("claims/msg", "claims_per_message", 2),
    ("empty claims/msg (≥)", "empty_claims_per_message", 2),
    ("polls/call", "polls_per_call", 2),
    ("Postgres CPU ms/call", "pg_cpu_ms_per_call", 3),
    ("… less idle fleet's", "pg_cpu_ms_per_call_net", 3),
    ("idle fleet's Postgres CPU ms/s", "pg_idle_cpu_ms_per_s", 1),
    ("workers CPU ms/call", "worker_cpu_ms_per_call", 3),
    ("callers CPU ms/call", "caller_cpu_ms_per_call", 3),
    ("NOTIFYs/call", "notifies_per_call", 2),
    ("listening sessions", "listening_sessions", 0),
    ("signals/call", "signals_per_call", 1),
    ("worker wake-ups/call", "worker_wakeups_per_call", 2),
    ("caller wake-ups/call", "caller_wakeups_per_call", 2),
    ("calls checked", "checked", 0),
)


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown(figures: dict[str, Any], seconds: float) -> list[str]:
    lines = [
        "",
        f"## 6. Fleet (one {seconds:g} s window per cell; callers: {figures['callers']}; "
        f"workers: {figures['workers']})",
        "",
        "| " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for cell in figures["cells"]:
        lines.append("| " + " | ".join(_cell(cell.get(k), d) for _, k, d in COLUMNS) + " |")
    lines += [
        "",
        "Claims: `pg_stat_statements` calls of the claim statement (empty ones at least calls − "
        "rows claimed). Polls: calls of the callers' reads of their own reply row. "
        "Postgres CPU: utime + stime of every server process over the window; "
        "less what the same W workers cost it per second with nobody calling (sampled before "
        "the cells). "
        "NOTIFYs: rows of the enqueue and ack statements, one NOTIFY each; signals: NOTIFYs × "
        "sessions listening (Postgres signals each on every NOTIFY). Worker wake-ups: enqueue "
        "NOTIFYs × workers listening (each receives every one); caller wake-ups: notifications "
        "the callers' reply listeners received.",
    ]
    return lines


def _panel(
    ax: Any, xs: list[int], lines: list[tuple[str, list[Any]]], style: str, xlabel: str, ylabel: str
) -> None:
    """One plot of the grid: a line per (label, values) over ``xs`` on a log axis."""
    for name, values in lines:
        ax.plot(xs, values, style, label=name)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot(plt: Any, figures: dict[str, Any]) -> Any:
    """Postgres CPU per call, claims per message and NOTIFY signals per call, against N (a line
    per W) and against W (a line per N)."""
    cells = figures["cells"]
    ns = sorted({c["callers"] for c in cells})
    ws = sorted({c["workers"] for c in cells})
    by = {(c["callers"], c["workers"]): c for c in cells}
    rows = (
        ("pg_cpu_ms_per_call", "Postgres CPU per call, ms"),
        ("claims_per_message", "claim statements per message"),
        ("signals_per_call", "NOTIFY signals per call"),
    )
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.6 * len(rows)))
    for r, (key, label) in enumerate(rows):
        by_n = [(f"W = {w}", [by[(n, w)][key] for n in ns]) for w in ws]
        _panel(axes[r][0], ns, by_n, "o-", "N caller processes (log)", label)
        by_w = [(f"N = {n}", [by[(n, w)][key] for w in ws]) for n in ns]
        _panel(axes[r][1], ws, by_w, "s--", "W worker processes, --pool inline (log)", label)
    fig.suptitle("Cost per call as the fleet grows")
    return fig
