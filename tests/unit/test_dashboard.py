"""The Grafana dashboard as a Grafana user relies on it (charts/pgqueue-operator/dashboards).

Rates follow the scrape interval (``$__rate_interval``, never a fixed window shorter than two
scrapes), the board filters by namespace, fleet and queue, and depth is never summed: the
operator's sampler and ``pgqueue exporter`` may both export the same queue.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devtools import grafana

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/pgqueue-operator/dashboards/pgqueue.json"
DEPTH_SERIES = (
    "pgqueue_queue_depth",
    "pgqueue_queue_oldest_age_seconds",
    "pgqueue_dead_letter_depth",
    "pgqueue_queue_paused",
)
RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase|delta|deriv|\w+_over_time)\(")


def board() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def exprs() -> list[str]:
    return [t["expr"] for p in board()["panels"] for t in p["targets"]]


def range_windows(expr: str) -> list[str]:
    """The ``[...]`` window of every range-vector function call in an expression."""
    windows = []
    for match in RANGE_FUNCTIONS.finditer(expr):
        depth, i = 1, match.end()
        while depth and i < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        inner = expr[match.end() : i - 1]
        found = re.findall(r"\[([^\]]+)\]\s*$", inner)
        assert found, f"{match.group(1)}() without a range window in {expr!r}"
        windows.append(found[0])
    return windows


def test_every_rate_uses_the_rate_interval() -> None:
    checked = 0
    for expr in exprs():
        for window in range_windows(expr):
            assert window == "$__rate_interval", f"fixed window [{window}] in {expr!r}"
            checked += 1
    assert checked >= 8, "the board's rates were not found"


def test_namespace_fleet_and_queue_variables() -> None:
    variables = {v["name"]: v for v in board()["templating"]["list"]}
    assert {"datasource", "namespace", "fleet", "queue"} <= set(variables)
    for name in ("namespace", "fleet", "queue"):
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["multi"], name
        # "All" must also match series without the label (a plain scrape outside Kubernetes).
        assert var["allValue"] == ".*", name
        assert f", {'pgqueueworker' if name == 'fleet' else name})" in var["definition"], name
    for expr in exprs():
        assert '$namespace"' in expr, f"not filtered by namespace: {expr!r}"
        if "queue=" in expr or any(s in expr for s in DEPTH_SERIES):
            assert 'queue=~"$queue"' in expr, f"not filtered by queue: {expr!r}"


@pytest.mark.parametrize("series", DEPTH_SERIES)
def test_depth_is_never_summed_across_sources(series: str) -> None:
    uses = [e for e in exprs() if series in e]
    assert uses, f"no panel shows {series}"
    for expr in uses:
        outer = re.fullmatch(r"(max|avg) by \(([^)]*)\) \((.*)\)", expr)
        assert outer, f"{series} must be taken as max/avg by queue: {expr!r}"
        assert "queue" in [label.strip() for label in outer.group(2).split(",")], expr
        assert not re.search(r"\b(sum|count)\b", expr), f"{series} summed: {expr!r}"


def test_expanded_queries_are_what_prometheus_gets() -> None:
    expr = 'sum(rate(x{namespace=~"$namespace", service=~"${fleet}-metrics"}[$__rate_interval]))'
    assert (
        grafana.expand(expr, "2m", namespace="shop")
        == 'sum(rate(x{namespace=~"shop", service=~".*-metrics"}[2m]))'
    )
