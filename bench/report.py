"""Turns a run's figures into its outputs: ``results.json``, ``results.md`` and PNG plots.

The targets of the benchmarks issue are evaluated here, on ratios taken within one run, and
reported as met or missed; nothing here asserts them (benchmarks measure, they do not gate).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import client_report, fleet_report
from bench.stats import percentile

MISSING_EXTRA = (
    "plots need matplotlib: pip install -e '.[bench]' in the repository (make bench does it)"
)


@dataclass(frozen=True)
class Target:
    scenario: str
    text: str
    path: tuple[str, ...]
    op: str  # ">=" or "<="
    bound: float


TARGETS = (
    Target("drain", "drain rate ≥ 2× PgQueuer's", ("ratios", "pgqueue_vs_pgqueuer"), ">=", 2.0),
    Target(
        "rpc_latency",
        "RPC p50 with wake-ups ≤ Celery's p50 (in-process: --pool inline vs Celery solo)",
        ("ratios", "pgqueue_inline_p50_vs_celery"),
        "<=",
        1.0,
    ),
    Target(
        "rpc_latency",
        "RPC p50 with wake-ups ≤ Celery's p50 (pgqueue's killable process pool vs Celery solo)",
        ("ratios", "pgqueue_direct_p50_vs_celery"),
        "<=",
        1.0,
    ),
    Target(
        "rpc_latency",
        "poll-only RPC p50 ≤ 3× Celery's p50",
        ("ratios", "pgqueue_poll_p50_vs_celery"),
        "<=",
        3.0,
    ),
    Target(
        "rpc_throughput",
        "RPC calls/s, 8 caller threads, one client: ≥ 2× Celery's (process pool vs prefork)",
        ("ratios", "pgqueue_vs_celery.threads"),
        ">=",
        2.0,
    ),
    Target(
        "rpc_throughput",
        "RPC calls/s, 8 caller threads, one client: ≥ 2× Celery's (--pool inline vs 2 solo)",
        ("ratios", "pgqueue_inline_vs_celery_solo.threads"),
        ">=",
        2.0,
    ),
    Target(
        "rpc_throughput",
        "RPC calls/s, 8 caller processes: ≥ 2× Celery's (process pool vs prefork)",
        ("ratios", "pgqueue_vs_celery.processes"),
        ">=",
        2.0,
    ),
    Target(
        "rpc_throughput",
        "RPC calls/s, 8 caller processes: ≥ 2× Celery's (--pool inline vs 2 solo)",
        ("ratios", "pgqueue_inline_vs_celery_solo.processes"),
        ">=",
        2.0,
    ),
    Target(
        "backlog",
        "claim p50 at the largest backlog ≤ 2× at the smallest",
        ("ratios", "*"),
        "<=",
        2.0,
    ),
    # Issue #20: the figures a flat cost per call would show (the grid's corner cells).
    Target(
        "fleet",
        "claim statements per message, fewest callers, most workers ≤ 1.5",
        ("ratios", "claims_per_message_at_most_workers"),
        "<=",
        1.5,
    ),
    Target(
        "fleet",
        "Postgres CPU per call, most callers vs fewest (fewest workers) ≤ 1.5×",
        ("ratios", "pg_cpu_per_call_most_vs_fewest_callers"),
        "<=",
        1.5,
    ),
    Target(
        "fleet",
        "calls/s, most callers vs fewest (fewest workers) ≥ 1×",
        ("ratios", "calls_per_s_most_vs_fewest_callers"),
        ">=",
        1.0,
    ),
)


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict):
            return None
        node = next(iter(node.values()), None) if key == "*" else node.get(key)
    return node


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for t in TARGETS:
        figures = results.get("scenarios", {}).get(t.scenario)
        if figures is None:
            continue
        ratio = _dig(figures, t.path) or {}
        median = float(ratio.get("median", math.nan))
        met = median >= t.bound if t.op == ">=" else median <= t.bound
        out.append(
            {
                "scenario": t.scenario,
                "target": t.text,
                "bound": f"{t.op} {t.bound:g}",
                "ratio_median": median,
                "ratio_min": float(ratio.get("min", math.nan)),
                "ratio_max": float(ratio.get("max", math.nan)),
                "met": bool(met) and not math.isnan(median),
            }
        )
    return out


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_clean(results), indent=2, sort_keys=False) + "\n")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _ms(s: dict[str, Any]) -> str:
    """median [min–max]"""
    return f"{_fmt(s.get('median'))} [{_fmt(s.get('min'))}–{_fmt(s.get('max'))}]"


def _per_system(summary: dict[str, dict[str, Any]], columns: dict[str, str]) -> list[str]:
    """A table with a row per system: a column per (header, summary key), each median [min–max]."""
    lines = ["| system | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(_ms(s[key]) for key in columns.values()) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    sc = results.get("scenarios", {})
    p = results["params"]
    lines = [
        f"# pgqueue benchmark results ({p['preset']} preset)",
        "",
        f"Taken {results['started_at']} in {results['wall_seconds']:.0f} s on "
        f"{results['versions'].get('cpus')} CPUs. Figures are the median over "
        f"{p['runs']} runs with [min–max]; ratios are computed pair by pair inside each run.",
        "",
        "## Targets",
        "",
        "| target | bound | ratio (median [min–max]) | met |",
        "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        ratio = f"{_fmt(t['ratio_median'])} [{_fmt(t['ratio_min'])}–{_fmt(t['ratio_max'])}]"
        lines.append(
            f"| {t['target']} | {t['bound']} | {ratio} | {'met' if t['met'] else 'MISSED'} |"
        )
    if "drain" in sc:
        d = sc["drain"]
        lines += ["", f"## 1. Fire-and-forget drain ({p['drain_jobs']:,} no-op jobs)", ""]
        lines += ["| system | jobs/s |", "|---|---|"]
        for name, s in d["summary"].items():
            lines.append(f"| {name} | {_ms(s)} |")
    # Alike on purpose, as section 3: the data of one _per_system table (its title, its columns).
    if "rpc_latency" in sc:
        d = sc["rpc_latency"]
        title = (
            f"## 2. Sequential RPC latency ({p['rpc_calls']:,} calls after "
            f"{p['rpc_warmup']} warm-up; poll-only path: {d['poll_only_path']})"
        )
        columns = {"p50 ms": "p50_ms", "p95 ms": "p95_ms", "p99 ms": "p99_ms"}
        lines += ["", title, "", *_per_system(d["summary"], columns)]
    # Alike on purpose, as section 2: the data of one _per_system table (its title, its columns).
    if "rpc_throughput" in sc:
        d = sc["rpc_throughput"]
        title = (
            f"## 3. RPC throughput ({p['throughput_seconds']:g} s; {d['callers']}; "
            f"{d['pgqueue_workers']}; {d['celery_workers']})"
        )
        columns = {"calls/s": "calls_per_s", "p50 ms": "p50_ms", "p99 ms": "p99_ms"}
        lines += ["", title, "", *_per_system(d["summary"], columns)]
    if "backlog" in sc:
        d = sc["backlog"]
        lines += [
            "",
            "## 4. Backlog scaling (claim of 1 by the worker's claim statement, no workers running;"
            f" drain by 2 workers over {p['backlog_drain_seconds']:g} s)",
            "",
            "| rows waiting | load rows/s (COPY) | claim p50 ms | claim p99 ms | drain jobs/s |",
            "|---|---|---|---|---|",
        ]
        for s in d["sizes"].values():
            lines.append(
                f"| {s['rows']:,} | {_fmt(s['load_rows_per_s'])} | {_ms(s['claim_p50_ms'])} | "
                f"{_ms(s['claim_p99_ms'])} | {_ms(s['drain_jobs_per_s'])} |"
            )
        c = d["churn"]
        lines += [
            "",
            f"Churn: {c['seconds']:.0f} s at a steady backlog of {c['backlog']:,}, "
            f"{c['messages_through']:,} messages through ({_fmt(c['through_per_s'])}/s).",
            "",
            "| | table bytes | index bytes | dead tuples | autovacuums | claim p50 ms |",
            "|---|---|---|---|---|---|",
            f"| before | {_fmt(c['before']['table_bytes'])} | {_fmt(c['before']['index_bytes'])} | "
            f"{_fmt(c['before']['dead_tup'])} | {_fmt(c['before']['autovac'])} | "
            f"{_fmt(c['claim_before']['p50_ms'])} |",
            f"| after | {_fmt(c['after']['table_bytes'])} | {_fmt(c['after']['index_bytes'])} | "
            f"{_fmt(c['after']['dead_tup'])} | {_fmt(c['after']['autovac'])} | "
            f"{_fmt(c['claim_after']['p50_ms'])} |",
        ]
    if "fairness" in sc:
        d = sc["fairness"]["summary"]
        lines += [
            "",
            f"## 5. Fairness (a small tenant's {p['fairness_small_calls']} sequential calls behind "
            f"a {p['fairness_big']:,}-message tenant, 2 workers)",
            "",
            "| small tenant p50 ms | p95 ms | p99 ms | big backlog left at end "
            "| FIFO wait estimate s |",
            "|---|---|---|---|---|",
            f"| {_ms(d['p50_ms'])} | {_ms(d['p95_ms'])} | {_ms(d['p99_ms'])} | "
            f"{_ms(d['big_backlog_at_end'])} | {_ms(d['fifo_wait_estimate_s'])} |",
        ]
    if "fleet" in sc:
        lines += fleet_report.markdown(sc["fleet"], p["fleet_seconds"])
    if "tx_enqueue" in sc:
        lines += client_report.tx_markdown(sc["tx_enqueue"], p["tx_seconds"])
    if "async_rpc" in sc:
        lines += client_report.async_markdown(sc["async_rpc"], p["async_calls"], p["async_seconds"])
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), ""]
    return "\n".join(lines)


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency of the bench extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(MISSING_EXTRA) from exc
    return plt


def plots(results: dict[str, Any], samples: dict[str, list[float]], out: Path) -> list[str]:
    """PNG plots into ``out``; returns their file names."""
    plt = _pyplot()
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    cdf_sets = {k: v for k, v in samples.items() if k.startswith(("rpc_", "fairness")) and v}
    if cdf_sets:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, values in sorted(cdf_sets.items()):
            ms = sorted(v * 1000 for v in values)
            ys = [(i + 1) / len(ms) for i in range(len(ms))]
            ax.plot(ms, ys, label=f"{name} (p50 {percentile(ms, 50):.2f} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of calls")
        ax.set_title("RPC latency CDF (all runs pooled)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "latency_cdf.png")

    sc = results.get("scenarios", {})
    bars: list[tuple[str, dict[str, Any]]] = []
    if "drain" in sc:
        bars += [(f"drain\n{k}", v) for k, v in sc["drain"]["summary"].items()]
    if "rpc_throughput" in sc:
        bars += [
            (f"rpc, 8 callers\n{k.replace('.', chr(10))}", v["calls_per_s"])
            for k, v in sc["rpc_throughput"]["summary"].items()
        ]
    if bars:
        fig, ax = plt.subplots(figsize=(max(9, 1.1 * len(bars)), 5.5))
        _bar_chart(ax, bars)
        ax.set_ylabel("per second (median, whiskers min–max)")
        ax.set_title("Throughput: drain jobs/s and RPC calls/s")
        save(fig, "throughput.png")

    if "backlog" in sc:
        sizes = list(sc["backlog"]["sizes"].values())
        fig, ax = plt.subplots(figsize=(8, 5))
        xs = [s["rows"] for s in sizes]
        ax.plot(xs, [s["claim_p50_ms"]["median"] for s in sizes], "o-", label="claim p50 ms")
        ax.plot(xs, [s["claim_p99_ms"]["median"] for s in sizes], "s--", label="claim p99 ms")
        ax.set_xscale("log")
        ax.set_xlabel("rows waiting (log)")
        ax.set_ylabel("claim latency, ms")
        ax2 = ax.twinx()
        ax2.plot(
            xs, [s["drain_jobs_per_s"]["median"] for s in sizes], "^:", color="tab:green",
            label="drain jobs/s",
        )  # fmt: skip
        ax2.set_ylabel("drain jobs/s (2 workers)")
        ax.set_title("Backlog scaling")
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="upper right", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        save(fig, "backlog.png")

    if "fleet" in sc:
        save(fleet_report.plot(plt, sc["fleet"]), "fleet.png")
    return written


def _bar_chart(ax: Any, bars: list[tuple[str, dict[str, Any]]]) -> None:
    labels = [b[0] for b in bars]
    med = [b[1]["median"] for b in bars]
    low = [b[1]["median"] - b[1]["min"] for b in bars]
    high = [b[1]["max"] - b[1]["median"] for b in bars]
    ax.bar(range(len(bars)), med, yerr=[low, high], capsize=4, color=_colors(labels))
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_yscale("log")
    for i, m in enumerate(med):
        ax.annotate(f"{m:,.0f}", (i, m), ha="center", va="bottom", fontsize=8)


def _colors(labels: list[str]) -> list[str]:
    """pgqueue's bars blue, the others' grey (the system is a label's second line)."""
    systems = [label.split("\n")[1] for label in labels]
    return ["tab:blue" if s.split("_")[0] == "pgqueue" else "tab:gray" for s in systems]
