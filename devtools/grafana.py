"""What Grafana does to a dashboard query before Prometheus sees it, for tests that run the PromQL.

Template variables become their "All" value (``.*``: every namespace, fleet and queue) and
``$__rate_interval`` a fixed window, so the dashboard's own expressions run unchanged elsewhere.
"""

from __future__ import annotations

import re

VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(expr: str, rate_interval: str = "1m", **values: str) -> str:
    """The expression with every variable replaced (``values`` override the ``.*`` default)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "__rate_interval":
            return rate_interval
        return values.get(name, ".*")

    return VARIABLE.sub(value, expr)
