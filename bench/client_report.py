"""The tables of scenarios 7 (enqueue in the caller's transaction) and 8 (AsyncClient beside the
sync Client) in ``results.md``: median over runs with [min–max], as every other table."""

from __future__ import annotations

import math
from typing import Any

TX_MODES = {
    "client_pool": "`client.enqueue()` on the client's own pool (1 job per commit)",
    "tx_1": "`enqueue(conn=)`, 1 job per caller transaction",
    "tx_100": "`enqueue(conn=)` × 100 per caller transaction",
    "tx_100_batch": "`enqueue_many(100, conn=)` per caller transaction",
}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _spread(s: dict[str, Any]) -> str:
    return f"{_fmt(s.get('median'))} [{_fmt(s.get('min'))}–{_fmt(s.get('max'))}]"


def tx_markdown(figures: dict[str, Any], seconds: float) -> list[str]:
    lines = [
        "",
        f"## 7. Enqueue in the caller's transaction (one producer, no worker; {seconds:g} s "
        "per mode and run; every job counted in the table after each window)",
        "",
        "| mode | jobs/s | transactions/s | vs the client's own pool |",
        "|---|---|---|---|",
    ]
    for mode, s in figures["summary"].items():
        ratio = figures["ratios"].get(f"{mode}_vs_client_pool")
        lines.append(
            f"| {TX_MODES.get(mode, mode)} | {_spread(s['jobs_per_s'])} | "
            f"{_spread(s['transactions_per_s'])} | {_spread(ratio) if ratio else '1'} |"
        )
    return lines


def async_markdown(figures: dict[str, Any], calls: int, seconds: float) -> list[str]:
    summary = figures["summary"]
    ratios = figures["ratios"]
    return [
        "",
        f"## 8. AsyncClient beside the sync Client ({figures['worker']}; {calls:,} sequential "
        f"echo calls; {figures['callers']} calls in flight for {seconds:g} s: threads sharing "
        "one Client, tasks on one event loop)",
        "",
        "| client | p50 ms | p99 ms | calls/s |",
        "|---|---|---|---|",
        *(
            f"| {name} | {_spread(s['p50_ms'])} | {_spread(s['p99_ms'])} | "
            f"{_spread(s['calls_per_s'])} |"
            for name, s in (("Client", summary["sync"]), ("AsyncClient", summary["async"]))
        ),
        "",
        f"AsyncClient / Client: p50 {_spread(ratios['async_vs_sync_p50'])}, calls/s "
        f"{_spread(ratios['async_vs_sync_calls_per_s'])}.",
    ]
